"""What a simulator (or a real robot) must offer to be evaluated closed-loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8
    state: np.ndarray | None  # (S,) proprioception in robot units
    task: str  # the language instruction


class Env(Protocol):
    task: str
    max_steps: int

    def reset(self, seed: int) -> Observation:
        """Start an episode whose initial layout is a pure function of `seed`."""

    def step(self, action: np.ndarray) -> tuple[Observation, bool, bool]:
        """Apply one action (robot units) -> (observation, success, done)."""

    def close(self) -> None: ...
