"""Loading Wan2.2 transformer weights: diffusers' format or the original Wan release's, single file or shards.

`load_wan_state_dict(folder)` returns the tensors under diffusers' names (original-layout checkpoints are renamed
by `from_original`); `load_into(transformer, state)` copies them in, strictly: every Wan key must be present with
the right shape, and nothing may be left over. Errors name the key.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor, nn

from ..config import WanConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = WEIGHTS + ".index.json"

# Original Wan name <-> diffusers name. One table for both directions; placeholders: {i} block index,
# {qkv} projection, {qk} q/k norm, {p} parameter name. Note the swap: the original's affine cross-attention
# norm is `norm3`, diffusers calls it `norm2` (the original's parameter-free FFN norm is its `norm2`).
NAME_PAIRS = [
    ("patch_embedding.{p}", "patch_embedding.{p}"),
    ("text_embedding.0.{p}", "condition_embedder.text_embedder.linear_1.{p}"),
    ("text_embedding.2.{p}", "condition_embedder.text_embedder.linear_2.{p}"),
    ("time_embedding.0.{p}", "condition_embedder.time_embedder.linear_1.{p}"),
    ("time_embedding.2.{p}", "condition_embedder.time_embedder.linear_2.{p}"),
    ("time_projection.1.{p}", "condition_embedder.time_proj.{p}"),
    ("head.head.{p}", "proj_out.{p}"),
    ("head.modulation", "scale_shift_table"),
    ("blocks.{i}.modulation", "blocks.{i}.scale_shift_table"),
    ("blocks.{i}.self_attn.{qkv}.{p}", "blocks.{i}.attn1.to_{qkv}.{p}"),
    ("blocks.{i}.self_attn.o.{p}", "blocks.{i}.attn1.to_out.0.{p}"),
    ("blocks.{i}.self_attn.norm_{qk}.{p}", "blocks.{i}.attn1.norm_{qk}.{p}"),
    ("blocks.{i}.cross_attn.{qkv}.{p}", "blocks.{i}.attn2.to_{qkv}.{p}"),
    ("blocks.{i}.cross_attn.o.{p}", "blocks.{i}.attn2.to_out.0.{p}"),
    ("blocks.{i}.cross_attn.norm_{qk}.{p}", "blocks.{i}.attn2.norm_{qk}.{p}"),
    ("blocks.{i}.norm3.{p}", "blocks.{i}.norm2.{p}"),
    ("blocks.{i}.ffn.0.{p}", "blocks.{i}.ffn.net.0.proj.{p}"),
    ("blocks.{i}.ffn.2.{p}", "blocks.{i}.ffn.net.2.{p}"),
]
PLACEHOLDERS = {"i": r"\d+", "qkv": "[qkv]", "qk": "[qk]", "p": r"weight|bias"}


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ...
    regex = "".join(re.escape(part) if n % 2 == 0 else f"(?P<{part}>{PLACEHOLDERS[part]})"
                    for n, part in enumerate(parts))
    return re.compile(regex)


def _rename(state: dict[str, Tensor], source: int, layout: str) -> dict[str, Tensor]:
    """Rename keys from column `source` of NAME_PAIRS to the other column."""
    rules = [(_pattern(pair[source]), pair[1 - source]) for pair in NAME_PAIRS]
    renamed = {}
    for key, tensor in state.items():
        for pattern, target in rules:
            match = pattern.fullmatch(key)
            if match:
                renamed[target.format(**match.groupdict())] = tensor
                break
        else:
            raise ValueError(f"key {key!r} is not part of a {layout} Wan2.2 transformer")
    return renamed


def is_original_layout(state: dict[str, Tensor]) -> bool:
    return any(k.startswith(("head.head", "time_embedding.")) or ".self_attn." in k
               for k in (k.removeprefix("model.diffusion_model.") for k in state))


def from_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Original Wan2.2 checkpoint names (optionally prefixed `model.diffusion_model.`) -> diffusers names."""
    return _rename({k.removeprefix("model.diffusion_model."): v for k, v in state.items()}, 0, "original")


def to_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """diffusers names -> original Wan2.2 names."""
    return _rename(state, 1, "diffusers")


def read_wan_config(folder: str | os.PathLike) -> WanConfig:
    """The transformer dimensions from a diffusers `config.json` (keys we do not model are ignored)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a Wan transformer folder: config.json is missing")
    data = json.loads(path.read_text())
    if "dim" in data and "num_heads" in data:  # the original release's config (WanModel)
        data = {"num_attention_heads": data["num_heads"], "attention_head_dim": data["dim"] // data["num_heads"],
                "in_channels": data["in_dim"], "out_channels": data["out_dim"], "ffn_dim": data["ffn_dim"],
                "freq_dim": data["freq_dim"], "num_layers": data["num_layers"], "eps": data.get("eps", 1e-6),
                "text_dim": data.get("text_dim", 4096)}
    for unsupported in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
        if data.get(unsupported) is not None:
            raise ValueError(f"{path}: {unsupported}={data[unsupported]} (image-conditioned Wan) is not supported")
    return WanConfig(**{k: v for k, v in data.items() if k in WanConfig.__dataclass_fields__})


def load_wan_state_dict(folder: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of a Wan transformer folder under diffusers' names."""
    folder = Path(folder)
    index = next(iter(sorted(folder.glob("*.safetensors.index.json"))), None)
    if (folder / WEIGHTS).is_file():
        state = load_file(str(folder / WEIGHTS))
    elif index is not None:
        weight_map = json.loads(index.read_text())["weight_map"]
        state = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise FileNotFoundError(f"shard {shard} listed in {index} is missing")
            state.update(load_file(str(folder / shard)))
    else:
        raise FileNotFoundError(f"{folder} has neither {WEIGHTS} nor a *.safetensors.index.json")
    return from_original(state) if is_original_layout(state) else state


def load_into(module: nn.Module, state: dict[str, Tensor]) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"Wan weights do not match the transformer: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"Wan weight {key!r} has shape {tuple(tensor.shape)}, the transformer expects "
                             f"{tuple(expected[key].shape)}")
    module.load_state_dict(state, strict=True)
