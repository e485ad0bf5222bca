"""Normalisation of state and actions with dataset statistics, and delta actions.

"quantile" (default) maps [q01, q99] to [-1, 1]; "mean_std" standardises. Neither clips (as in openpi): held-out
scenes put states beyond the training quantiles (a hand 4 cm further forward, a goal higher than any in the
demonstrations), and a clipped state would tell the policy it is somewhere it is not. The statistics are stored
with the checkpoint so deployment undoes exactly what training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

EPS = 1e-6


@dataclass
class Normalizer:
    """Per-dimension affine map x -> (x - offset) / scale. `clip` (to [-1, 1]) is set only when read from a
    checkpoint of an earlier version, whose quantile normalisation clipped, so that it still sees what it was
    trained on."""

    offset: Tensor  # (D,)
    scale: Tensor  # (D,)
    clip: bool

    @classmethod
    def from_stats(cls, stats: dict[str, np.ndarray], mode: str = "quantile") -> Normalizer:
        if mode == "quantile":
            low, high = np.asarray(stats["q01"]), np.asarray(stats["q99"])
            offset, scale = (high + low) / 2, np.maximum((high - low) / 2, EPS)
        elif mode == "mean_std":
            offset, scale = np.asarray(stats["mean"]), np.maximum(np.asarray(stats["std"]), EPS)
        else:
            raise ValueError(f"normalisation mode must be 'quantile' or 'mean_std', got {mode!r}")
        return cls(torch.as_tensor(offset, dtype=torch.float32), torch.as_tensor(scale, dtype=torch.float32), False)

    def normalize(self, x: Tensor) -> Tensor:
        """x (..., D) in robot units -> normalised (..., D)."""
        y = (x - self.offset) / self.scale
        return y.clamp(-1, 1) if self.clip else y

    def unnormalize(self, y: Tensor) -> Tensor:
        return y * self.scale.to(y) + self.offset.to(y)

    def to_dict(self) -> dict:
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        return cls(torch.tensor(data["offset"]), torch.tensor(data["scale"]), bool(data["clip"]))


def to_delta(actions: Tensor, state: Tensor, mask: Tensor) -> Tensor:
    """actions (..., H, A), state (..., S), mask (A,) bool: dims where action - state replaces the action."""
    reference = torch.zeros_like(actions[..., 0, :])
    dims = min(actions.shape[-1], state.shape[-1])
    reference[..., :dims] = state[..., :dims]
    return actions - (reference * mask).unsqueeze(-2)


def from_delta(actions: Tensor, state: Tensor, mask: Tensor) -> Tensor:
    """Inverse of `to_delta`."""
    reference = torch.zeros_like(actions[..., 0, :])
    dims = min(actions.shape[-1], state.shape[-1])
    reference[..., :dims] = state[..., :dims]
    return actions + (reference * mask).unsqueeze(-2)
