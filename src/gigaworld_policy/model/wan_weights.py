"""Loading Wan2.2 transformer weights saved in diffusers' format (one .safetensors file or shards + index).

`load_wan_state_dict(folder)` returns the tensors; `load_into(transformer, state)` copies them in, strictly:
every Wan key must be present with the right shape, and nothing may be left over. Errors name the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor, nn

from ..config import WanConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = WEIGHTS + ".index.json"


def read_wan_config(folder: str | os.PathLike) -> WanConfig:
    """The transformer dimensions from a diffusers `config.json` (keys we do not model are ignored)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a diffusers transformer folder: config.json is missing")
    data = json.loads(path.read_text())
    for unsupported in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
        if data.get(unsupported) is not None:
            raise ValueError(f"{path}: {unsupported}={data[unsupported]} (image-conditioned Wan) is not supported")
    return WanConfig(**{k: v for k, v in data.items() if k in WanConfig.__dataclass_fields__})


def load_wan_state_dict(folder: str | os.PathLike) -> dict[str, Tensor]:
    folder = Path(folder)
    if (folder / WEIGHTS).is_file():
        return load_file(str(folder / WEIGHTS))
    if (folder / INDEX).is_file():
        weight_map = json.loads((folder / INDEX).read_text())["weight_map"]
        state: dict[str, Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise FileNotFoundError(f"shard {shard} listed in {folder / INDEX} is missing")
            state.update(load_file(str(folder / shard)))
        return state
    raise FileNotFoundError(f"{folder} has neither {WEIGHTS} nor {INDEX}")


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
