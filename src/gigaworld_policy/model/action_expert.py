"""The action expert: a narrower transformer for the action tokens that shares attention with the Wan2.2 DiT.

GigaWorld-Policy 0.5's design, a mixture of transformers as pi0's action expert. At every layer the action tokens
use their own norms, projections, feed-forward and adaLN modulation, `dim` wide instead of Wan's D; their
queries, keys and values have Wan's heads and head size, so the tokens of both transformers attend through one
attention under the same blockwise causal mask. Cross-attention queries the text keys/values Wan's block of the
same depth computed (once per instruction), as pi0's action expert attends to the language the VLM encoded.

Only the action block goes through the expert (`EXPERT_BLOCKS`). The state token stays with Wan: it is clean and
sits in the cached prefix with the observation, so it costs one token once per control step either way, and on the
Wan side the prefix is exactly the model without an expert (one transformer, cached once; video-only pre-training
neither runs nor needs the expert, and a checkpoint of it keeps its state pathway when the expert is added fresh).
Each Euler step of action-only decoding then runs the expert's weights alone.

Shapes: B batch, n tokens of a stream, D Wan's width, d the expert's width, G flow-time groups.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..config import ActionExpertConfig, WanConfig
from .wan import (
    KV,
    ConditionEmbedder,
    Rope,
    TextContext,
    TransformerBlock,
    attention,
    call_block,
    modulated_norm,
    with_past,
)

EXPERT_BLOCKS = ("action",)  # the layout blocks whose tokens go through the action expert


class ActionExpert(nn.Module):
    """One `dim`-wide block per Wan block, with Wan's parameter names (condition_embedder, blocks.i.attn1, ...)."""

    def __init__(self, config: ActionExpertConfig, wan: WanConfig):
        super().__init__()
        dim = config.dim
        self.eps = wan.eps
        self.condition_embedder = ConditionEmbedder(dim, wan.freq_dim, text_dim=None)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.ffn_dim, wan.num_attention_heads, wan.cross_attn_norm, wan.eps,
                             attention_dim=wan.inner_dim, text_kv=False)
            for _ in range(wan.num_layers)
        )
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def embed_time(self, timesteps: Tensor) -> tuple[Tensor, Tensor]:
        """timesteps (B, G) in [0, 1000] -> temb (B, G, d), modulation (B, G, 6, d)."""
        return self.condition_embedder.embed_time(timesteps)

    def output_norm(self, x: Tensor, temb: Tensor, groups: Tensor) -> Tensor:
        """Final modulated layer norm: x (B, n, d), temb (B, G, d) -> (B, n, d), before the action decoder."""
        return modulated_norm(x, self.scale_shift_table, temb, groups, self.eps)


class Stream(NamedTuple):
    """The tokens of one transformer in a pass, and what its blocks need for them."""

    blocks: nn.ModuleList
    x: Tensor  # (B, n, width)
    modulation: Tensor  # (B, G, 6, width)
    groups: Tensor  # (n,) or (B, n) flow-time group of each token
    rope: Rope


def joint_block(blocks: list[TransformerBlock], streams: list[Stream], text_kv: KV, text_mask: Tensor | None,
                self_mask, past_kv: KV | None) -> tuple[list[Tensor], KV]:
    """One layer: each stream through its own block, all of them through one self-attention (queries and keys in
    stream order, after the cached ones; self_mask (n, P + n) in that order). Returns each stream's output and the
    layer's new keys/values (B, heads, n, hd) in stream order."""
    mods = [block.modulation(s.modulation, s.groups) for block, s in zip(blocks, streams, strict=True)]
    inputs = [block.self_attention_inputs(s.x, mod, s.rope)
              for block, s, mod in zip(blocks, streams, mods, strict=True)]
    q = torch.cat([q for q, _ in inputs], 2)
    kv = (torch.cat([kv[0] for _, kv in inputs], 2), torch.cat([kv[1] for _, kv in inputs], 2))
    attended = attention(q, with_past(past_kv, kv), self_mask).split([s.x.shape[1] for s in streams], dim=1)
    outputs = [block.finish(s.x, a, mod, text_kv, text_mask)
               for block, s, a, mod in zip(blocks, streams, attended, mods, strict=True)]
    return outputs, kv


def run_joint_blocks(streams: list[Stream], text: TextContext, self_mask, past_kv: list[KV] | None = None,
                     checkpointing: bool = False) -> tuple[list[Tensor], list[KV]]:
    """All layers over the tokens of several transformers (same depth) sharing each layer's attention; see
    `joint_block`. Returns each stream's hidden states and each layer's keys/values in stream order."""
    xs, new_kv = [s.x for s in streams], []
    for i in range(len(streams[0].blocks)):
        layer = [s._replace(x=x) for s, x in zip(streams, xs, strict=True)]
        args = ([s.blocks[i] for s in streams], layer, text.kv[i], text.mask, self_mask,
                None if past_kv is None else past_kv[i])
        xs, kv = call_block(joint_block, args, checkpointing)
        new_kv.append(kv)
    return xs, new_kv
