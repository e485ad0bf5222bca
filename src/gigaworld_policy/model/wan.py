"""A compact Wan2.2 video diffusion transformer whose parameters are named exactly as diffusers'.

`WanTransformer(**same arguments as diffusers.WanTransformer3DModel)` has the same `state_dict` keys and
shapes, and its `forward` on a video gives diffusers' output. Unlike diffusers' class, its pieces are public
so the policy can build its own token sequence: `patchify`, `embed_time`, `encode_text`, `run_blocks`
(with a boolean attention mask and a key/value prefix cache), `output_norm`, `unpatchify`.

Shapes: B batch, N tokens, D = heads * head_dim model width, G flow-time groups (tokens of one group share a
timestep), L text tokens.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from ..config import WanConfig
from .rope import apply_rope, rope_frequencies

KV = tuple[Tensor, Tensor]  # keys, values: each (B, heads, N, head_dim)
ATTENTION_BACKENDS = ("sdpa", "flex")


def attention(q: Tensor, kv: KV, mask) -> Tensor:
    """q (B, heads, Nq, hd), kv over Nk keys -> (B, Nq, heads * hd), before any output projection. mask: None (all
    keys), a bool tensor broadcastable to (B, heads, Nq, Nk) for SDPA, or a flex-attention BlockMask."""
    if isinstance(mask, BlockMask):
        flex = _compiled_flex_attention() if q.is_cuda else flex_attention
        out = flex(q, kv[0], kv[1], block_mask=mask)
    else:
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)
    return out.transpose(1, 2).flatten(2).type_as(q)


def select_groups(per_group: Tensor, groups: Tensor) -> Tensor:
    """per_group (B, G, ...) -> per token (B, N, ...); groups (N,) shared by the batch, or (B, N) per sample
    (tokens whose flow time differs between samples, e.g. a committed action prefix of varying length)."""
    if groups.ndim == 1:
        return per_group.index_select(1, groups)
    return per_group[torch.arange(len(per_group), device=groups.device)[:, None], groups]


@functools.cache
def _compiled_flex_attention():
    return torch.compile(flex_attention, dynamic=False)


class TextContext(NamedTuple):
    """Cross-attention keys/values of an instruction, one pair per layer, and the valid-token mask."""

    kv: list[KV]
    mask: Tensor | None  # (B, 1, 1, L) bool, True = attend; None = attend to all


class Rope(NamedTuple):
    cos: Tensor  # (N, head_dim // 2)
    sin: Tensor


def sinusoidal_embedding(timesteps: Tensor, dim: int) -> Tensor:
    """timesteps (...) in [0, 1000] -> (..., dim) [cos | sin] features (diffusers' flip_sin_to_cos=True)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float()[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TextProjection(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))


class ConditionEmbedder(nn.Module):
    """Flow-time embedding and modulation; text projection unless text_dim is None (a transformer that reads
    another's text keys/values, as the action expert)."""

    def __init__(self, dim: int, freq_dim: int, text_dim: int | None):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = TimestepEmbedding(freq_dim, dim)
        self.time_proj = nn.Linear(dim, 6 * dim)
        if text_dim is not None:
            self.text_embedder = TextProjection(text_dim, dim)

    def embed_time(self, timesteps: Tensor) -> tuple[Tensor, Tensor]:
        """timesteps (B, G) -> temb (B, G, D), block modulation (B, G, 6, D)."""
        features = sinusoidal_embedding(timesteps, self.freq_dim).to(self.time_embedder.linear_1.weight.dtype)
        temb = self.time_embedder(features)
        return temb, self.time_proj(F.silu(temb)).unflatten(-1, (6, -1))


class GeluProjection(nn.Module):
    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        # Index 1 is diffusers' (parameter-free) dropout slot; keeping it keeps the key `net.2`.
        self.net = nn.ModuleList([GeluProjection(dim, inner_dim), nn.Identity(), nn.Linear(inner_dim, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class Attention(nn.Module):
    """Multi-head attention with RMS-normalised queries/keys (normalised across all heads, as Wan).

    Tokens are `dim` wide; queries, keys and values `inner_dim` = heads x head_dim (default: dim). A narrower
    transformer with Wan's inner_dim can attend jointly with Wan's tokens (the action expert). with_kv=False: queries
    only, for a cross-attention that reads keys/values another transformer's weights computed."""

    def __init__(self, dim: int, heads: int, eps: float, inner_dim: int | None = None, with_kv: bool = True):
        super().__init__()
        inner_dim = inner_dim or dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner_dim)
        if with_kv:
            self.to_k = nn.Linear(dim, inner_dim)
            self.to_v = nn.Linear(dim, inner_dim)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, dim)])
        self.norm_q = nn.RMSNorm(inner_dim, eps=eps)
        if with_kv:
            self.norm_k = nn.RMSNorm(inner_dim, eps=eps)

    def _split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, N, D) -> (B, heads, N, head_dim)

    def project_query(self, x: Tensor, rope: Rope | None) -> Tensor:
        q = self._split(self.norm_q(self.to_q(x)))
        return apply_rope(q, *rope) if rope is not None else q

    def project_kv(self, x: Tensor, rope: Rope | None) -> KV:
        k = self._split(self.norm_k(self.to_k(x)))
        v = self._split(self.to_v(x))
        return (apply_rope(k, *rope) if rope is not None else k), v

    def attend(self, q: Tensor, kv: KV, mask) -> Tensor:
        """q (B, heads, Nq, hd), kv over Nk keys -> (B, Nq, dim); mask as `attention`'s."""
        return self.to_out[0](attention(q, kv, mask))


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the parameter dtype (as Wan's cross-attention norm)."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


class TransformerBlock(nn.Module):
    """norm -> modulated self-attention -> cross-attention to text -> modulated feed-forward.

    attention_dim (default dim) and text_kv=False make the action expert's block: `dim` wide tokens attending in
    Wan's head space, reading the text keys/values of Wan's block of the same depth."""

    # What runs this block's weights besides `forward`: under FSDP each must gather the block's shards (train.py).
    ENTRY_POINTS = ("text_kv", "modulation", "self_attention_inputs", "finish")

    def __init__(self, dim: int, ffn_dim: int, heads: int, cross_attn_norm: bool, eps: float,
                 attention_dim: int | None = None, text_kv: bool = True):
        super().__init__()
        self.eps = eps
        self.attn1 = Attention(dim, heads, eps, attention_dim)
        self.attn2 = Attention(dim, heads, eps, attention_dim, with_kv=text_kv)
        self.norm2 = FP32LayerNorm(dim, eps) if cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, ffn_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def _layer_norm(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), x.shape[-1:], eps=self.eps)

    def forward(
        self,
        x: Tensor,
        modulation: Tensor,
        groups: Tensor,
        rope: Rope,
        text_kv: KV,
        text_mask: Tensor | None,
        self_mask: Tensor | None,
        past_kv: KV | None = None,
    ) -> tuple[Tensor, KV]:
        """x (B, N, D); modulation (B, G, 6, D); groups (N,) or, per sample, (B, N) maps tokens to G; self_mask
        (N, P + N) where P is the number of cached prefix tokens in past_kv. Returns the new x and this block's own
        keys/values (B, heads, N, hd), which are the prefix cache when x is the clean prefix."""
        mod = self.modulation(modulation, groups)
        q, kv = self.self_attention_inputs(x, mod, rope)
        return self.finish(x, attention(q, with_past(past_kv, kv), self_mask), mod, text_kv, text_mask), kv

    def text_kv(self, context: Tensor) -> KV:
        """Projected instruction (B, L, D) -> this block's cross-attention keys/values (B, heads, L, hd)."""
        return self.attn2.project_kv(context, None)

    # `forward` in pieces around its self-attention, so that the tokens of several transformers can share one.
    def modulation(self, modulation: Tensor, groups: Tensor) -> Tensor:
        """modulation (B, G, 6, D) -> per token (B, N, 6, D): shift, scale, gate; cross shift, scale, gate."""
        return select_groups(self.scale_shift_table.unsqueeze(0) + modulation.float(), groups)

    def self_attention_inputs(self, x: Tensor, mod: Tensor, rope: Rope) -> tuple[Tensor, KV]:
        """x (B, N, D), mod (B, N, 6, D) -> queries and keys/values (B, heads, N, hd)."""
        h = (self._layer_norm(x) * (1 + mod[:, :, 1]) + mod[:, :, 0]).type_as(x)
        return self.attn1.project_query(h, rope), self.attn1.project_kv(h, rope)

    def finish(self, x: Tensor, attended: Tensor, mod: Tensor, text_kv: KV, text_mask: Tensor | None) -> Tensor:
        """x (B, N, D) and its self-attention result (B, N, heads * hd) -> the block's output (B, N, D)."""
        _, _, gate, c_shift, c_scale, c_gate = mod.unbind(2)
        x = (x.float() + self.attn1.to_out[0](attended) * gate).type_as(x)

        h = self.norm2(x)
        x = x + self.attn2.attend(self.attn2.project_query(h, None), text_kv, text_mask)

        h = (self._layer_norm(x) * (1 + c_scale) + c_shift).type_as(x)
        return (x.float() + self.ffn(h).float() * c_gate).type_as(x)


def with_past(past_kv: KV | None, kv: KV) -> KV:
    """Cached prefix keys/values (B, heads, P, hd), if any, followed by the new ones (B, heads, N, hd)."""
    return kv if past_kv is None else (torch.cat([past_kv[0], kv[0]], 2), torch.cat([past_kv[1], kv[1]], 2))


def run_blocks(
    blocks: nn.ModuleList,
    x: Tensor,
    modulation: Tensor,
    groups: Tensor,
    rope: Rope,
    text: TextContext,
    self_mask: Tensor | None,
    past_kv: list[KV] | None = None,
    checkpointing: bool = False,
) -> tuple[Tensor, list[KV]]:
    """`blocks` over x (B, N, D) in turn; see `WanTransformer.run_blocks`. checkpointing: recompute each block's
    activations in backward (when gradients are on)."""
    new_kv = []
    for i, block in enumerate(blocks):
        past = None if past_kv is None else past_kv[i]
        x, kv = call_block(block, (x, modulation, groups, rope, text.kv[i], text.mask, self_mask, past), checkpointing)
        new_kv.append(kv)
    return x, new_kv


def call_block(block, args: tuple, checkpointing: bool):
    """block(*args); with `checkpointing` (and gradients on) its activations are recomputed in backward."""
    if checkpointing and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def modulated_norm(x: Tensor, table: Tensor, temb: Tensor, groups: Tensor, eps: float) -> Tensor:
    """Final modulated layer norm: x (B, N, D), table (1, 2, D) learned shift/scale offsets, temb (B, G, D)."""
    shift, scale = select_groups(table.unsqueeze(0) + temb.unsqueeze(2), groups).unbind(2)
    return (F.layer_norm(x.float(), x.shape[-1:], eps=eps) * (1 + scale) + shift).type_as(x)


class WanTransformer(nn.Module):
    """Wan2.2 DiT. Constructor arguments and parameter names follow diffusers' `WanTransformer3DModel`."""

    def __init__(
        self,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        num_attention_heads: int = 24,
        attention_head_dim: int = 128,
        in_channels: int = 48,
        out_channels: int = 48,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 14336,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        rope_max_seq_len: int = 1024,
    ):
        super().__init__()
        self.config = WanConfig(
            tuple(patch_size), num_attention_heads, attention_head_dim, in_channels, out_channels, text_dim,
            freq_dim, ffn_dim, num_layers, cross_attn_norm, qk_norm, eps, rope_max_seq_len,
        )
        dim = self.config.inner_dim
        self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = ConditionEmbedder(dim, freq_dim, text_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, ffn_dim, num_attention_heads, cross_attn_norm, eps) for _ in range(num_layers)
        )
        self.proj_out = nn.Linear(dim, out_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.gradient_checkpointing = False  # recompute block activations in backward to save memory
        self.attention_backend = "sdpa"  # or "flex" (flex_attention with a block-sparse mask; compiled on GPU)

    @classmethod
    def from_config(cls, config: WanConfig) -> WanTransformer:
        return cls(**vars(config))

    # ---- sequence pieces -----------------------------------------------------------------------------
    def patchify(self, latents: Tensor) -> Tensor:
        """latents (B, C, F, H, W) -> tokens (B, F*h*w, D), frame-major then row-major."""
        return self.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()

    def unpatchify(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """tokens (B, f*h*w, C*pt*ph*pw) on a (f, h, w) token grid -> latents (B, C, f*pt, h*ph, w*pw)."""
        pt, ph, pw = self.config.patch_size
        f, h, w = grid
        x = tokens.reshape(tokens.shape[0], f, h, w, pt, ph, pw, -1)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def rope(self, positions: Tensor) -> Rope:
        """positions (N, 3) -> RoPE tables for these tokens."""
        if positions.numel() and int(positions.max()) >= self.config.rope_max_seq_len:
            raise ValueError(
                f"RoPE position {int(positions.max())} is beyond rope_max_seq_len {self.config.rope_max_seq_len}"
            )
        return Rope(*rope_frequencies(positions.to(self.proj_out.weight.device), self.config.attention_head_dim))

    def self_attention_mask(self, mask: Tensor | None):
        """A boolean (Nq, Nk) mask in the form the attention backend takes (None: every key is visible)."""
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}")
        if mask is None or self.attention_backend == "sdpa":
            return mask
        rows, cols = mask.shape
        return create_block_mask(lambda b, h, q, k: mask[q, k], None, None, rows, cols, device=mask.device)

    def embed_time(self, timesteps: Tensor) -> tuple[Tensor, Tensor]:
        """timesteps (B, G) in [0, 1000] -> temb (B, G, D), modulation (B, G, 6, D)."""
        return self.condition_embedder.embed_time(timesteps)

    def encode_text(self, text_embeds: Tensor, text_mask: Tensor | None = None) -> TextContext:
        """text_embeds (B, L, text_dim), text_mask (B, L) bool -> per-layer cross-attention keys/values.

        Computed once per instruction and reused at every denoising step."""
        context = self.condition_embedder.text_embedder(text_embeds)
        kv = [block.text_kv(context) for block in self.blocks]
        return TextContext(kv, None if text_mask is None else text_mask[:, None, None, :].bool())

    def run_blocks(
        self,
        x: Tensor,
        modulation: Tensor,
        groups: Tensor,
        rope: Rope,
        text: TextContext,
        self_mask: Tensor | None,
        past_kv: list[KV] | None = None,
    ) -> tuple[Tensor, list[KV]]:
        """All blocks over x (B, N, D). With past_kv (one per layer, P tokens each) x attends to the cached
        prefix too and self_mask is (N, P + N). Returns hidden states and each layer's keys/values of x."""
        return run_blocks(self.blocks, x, modulation, groups, rope, text, self_mask, past_kv,
                          self.gradient_checkpointing)

    def output_norm(self, x: Tensor, temb: Tensor, groups: Tensor) -> Tensor:
        """Final modulated layer norm: x (B, N, D), temb (B, G, D) -> (B, N, D), before any output head."""
        return modulated_norm(x, self.scale_shift_table, temb, groups, self.config.eps)

    # ---- diffusers-compatible video forward ----------------------------------------------------------
    def forward(self, hidden_states: Tensor, timestep: Tensor, encoder_hidden_states: Tensor) -> Tensor:
        """hidden_states (B, C, F, H, W), timestep (B,) or per-token (B, F*h*w) in [0, 1000],
        encoder_hidden_states (B, L, text_dim) -> predicted velocity (B, C_out, F, H, W)."""
        pt, ph, pw = self.config.patch_size
        _, _, frames, height, width = hidden_states.shape
        grid = (frames // pt, height // ph, width // pw)
        f, h, w = torch.meshgrid(*(torch.arange(n) for n in grid), indexing="ij")
        rope = self.rope(torch.stack([f, h, w], dim=-1).reshape(-1, 3))

        tokens = self.patchify(hidden_states)
        timesteps = timestep[:, None] if timestep.ndim == 1 else timestep
        groups = torch.zeros(tokens.shape[1], dtype=torch.long, device=tokens.device)
        if timesteps.shape[1] > 1:
            groups = torch.arange(tokens.shape[1], device=tokens.device)
        temb, modulation = self.embed_time(timesteps)
        x, _ = self.run_blocks(tokens, modulation, groups, rope, self.encode_text(encoder_hidden_states), None)
        return self.unpatchify(self.proj_out(self.output_norm(x, temb, groups)), grid)
