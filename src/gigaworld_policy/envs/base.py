"""What a simulator (or a real robot) must offer to be evaluated closed-loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


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

    def close(self) -> None: ...
