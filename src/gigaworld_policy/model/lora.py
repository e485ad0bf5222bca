"""LoRA fine-tuning of the Wan DiT, with peft.

`add_lora(policy, rank, alpha, base)` puts low-rank adapters on the projections of every Wan block (self- and
cross-attention q, k, v, out, and the two feed-forward layers: `TARGETS`) and freezes the rest of the transformer.
What Wan2.2 does not have starts fresh and is trained in full (`TRAINED_IN_FULL`): the state and action heads, and
the CNN observation encoder and action expert of the configs that have them.

A LoRA checkpoint holds only what is trained: `lora.safetensors` (adapters + those modules; `ema.safetensors` the
average of the same tensors), and `lora.json`, which says the rank, alpha and the base weights they apply to — a
Wan2.2 transformer folder (`--init-wan`) or a policy checkpoint (`--init`) — with a fingerprint of those weights,
checked when the checkpoint is loaded. Loading for evaluation merges the adapters into the weights (peft's merge),
so the policy runs as a plain one; `merge_checkpoint` writes that merged policy as an ordinary checkpoint folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..atomic import atomic_directory, save_tensors
from ..extras import require

if TYPE_CHECKING:
    from .policy import GigaWorldPolicy

LORA_CONFIG = "lora.json"
LORA_WEIGHTS = "lora.safetensors"
ADAPTER = "default"  # peft's adapter name; one adapter per policy
# Suffixes of the adapted nn.Linear layers in each Wan block (diffusers' names).
TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
           "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2")
# Policy modules that Wan2.2 has no weights for: trained in full next to the adapters.
TRAINED_IN_FULL = ("state_encoder", "action_encoder", "action_decoder", "image_encoder", "action_expert")


@dataclass(frozen=True)
class LoraBase:
    """The frozen weights a LoRA checkpoint applies to."""

    kind: Literal["init_wan", "init"]  # a Wan2.2 transformer folder, or a policy checkpoint folder
    path: str
    fingerprint: str  # of the transformer's weights (`fingerprint`)


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    base: LoraBase

    def to_json(self) -> str:
        return json.dumps({"rank": self.rank, "alpha": self.alpha, "targets": list(TARGETS),
                           "trained_in_full": list(TRAINED_IN_FULL), "base": asdict(self.base)}, indent=2)

    @classmethod
    def from_file(cls, path: Path) -> LoraSpec:
        from ..config import read_json

        data = read_json(path)
        try:
            if tuple(data["targets"]) != TARGETS or tuple(data["trained_in_full"]) != TRAINED_IN_FULL:
                raise ValueError(f"{path}: adapters on {data['targets']} (trained in full: {data['trained_in_full']})"
                                 f"; this version adapts {list(TARGETS)} (trained in full: {list(TRAINED_IN_FULL)})")
            return cls(int(data["rank"]), float(data["alpha"]), LoraBase(**data["base"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a LoRA description ({error!r})") from None


def is_trained(name: str) -> bool:
    """Whether parameter `name` of a LoRA policy is trained (an adapter or a module trained in full)."""
    return ".lora_" in name or name.split(".")[0] in TRAINED_IN_FULL


def fingerprint(transformer: nn.Module) -> str:
    """A hash of the transformer's weights (names, shapes and ~1024 values of each tensor, as float32), the same on
    every device; under LoRA the frozen base weights. Cheap enough for 5B weights, and another base differs."""
    digest = hashlib.sha256()
    for name, tensor in sorted(transformer.state_dict().items()):
        if ".lora_" in name:
            continue
        flat = tensor.detach().reshape(-1)
        samples = flat[:: max(1, flat.numel() // 1024)].float().cpu().contiguous()
        digest.update(f"{name.replace('.base_layer.', '.')}{tuple(tensor.shape)}".encode())
        digest.update(samples.numpy().tobytes())
    return digest.hexdigest()[:32]


def add_lora(policy: GigaWorldPolicy, rank: int, alpha: float, base: tuple[str, str]) -> None:
    """`inject_lora`, recording in `policy.lora` the base weights the transformer holds now, base = (kind, path)."""
    if policy.lora is not None:
        raise ValueError("the policy has LoRA adapters already")
    spec = LoraSpec(rank, float(alpha), LoraBase(base[0], str(base[1]), fingerprint(policy.transformer)))
    inject_lora(policy, rank, alpha)
    policy.lora = spec


def inject_lora(policy: GigaWorldPolicy, rank: int, alpha: float) -> None:
    """Adapters of `rank` (scale alpha / rank) on the Wan blocks' projections, everything else of the transformer
    frozen, TRAINED_IN_FULL trainable. The adapters start at zero (peft's default: A random, B zero), so the policy
    starts as the base. (Also on the meta device, to count parameters.)"""
    peft = require("peft", "LoRA fine-tuning")
    if rank <= 0 or alpha <= 0:
        raise ValueError(f"LoRA rank and alpha must be positive, got rank {rank}, alpha {alpha}")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(TARGETS), lora_dropout=0.0, bias="none")
    peft.inject_adapter_in_model(config, policy.transformer, adapter_name=ADAPTER)
    for name, parameter in policy.named_parameters():
        parameter.requires_grad_(is_trained(name))


def cast_frozen(policy: GigaWorldPolicy, dtype: torch.dtype) -> None:
    """Store the frozen weights in `dtype` (bf16 halves the base's memory; the trained ones stay float32)."""
    for parameter in policy.parameters():
        if not parameter.requires_grad:
            parameter.data = parameter.data.to(dtype)


def trained_state(policy: GigaWorldPolicy, state: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """The trained tensors of a LoRA policy out of `state` (default: its own state_dict)."""
    return {k: v for k, v in (state if state is not None else policy.state_dict()).items() if is_trained(k)}


def write_lora(policy: GigaWorldPolicy, folder: Path, ema_state: dict[str, Tensor] | None,
               state: dict[str, Tensor] | None) -> None:
    """lora.json and lora.safetensors (and ema.safetensors) of a LoRA policy into an existing folder."""
    from .policy import EMA_WEIGHTS_NAME

    (folder / LORA_CONFIG).write_text(policy.lora.to_json())
    for name, tensors in ((LORA_WEIGHTS, trained_state(policy, state)), (EMA_WEIGHTS_NAME, ema_state)):
        if tensors is not None:
            tensors = {k: v.detach().contiguous().cpu() for k, v in trained_state(policy, tensors).items()}
            save_tensors(tensors, folder / name, metadata={"format": "pt"})


def load_base(cls: type[GigaWorldPolicy], config, spec: LoraSpec, base: str | os.PathLike | None,
              where: Path) -> GigaWorldPolicy:
    """A policy of `config` whose transformer holds the base weights of `spec` (from `base`, default the recorded
    path), checked against the recorded fingerprint."""
    path = Path(base if base is not None else spec.base.path)
    if not path.is_dir():
        raise FileNotFoundError(f"{where} is a LoRA checkpoint on the {spec.base.kind} weights of {path}, which is not "
                                f"there: give the base folder (--lora-base)")
    if spec.base.kind == "init_wan":
        policy = cls.from_wan(path, config)
    else:
        init = cls.from_pretrained(path, merge_lora=False)
        if init.lora is not None:
            raise ValueError(f"the base {path} of {where} is itself a LoRA checkpoint")
        policy = cls(config)
        policy.transformer.load_state_dict(init.transformer.state_dict())
    found = fingerprint(policy.transformer)
    if found != spec.base.fingerprint:
        raise ValueError(f"{where} was trained on base weights with fingerprint {spec.base.fingerprint}; those in "
                         f"{path} have {found}: give the base it was trained on (--lora-base)")
    return policy


def read_lora(cls: type[GigaWorldPolicy], directory: Path, config, weights: str, device,
              base: str | os.PathLike | None, merge: bool) -> GigaWorldPolicy:
    """The policy of LoRA checkpoint `directory` with the tensors of file `weights`: merged into plain weights, or
    (merge=False, to resume training) with its adapters."""
    spec = LoraSpec.from_file(directory / LORA_CONFIG)
    policy = load_base(cls, config, spec, base, directory)
    add_lora(policy, spec.rank, spec.alpha, (spec.base.kind, spec.base.path))
    policy.lora = spec  # the recorded base, also when another folder holding the same weights was given
    stored = load_file(str(directory / weights))
    expected = set(trained_state(policy))
    if stored.keys() != expected:
        missing, unexpected = sorted(expected - stored.keys()), sorted(stored.keys() - expected)
        raise ValueError(f"{directory / weights} does not hold the trained tensors of its {LORA_CONFIG}: missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}")
    policy.load_state_dict(stored, strict=False)
    if merge:
        merge_lora(policy)
    return policy.to(device)


def merge_lora(policy: GigaWorldPolicy) -> None:
    """Fold the adapters into the weights they adapt (peft's merge) and put the plain layers back: the policy is
    then an ordinary one, as fast as without LoRA, and saves full weights."""
    from peft.tuners.lora import LoraLayer

    adapted = [(name, module) for name, module in policy.transformer.named_modules() if isinstance(module, LoraLayer)]
    for name, module in adapted:
        module.merge(safe_merge=True, adapter_names=[ADAPTER])
        parent, _, child = name.rpartition(".")
        setattr(policy.transformer.get_submodule(parent), child, module.get_base_layer())
    for parameter in policy.parameters():
        parameter.requires_grad_(True)
    policy.lora = None


def merge_checkpoint(source: str | os.PathLike, out: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """Write LoRA checkpoint `source` merged into its base as an ordinary policy folder `out` (model.safetensors,
    and ema.safetensors from the averaged adapters if it has them), atomically. One merged model is in memory at a
    time."""
    from .policy import EMA_WEIGHTS_NAME, GigaWorldPolicy

    source = Path(source)
    if not (source / LORA_CONFIG).is_file():
        raise FileNotFoundError(f"{source} is not a LoRA checkpoint: {LORA_CONFIG} is missing")
    with atomic_directory(out) as tmp:
        if (source / EMA_WEIGHTS_NAME).is_file():
            averaged = GigaWorldPolicy.from_pretrained(source, ema=True, lora_base=base)
            state = {k: v.contiguous() for k, v in averaged.state_dict().items()}
            save_tensors(state, tmp / EMA_WEIGHTS_NAME, metadata={"format": "pt"})
            del averaged, state
        GigaWorldPolicy.from_pretrained(source, lora_base=base).write_pretrained(tmp)
    return Path(out)
