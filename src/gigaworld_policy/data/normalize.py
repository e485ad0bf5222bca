"""Normalisation of state and actions with dataset statistics, and delta actions.

"quantile" (default) maps [q01, q99] to [-1, 1]; "mean_std" standardises. Neither clips (as in openpi): held-out
scenes put states beyond the training quantiles (a hand 4 cm further forward, a goal higher than any in the
demonstrations), and a clipped state would tell the policy it is somewhere it is not. The statistics are stored
with the checkpoint so deployment undoes exactly what training did.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

EPS = 1e-6
# A quantile range narrower than this share of the min..max range is not a spread of the data but an artefact:
# LeRobot aggregates a dataset's quantiles as the length-weighted mean of per-episode quantiles, so a dimension
# that is constant within each episode but differs between them (a gripper open in one task, closed in another)
# gets q01 == q99 although its values span min..max. Dividing by that range sends the normalised values to ~1e5.
MIN_QUANTILE_SHARE = 1e-2


def _fallback_ranges(offset: np.ndarray, scale: np.ndarray, low: np.ndarray, high: np.ndarray,
                     degenerate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where `degenerate`: min..max -> [-1, 1] when the dimension varies, else the identity around its value
    (also where min/max are unknown: NaN)."""
    half_range = (high - low) / 2
    varies = half_range > EPS  # False for NaN
    offset = np.where(degenerate & varies, (high + low) / 2, offset)
    scale = np.where(degenerate, np.where(varies, half_range, 1.0), scale)
    return offset, scale


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Per-dimension affine map x -> (x - offset) / scale. `clip` (to [-1, 1]) is set only when read from a
    checkpoint of an earlier version, whose quantile normalisation clipped, so that it still sees what it was
    trained on. Two normalisers are equal when they map every x alike (same numbers, same clip)."""

    offset: Tensor  # (D,)
    scale: Tensor  # (D,)
    clip: bool

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Normalizer):
            return NotImplemented
        return (self.clip == other.clip and torch.equal(self.offset, other.offset)
                and torch.equal(self.scale, other.scale))

    @property
    def dim(self) -> int:
        return len(self.offset)

    @classmethod
    def from_stats(cls, stats: dict[str, np.ndarray], mode: str = "quantile", name: str = "feature") -> Normalizer:
        """stats: LeRobot's per-dimension statistics (q01/q99 for "quantile", mean/std for "mean_std"; min/max for
        the fallback). A dimension whose range is (near) zero never divides by it: it falls back to min/max, or to
        the identity when it is constant, with a warning naming the dimensions (`name` says which feature)."""
        if mode not in ("quantile", "mean_std"):
            raise ValueError(f"normalisation mode must be 'quantile' or 'mean_std', got {mode!r}")
        missing = sorted({"q01", "q99"} - set(stats) if mode == "quantile" else {"mean", "std"} - set(stats))
        if missing:
            raise ValueError(f"statistics of {name!r} lack {missing} (they have {sorted(stats)})")
        unknown = np.full(np.shape(stats["q01" if mode == "quantile" else "mean"]), np.nan)
        low = np.asarray(stats.get("min", unknown), dtype=np.float64)
        high = np.asarray(stats.get("max", unknown), dtype=np.float64)
        if mode == "quantile":
            q01, q99 = np.asarray(stats["q01"], dtype=np.float64), np.asarray(stats["q99"], dtype=np.float64)
            offset, scale = (q99 + q01) / 2, (q99 - q01) / 2
            degenerate = scale <= np.fmax(EPS, MIN_QUANTILE_SHARE * (high - low) / 2)  # fmax: NaN min/max ignored
        else:
            offset, scale = np.asarray(stats["mean"], dtype=np.float64), np.asarray(stats["std"], dtype=np.float64)
            degenerate = scale <= EPS
        if degenerate.any():
            dims = np.flatnonzero(degenerate).tolist()
            warnings.warn(f"{name}: dims {dims} have a (near-)zero {'q01..q99' if mode == 'quantile' else 'std'} "
                          f"range; they are normalised with min..max instead (or left as they are where min == max)",
                          stacklevel=2)
            offset, scale = _fallback_ranges(offset, scale, low, high, degenerate)
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
        missing = [k for k in ("offset", "scale", "clip") if k not in data]
        if missing:
            raise ValueError(f"a normaliser has 'offset', 'scale' and 'clip'; this one lacks {missing}")
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
