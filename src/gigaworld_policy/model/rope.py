"""Wan's 3D rotary position embedding, computed for arbitrary (frame, row, column) token positions.

The head dimension is split into a frame part and two equal spatial parts, as in Wan2.2: for head dim
``d``, ``h = w = 2 * (d // 6)`` channels and ``t = d - h - w``. Each part rotates consecutive channel pairs
(0,1), (2,3), ... by ``position * theta**(-2i/part)``. Tokens that are not on a video grid (state, actions)
get the same index on all three axes, which makes their rotation a 1D RoPE over that index.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_frequencies(positions: Tensor, head_dim: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """positions (N, 3) integer (frame, row, column) -> cos, sin, each (N, head_dim // 2) float32."""
    angles = []
    for axis, dim in enumerate(rope_axis_dims(head_dim)):
        # float64 like Wan, so long positions keep their precision before the cast.
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
        angles.append(positions[:, axis, None].to(torch.float64) * inv_freq)
    angle = torch.cat(angles, dim=-1)
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, heads, N, head_dim), cos/sin (N, head_dim // 2) -> x rotated pairwise, same shape and dtype."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)
