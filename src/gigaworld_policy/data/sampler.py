"""An endless, resumable, distributed sample order.

Global position p = 0, 1, 2, ... maps to a dataset index through a per-epoch permutation seeded by
(seed, epoch) — or, with weights, per-epoch draws with replacement. Rank r of w takes positions r, r+w, ...
Resuming at position P reproduces exactly the order an uninterrupted run would have produced.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, num_samples: int, seed: int = 0, start: int = 0, rank: int = 0, world_size: int = 1,
                 weights: torch.Tensor | None = None):
        if num_samples <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if weights is not None and weights.shape != (num_samples,):
            raise ValueError(f"weights must have shape ({num_samples},), got {tuple(weights.shape)}")
        self.num_samples, self.seed, self.start = num_samples, seed, start
        self.rank, self.world_size, self.weights = rank, world_size, weights

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weights is None:
            return torch.randperm(self.num_samples, generator=generator)
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)

    def __iter__(self) -> Iterator[int]:
        position = self.start + self.rank
        epoch, order = -1, None
        while True:
            if position // self.num_samples != epoch:
                epoch = position // self.num_samples
                order = self._epoch_order(epoch)
            yield int(order[position % self.num_samples])
            position += self.world_size
