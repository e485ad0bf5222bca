"""What a simulator (or a real robot) must offer to be evaluated closed-loop, and what a simulator must offer to
record demonstrations and to be built by name (envs/registry.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


def check_views(cameras: tuple[str, ...], image_size: tuple[int, int], known: tuple[str, ...], where: str) -> None:
    """The checks every environment's settings make: at least one camera, each one `where` (e.g. "Meta-World") has
    (`known`), and an image size of two positive whole numbers; a breach is one sentence."""
    from ..config import did_you_mean

    unknown = [camera for camera in cameras if camera not in known]
    if not cameras or unknown:
        named = ", ".join(repr(camera) + did_you_mean(camera, list(known)) for camera in unknown)
        raise ValueError(f"{'unknown camera ' + named if unknown else 'no camera given'}; {where} has {list(known)}")
    if len(image_size) != 2 or not all(isinstance(n, int) and n > 0 for n in image_size):
        raise ValueError(f"image_size must be two positive whole numbers (height, width), got {image_size}")


def episode_seed(base_seed: int, task_number: int, index: int) -> int:
    """The reset seed of episode `index` of the `task_number`-th task of a multi-task run (collection or
    evaluation): the tasks' seeds stay apart for up to 100,000 episodes each."""
    return base_seed + 100_000 * task_number + index


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8
    state: np.ndarray | None  # (S,) proprioception in robot units
    task: str  # the language instruction


class Env(Protocol):
    """Stepping and observing are separate: a policy that executes several actions per plan looks at the cameras
    once per plan, and rendering costs far more than stepping the physics (Meta-World: three 64x64 views cost
    over twenty times one physics step)."""

    task: str
    max_steps: int

    def reset(self, seed: int) -> Observation:
        """Start an episode whose initial layout is a pure function of `seed`; returns its first observation."""

    def step(self, action: np.ndarray) -> tuple[bool, bool]:
        """Apply one action (robot units) -> (success, done). Renders nothing."""

    def observe(self) -> Observation:
        """The cameras, state and instruction now."""

    def render(self, camera: str) -> np.ndarray:
        """One camera's view now, (H, W, 3) uint8 (for rollout videos)."""

    def hold_action(self, last_action: np.ndarray) -> np.ndarray:
        """The action that keeps the robot still after `last_action` (evaluation under latency, sync execution)."""

    def close(self) -> None: ...


@runtime_checkable
class StagedEnv(Env, Protocol):
    """An `Env` whose tasks pass through named stages on the way to success (ALOHA: touched, lifted, transfer
    attempted, transferred); evaluation then reports how often each stage was reached."""

    stages: tuple[str, ...]  # the current task's stages in order, the last one success
    stage: int  # the highest stage reached in this episode, 1-based (0: none yet)


@runtime_checkable
class DivergingEnv(Env, Protocol):
    """An `Env` whose physics can diverge under a commanded motion (ALOHA's MuJoCo scene under joint jumps): the
    episode then ends, failed, and evaluation counts such episodes apart from those that ran out of time."""

    diverged: bool  # whether this episode ended because the simulation diverged


class EnvSettings(Protocol):
    """One environment's settings: a frozen dataclass of its own (e.g. `MetaWorldSettings`) that checks its values
    when it is built. `gwp collect` records it in the dataset and `gwp eval` rebuilds the environment from it. Generic
    code reads only these fields; the rest belong to the environment."""

    cameras: tuple[str, ...]  # the views an observation holds, in this order
    image_size: tuple[int, int]  # (H, W) of every camera
    fps: int  # frames per second of a recording

    @property
    def state_names(self) -> tuple[str, ...]:
        """The numbers of an observation's state (S,), named."""

    @property
    def action_names(self) -> tuple[str, ...]:
        """The numbers of an action (A,), named."""


class Simulator(Env, Protocol):
    """An `Env` that the registry builds by name as `Simulator(task, settings, max_steps)` and that records
    demonstrations. Its module imports the simulator itself only when an environment is built, so that the registry
    imports without it."""

    robot_type: str  # written into a recording's info.json
    evaluation_steps: int  # the time limit of an evaluation episode unless told otherwise

    @staticmethod
    def check_tasks(tasks: list[str]) -> None:
        """Refuse, in one sentence that names them all, a list with any task the simulator does not have."""

    def demonstrator(self, seed: int) -> Callable[[], np.ndarray]:
        """The scripted expert of the current episode: each call gives the (A,) action to execute and record in the
        state now. What it adds to the expert (e.g. action noise) is drawn from `seed`."""
