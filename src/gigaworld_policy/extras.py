"""Optional dependencies, installed as pip extras.

The core (`pip install gigaworld-policy`) is the model, the data, training, evaluation on your own data and the
MiniLM text encoder. The rest comes with an extra, `pip install 'gigaworld-policy[<extra>]'`:

    metaworld   the Meta-World simulator and its scripted experts (the main job, `gwp collect metaworld`)
    aloha       gym-aloha and dm_control, the bimanual ALOHA simulation (`gwp collect aloha`)
    wan         diffusers, for the Wan2.2 VAE (`--vae`)
    serve       websockets and msgpack, for `gwp serve` and its client
    studies     scipy and matplotlib, for the learning benchmarks' statistics and plots, and the main job's report
    lora        peft, for LoRA fine-tuning (`gwp train --lora-rank`) and loading LoRA checkpoints
    all         all of the above
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRA_OF = {"metaworld": "metaworld", "mujoco": "metaworld", "gym_aloha": "aloha", "dm_control": "aloha",
            "diffusers": "wan", "websockets": "serve",
            "msgpack": "serve", "scipy": "studies", "matplotlib": "studies", "peft": "lora"}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, needed_for: str) -> ModuleType:
    """`module` (e.g. "diffusers" or "websockets.asyncio.server") imported, or MissingExtra saying which extra
    installs it. `needed_for` says what wanted it, e.g. "the Wan2.2 VAE"."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        if error.name is not None and error.name.split(".")[0] != package:
            raise  # the package is there but one of its own imports fails: not a missing extra
        raise MissingExtra(f"{needed_for} needs {package}, which is not installed: "
                           f"pip install 'gigaworld-policy[{EXTRA_OF[package]}]'") from error
