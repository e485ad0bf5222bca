"""Rectified-flow matching: noising, flow-time sampling with a shift, and the Euler sampling schedule.

x_sigma = (1 - sigma) * x0 + sigma * noise, and the network predicts the velocity v = noise - x0, so
x0 = x_sigma - sigma * v and an Euler step from sigma to sigma' is x + (sigma' - sigma) * v.
"""

from __future__ import annotations

import torch
from torch import Tensor


def shift_sigma(u: Tensor, shift: float) -> Tensor:
    """Warp uniform times towards the noisy end: s*u / (1 + (s-1)*u). shift = 1 is the identity."""
    return shift * u / (1 + (shift - 1) * u)


def sample_sigma(batch_size: int, shift: float, generator: torch.Generator | None, device=None) -> Tensor:
    """(B,) training flow times: u ~ U(0, 1), then shifted."""
    return shift_sigma(torch.rand(batch_size, generator=generator, device=device), shift)


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """x0, noise (B, ...), sigma (B,) -> x_sigma (B, ...)."""
    s = sigma.reshape(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    return noise - x0


def sampling_sigmas(num_steps: int, shift: float, device=None) -> Tensor:
    """(num_steps + 1,) decreasing flow times from 1 (pure noise) to 0 (clean), shifted like training."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, num_steps + 1, device=device), shift)
