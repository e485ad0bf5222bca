"""Per-embodiment MLPs: one weight bank per robot, selected per sample by an embodiment id."""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EmbodimentLinear(nn.Module):
    """A bank of `num_embodiments` linear layers; sample b uses layer `embodiment[b]`."""

    def __init__(self, num_embodiments: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embodiments, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_embodiments, out_dim))
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per bank entry
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, embodiment: Tensor) -> Tensor:
        """x (B, N, in_dim), embodiment (B,) long -> (B, N, out_dim)."""
        return torch.baddbmm(self.bias[embodiment].unsqueeze(1), x, self.weight[embodiment])


class EmbodimentMLP(nn.Module):
    """dims e.g. (32, 128, 256, D): linear layers with SiLU between them, one bank per embodiment."""

    def __init__(self, num_embodiments: int, dims: tuple[int, ...]):
        super().__init__()
        self.num_embodiments = num_embodiments
        self.layers = nn.ModuleList(EmbodimentLinear(num_embodiments, a, b) for a, b in pairwise(dims))

    def forward(self, x: Tensor, embodiment: Tensor) -> Tensor:
        """x (B, N, dims[0]), embodiment (B,) long -> (B, N, dims[-1])."""
        for i, layer in enumerate(self.layers):
            x = layer(x, embodiment)
            if i < len(self.layers) - 1:
                x = F.silu(x)
        return x
