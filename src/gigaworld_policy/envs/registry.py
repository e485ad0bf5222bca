"""Environments by name: each is a `Simulator` class and its settings dataclass (an `EnvSettings`).

    settings = settings_from_dict("metaworld", {"observe_goal": True})   # or MetaWorldSettings(observe_goal=True)
    env = make_env(settings, "reach-v3", max_steps=200)

The settings' type says which environment they are for, so generic code (collection, evaluation, the CLI, the demo)
passes one settings object around and never names an environment's own options.

A second environment is one module beside metaworld.py — its settings dataclass (frozen, checked in __post_init__,
with the fields of `EnvSettings`) and its `Simulator` class, importing the simulator only inside the class — and one
line in ENVIRONMENTS. `gwp collect NAME` and `gwp eval NAME` then take its settings as flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..config import did_you_mean
from .aloha import AlohaEnv, AlohaSettings
from .base import EnvSettings, Simulator
from .metaworld import MetaWorldEnv, MetaWorldSettings


@dataclass(frozen=True)
class Environment:
    simulator: type[Simulator]
    settings: type[EnvSettings]


ENVIRONMENTS: dict[str, Environment] = {
    "metaworld": Environment(MetaWorldEnv, MetaWorldSettings),
    "aloha": Environment(AlohaEnv, AlohaSettings),
}


def environment(name: str) -> Environment:
    """The environment registered as `name`; an unknown name is a sentence that lists the known ones."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}{did_you_mean(name, list(ENVIRONMENTS))}; "
                         f"the registered ones are {list(ENVIRONMENTS)}")
    return ENVIRONMENTS[name]


def name_of(settings: EnvSettings) -> str:
    """The registered name of the environment whose settings `settings` are."""
    for name, entry in ENVIRONMENTS.items():
        if type(settings) is entry.settings:
            return name
    raise ValueError(f"{type(settings).__name__} is the settings class of no registered environment; "
                     f"the registered ones are {list(ENVIRONMENTS)}")


def make_env(settings: EnvSettings, task: str, max_steps: int) -> Simulator:
    """The environment of `settings` on `task`, with episodes of at most `max_steps` steps."""
    return ENVIRONMENTS[name_of(settings)].simulator(task, settings, max_steps)


def settings_to_dict(settings: EnvSettings) -> dict[str, Any]:
    """The settings as JSON values (tuples become lists); `settings_from_dict` reads them back."""
    return asdict(settings)


def settings_from_dict(name: str, data: Any, where: str = "the settings") -> EnvSettings:
    """The settings of environment `name` from a JSON object (lists as tuples), checked: an unknown key is named with
    the field it may mean, a bad value by the settings' own check; `where` says where the object came from."""
    settings = environment(name).settings
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object of {settings.__name__} fields, got {type(data).__name__}")
    known = [field.name for field in fields(settings)]
    unknown = [key for key in data if key not in known]
    if unknown:
        named = ", ".join(repr(key) + did_you_mean(key, known) for key in unknown)
        raise ValueError(f"{where}: unknown {name} setting{'s' * (len(unknown) > 1)} {named}; "
                         f"{settings.__name__} has {known}")
    try:
        return settings(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
