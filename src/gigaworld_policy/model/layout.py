"""The token sequence of the policy and its blockwise causal attention mask.

Order: S (state) | O (current observation) | A (action chunk) | V (future video).
Each block gets a causal block id; a query may attend to a key whose id is not larger than its own::

    ids     S O A V        S,O <-> S,O        (clean prefix, computed once per control step)
            0 0 1 2        A   ->  S,O,A      (so actions never see the future video)
                           V   ->  S,O,A,V    (video is conditioned on the actions)

A block with zero tokens is simply absent: action-only decoding has no V, video-only pre-training no A.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

BLOCKS = ("state", "observation", "action", "future")
CAUSAL_ID = {"state": 0, "observation": 0, "action": 1, "future": 2}
# Flow-time groups: every token of a group shares one sigma per sample. S and O are always clean.
TIME_GROUP = {"state": 0, "observation": 0, "action": 1, "future": 2}
NUM_TIME_GROUPS = 3


def make_attention_mask(causal_ids: Tensor) -> Tensor:
    """causal_ids (N,) -> mask (N, N) bool, True where query row i may attend to key column j."""
    return causal_ids[None, :] <= causal_ids[:, None]


@dataclass(frozen=True)
class TokenLayout:
    """Counts of each block. Visual blocks are latent frames on a (rows, cols) token grid."""

    num_state: int
    grid: tuple[int, int]
    num_action: int
    num_future_frames: int

    @cached_property
    def counts(self) -> dict[str, int]:
        per_frame = self.grid[0] * self.grid[1]
        return {
            "state": self.num_state,
            "observation": per_frame,
            "action": self.num_action,
            "future": per_frame * self.num_future_frames,
        }

    @property
    def num_tokens(self) -> int:
        return sum(self.counts.values())

    def span(self, block: str) -> slice:
        """Position of `block` in the sequence (empty slice if absent)."""
        start = 0
        for name in BLOCKS:
            if name == block:
                return slice(start, start + self.counts[name])
            start += self.counts[name]
        raise KeyError(block)

    def span_of(self, *blocks: str) -> slice:
        """The contiguous span covering several consecutive blocks."""
        spans = [self.span(b) for b in blocks]
        return slice(spans[0].start, spans[-1].stop)

    def attention_order(self, rows: slice, expert_blocks: tuple[str, ...] = ()) -> Tensor:
        """(n,) sequence indices of the tokens `rows` in the order a mixture of transformers holds them: the main
        transformer's tokens first, then those of `expert_blocks` (the action expert's), each in sequence order.
        Mask, positions and time groups are per token, so reordering them alike changes no attention."""
        index = torch.arange(rows.start, rows.stop)
        routed = torch.zeros(self.num_tokens, dtype=torch.bool)
        for block in expert_blocks:
            routed[self.span(block)] = True
        routed = routed[rows]
        return torch.cat([index[~routed], index[routed]])

    def count(self, block: str, rows: slice) -> int:
        """How many tokens of `block` lie in `rows`."""
        span = self.span(block)
        return max(0, min(span.stop, rows.stop) - max(span.start, rows.start))

    def held_span(self, block: str, rows: slice, expert_blocks: tuple[str, ...] = ()) -> slice:
        """Where `block` lies among the tokens of `rows` that its transformer holds (see `attention_order`)."""
        start = 0
        for name in BLOCKS:
            if (name in expert_blocks) != (block in expert_blocks):
                continue
            if name == block:
                return slice(start, start + self.count(name, rows))
            start += self.count(name, rows)
        raise KeyError(block)

    def _per_token(self, table: dict[str, int]) -> Tensor:
        return torch.cat([torch.full((self.counts[b],), table[b], dtype=torch.long) for b in BLOCKS])

    @cached_property
    def causal_ids(self) -> Tensor:
        return self._per_token(CAUSAL_ID)

    @cached_property
    def time_groups(self) -> Tensor:
        """(N,) index into the per-sample sigmas (B, NUM_TIME_GROUPS)."""
        return self._per_token(TIME_GROUP)

    @cached_property
    def attention_mask(self) -> Tensor:
        return make_attention_mask(self.causal_ids)

    @cached_property
    def positions(self) -> Tensor:
        """(N, 3) RoPE positions (frame, row, column).

        Observation = latent frame 0, future latent frame f = f + 1; state/action step k = (k, k, k).
        No block's positions depend on how many tokens another block has.
        """
        rows, cols = self.grid
        yy, xx = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        grid = torch.stack([torch.zeros_like(yy), yy, xx], dim=-1).reshape(-1, 3)

        def steps(n: int) -> Tensor:
            return torch.arange(n)[:, None].expand(n, 3)

        future = [grid + torch.tensor([f + 1, 0, 0]) for f in range(self.num_future_frames)]
        parts = [steps(self.num_state), grid, steps(self.num_action), *future]
        return torch.cat(parts).long()
