"""Will it fit? Per-GPU training memory of a preset: weights, gradients, optimiser state, EMA and activations.

    gwp plan-memory --preset gwp0 --lora-rank 16 --gradient-checkpointing --mixed-precision bf16 --card-gib 24

Parameters are counted on the meta device (the real module tree, LoRA adapters included: no memory). Activations are
*measured*: one training step's forward (`compute_loss`, video + action losses) runs on the CPU at the preset's real
width and token count with 1 and 2 transformer blocks and the run's batch B and B + 1, in the run's precision (bf16
autocast as accelerate does it; a LoRA run's frozen weights stored in bf16), and the bytes autograd keeps for
backward are added up (every saved tensor's storage once; with gradient checkpointing also the block inputs the
checkpoint holds). The blocks run on fake tensors (real shapes, dtypes and storages, no arithmetic: a 5B-wide block
costs no time), the rest of the step for real; a test checks this counts exactly what a real run keeps. Those bytes
are exactly bilinear in blocks and batch, S(L, B) = a + b·L + (c + d·L)·B (tested), which scales the measurements to
the preset's depth. b·L does not grow with the batch: the bf16 copies of the weights that autocast casts and
autograd keeps for backward.

Assumptions, stated with the plan:
* AdamW with fp32 moments (8 bytes per trained parameter), fp32 gradients of the trained parameters; trained weights
  fp32 (accelerate keeps fp32 weights under bf16 autocast), a LoRA run's frozen ones bf16 with --mixed-precision
  bf16; the EMA an fp32 copy of the trained weights.
* Images and instructions come pre-encoded (`gwp precompute-latents`, `gwp precompute-text`): neither the VAE nor
  the text encoder is on the GPU.
* FSDP shards weights, gradients and optimiser state evenly over the GPUs (FULL_SHARD) and gathers one block at a
  time, in bf16 under bf16: the plan adds two blocks' gathered weights (the one running and the one prefetched) and
  holds no saved weight copies (FSDP frees a block's gathered weights after its forward and gathers them again in
  backward). The EMA is counted whole on every GPU: its sharding under FSDP is not verified (accelerate runs FSDP on
  GPUs only, and no GPU was at hand); --no-ema plans without it.
* Backward needs room beyond what forward keeps: with gradient checkpointing one block's activations, recomputed; the
  plan adds one block's activations in either case. The CUDA context, kernels and allocator slack take `reserve_gib`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .config import PolicyConfig
from .model.policy import GigaWorldPolicy

GIB = 2**30
ADAMW_STATES = 2  # exp_avg and exp_avg_sq, float32


@dataclass(frozen=True)
class PlanConfig:
    preset: str = "gwp0"
    lora_rank: int = 0
    """0: full fine-tuning"""
    gradient_checkpointing: bool = False
    mixed_precision: Literal["no", "bf16"] = "no"
    fsdp: bool = False
    gpus: int = 1
    """GPUs the run shards over (with --fsdp) or replicates on (DDP: memory per GPU as on one)"""
    batch_size: int = 1
    """per GPU and micro-step"""
    ema: bool = True
    """the trainer's EMA of the trained weights (--ema-decay 0 turns it off)"""
    card_gib: float = 80.0
    """memory of one GPU, GiB"""
    reserve_gib: float = 1.5
    """CUDA context, kernels and allocator slack"""
    threads: int = 1
    """CPU threads for the measurement"""
    json: bool = False
    """print one JSON object"""

    def __post_init__(self) -> None:
        if self.lora_rank < 0 or self.gpus < 1 or self.batch_size < 1 or self.card_gib <= 0:
            raise ValueError(f"lora_rank >= 0, gpus >= 1, batch_size >= 1 and card_gib > 0 are needed, got "
                             f"{self.lora_rank}, {self.gpus}, {self.batch_size}, {self.card_gib}")
        if PolicyConfig.preset(self.preset).action_expert is not None:
            raise ValueError(f"plan-memory measures the Wan blocks; {self.preset}'s action expert is not planned yet")


def training_policy(config: PolicyConfig, plan: PlanConfig, device: str | torch.device) -> GigaWorldPolicy:
    """The policy as the run trains it: with LoRA adapters, its frozen weights in bf16 under LoRA + bf16."""
    from .model.lora import cast_frozen, inject_lora

    with torch.device(device):
        policy = GigaWorldPolicy(config)
        if plan.lora_rank:
            inject_lora(policy, plan.lora_rank, plan.lora_rank)
    if plan.lora_rank and plan.mixed_precision == "bf16":
        cast_frozen(policy, torch.bfloat16)
    policy.transformer.gradient_checkpointing = plan.gradient_checkpointing
    return policy.train()


def training_batch(config: PolicyConfig, batch_size: int, seed: int = 0) -> dict:
    """A random post-training batch at the preset's token counts, with pre-encoded latents and instructions (the
    text is as long as the preset's text_len, all of it attended)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "latents": torch.randn(batch_size, config.codec.latent_channels, 1 + config.num_future_latent_frames,
                               *config.latent_size, generator=g),
        "state": torch.rand(batch_size, config.embodiments[0].state_dim, generator=g) * 2 - 1,
        "actions": torch.rand(batch_size, config.chunk_size, config.embodiments[0].action_dim, generator=g) * 2 - 1,
        "embodiment": torch.zeros(batch_size, dtype=torch.long),
        "text_embeds": torch.randn(batch_size, config.text_len, config.transformer.text_dim, generator=g),
        "text_mask": torch.ones(batch_size, config.text_len, dtype=torch.bool),
    }


def saved_bytes(policy: GigaWorldPolicy, batch: dict, mixed_precision: str, fake_blocks: bool = True) -> int:
    """Bytes one training forward of `policy` on `batch` keeps for backward: the storages of the tensors autograd
    saves, each once, parameters excluded (they are weights), and with gradient checkpointing the block inputs the
    checkpoint holds to recompute the blocks.

    fake_blocks: the transformer blocks and the text projections (`encode_text`: the text embedder and each block's
    cross-attention keys/values) run on fake tensors (torch's FakeTensorMode: every tensor with its real shape, dtype
    and storage, autocast applied, no arithmetic), so Wan2.2-5B's width costs no time; the rest of the step (its
    input checks need real values) runs for real. A test checks that this counts exactly the bytes of a real run."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    kept: dict[int, torch.Tensor] = {}  # storage -> a tensor on it (held, so no storage is freed and reused meanwhile)

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        kept.setdefault(tensor.untyped_storage()._cdata, tensor)
        return tensor

    def keep_inputs(module: nn.Module, args: tuple) -> None:
        for arg in args:
            for tensor in (arg if isinstance(arg, (tuple, list)) else (arg,)):
                if isinstance(tensor, torch.Tensor):
                    keep(tensor)

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    blocks = policy.transformer.blocks
    patched = [(block, "forward") for block in blocks] + [(policy.transformer, "encode_text")] if fake_blocks else []
    for module, method in patched:
        setattr(module, method, _under(fake, getattr(module, method)))
    hooks = [block.register_forward_pre_hook(keep_inputs) for block in blocks] if (
        policy.transformer.gradient_checkpointing) else []
    autocast = torch.autocast("cpu", torch.bfloat16) if mixed_precision == "bf16" else contextlib.nullcontext()
    try:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), autocast:
            loss, _ = policy(batch, generator=torch.Generator().manual_seed(0))
    finally:
        for hook in hooks:
            hook.remove()
        for module, method in patched:
            delattr(module, method)
    weights = {p.untyped_storage()._cdata for p in policy.parameters()}
    weights |= {fake.fake_tensor_converter.from_real_tensor(fake, p).untyped_storage()._cdata
                for p in policy.parameters()} if fake_blocks else set()
    del loss
    return sum(t.untyped_storage().nbytes() for cdata, t in kept.items() if cdata not in weights)


def _under(mode, method):
    """`method`, run inside `mode` (a torch dispatch mode such as FakeTensorMode)."""
    def run(*args, **kwargs):
        with mode:
            return method(*args, **kwargs)
    return run


@dataclass(frozen=True)
class Activations:
    """S(L, B) = fixed + per_layer·L + (per_sample + per_layer_sample·L)·B bytes, fitted to four measurements."""

    fixed: float
    per_layer: float
    per_sample: float
    per_layer_sample: float

    def at(self, layers: int, batch: int) -> float:
        return self.fixed + self.per_layer * layers + (self.per_sample + self.per_layer_sample * layers) * batch


def measure_activations(config: PolicyConfig, plan: PlanConfig, batch: int | None = None) -> Activations:
    """Saved bytes at 1 and 2 blocks x batch B and B + 1 (B = `batch`, default the plan's), at the config's width and
    token counts, fitted bilinearly. (From batch 2 on the bytes are exactly linear in the batch; at batch 1 a few small
    tensors share storage, so a plan measures at its own batch.)"""
    torch.set_num_threads(plan.threads)
    small = batch or plan.batch_size
    measured = {}
    for layers in (1, 2):
        shallow = config.replace(transformer=dataclasses.replace(config.transformer, num_layers=layers))
        policy = training_policy(shallow, plan, "cpu")
        for b in (small, small + 1):
            measured[layers, b] = saved_bytes(policy, training_batch(config, b), plan.mixed_precision)
        del policy
    l1, l2 = measured[1, small], measured[2, small]
    per_layer_sample = measured[2, small + 1] - measured[1, small + 1] - (l2 - l1)
    per_sample = measured[1, small + 1] - l1 - per_layer_sample
    per_layer = l2 - l1 - per_layer_sample * small
    fixed = l1 - per_layer - (per_sample + per_layer_sample) * small
    return Activations(fixed, per_layer, per_sample, per_layer_sample)


def parameter_counts(config: PolicyConfig, plan: PlanConfig) -> dict[str, int]:
    """Parameters of the run's policy (meta device): total, trained, frozen, and one Wan block's."""
    policy = training_policy(config, plan, "meta")
    trained = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    total = sum(p.numel() for p in policy.parameters())
    block = sum(p.numel() for p in policy.transformer.blocks[0].parameters())
    return {"total": total, "trained": trained, "frozen": total - trained, "block": block}


def plan_memory(plan: PlanConfig) -> dict:
    """The per-GPU memory plan (bytes) and whether it fits `plan.card_gib`."""
    config = PolicyConfig.preset(plan.preset)
    counts = parameter_counts(config, plan)
    half = plan.mixed_precision == "bf16"
    frozen_bytes = 2 if plan.lora_rank and half else 4
    shards = plan.gpus if plan.fsdp else 1
    rows = {
        "weights": (counts["frozen"] * frozen_bytes + counts["trained"] * 4) / shards,
        "gradients": counts["trained"] * 4 / shards,
        "optimizer": counts["trained"] * 4 * ADAMW_STATES / shards,
        "ema": counts["trained"] * 4 if plan.ema else 0.0,  # unsharded: see the assumptions
    }
    activations = measure_activations(config, plan)
    layers = config.transformer.num_layers
    weight_copies = activations.fixed + activations.per_layer * layers
    per_sample = (activations.per_sample + activations.per_layer_sample * layers) * plan.batch_size
    rows["activations"] = per_sample + (0.0 if plan.fsdp else weight_copies)
    if plan.fsdp:
        rows["fsdp_gathered_blocks"] = 2 * counts["block"] * (2 if half else 4)
    if plan.gradient_checkpointing:
        full = measure_activations(config, dataclasses.replace(plan, gradient_checkpointing=False))
        one_block = full.per_layer + full.per_layer_sample * plan.batch_size
    else:
        one_block = activations.per_layer + activations.per_layer_sample * plan.batch_size
    rows["backward_working_set"] = one_block
    rows["reserve"] = plan.reserve_gib * GIB
    total = sum(rows.values())
    return {
        "plan": {k: v for k, v in dataclasses.asdict(plan).items() if k not in ("json", "threads")},
        "parameters": counts,
        "tokens": {"sequence": _sequence_tokens(config), "text": config.text_len, "width": config.transformer.inner_dim,
                   "layers": layers},
        "activations_measured": dataclasses.asdict(activations),
        "per_gpu_bytes": rows | {"total": total},
        "fits": total <= plan.card_gib * GIB,
        "free_gib": plan.card_gib - total / GIB,
    }


def _sequence_tokens(config: PolicyConfig) -> int:
    rows, cols = config.token_grid
    return 1 + rows * cols * (1 + config.num_future_latent_frames) + config.chunk_size


NOTES = {
    "weights": "frozen {frozen_b} x {frozen_bytes} B + trained {trained_b} x 4 B",
    "gradients": "trained x 4 B (fp32)",
    "optimizer": "AdamW: trained x 8 B (two fp32 moments)",
    "ema": "trained x 4 B (fp32)",
    "activations": "measured at 1-2 blocks x batch B, B + 1; scaled to all blocks",
    "fsdp_gathered_blocks": "two blocks' weights gathered (running + prefetched)",
    "backward_working_set": "one block's activations (recomputed under checkpointing)",
    "reserve": "CUDA context, kernels, allocator slack (assumed)",
}


def format_plan(result: dict) -> str:
    plan, counts = result["plan"], result["parameters"]
    mode = f"LoRA rank {plan['lora_rank']}" if plan["lora_rank"] else "full fine-tuning"
    spread = (f"FSDP over {plan['gpus']} GPUs" if plan["fsdp"] else
              f"DDP on {plan['gpus']} GPUs (each holds everything)" if plan["gpus"] > 1 else "1 GPU")
    tokens = result["tokens"]
    frozen_bytes = 2 if plan["lora_rank"] and plan["mixed_precision"] == "bf16" else 4
    lines = [f"{plan['preset']}: {mode}, mixed precision {plan['mixed_precision']}, gradient checkpointing "
             f"{'on' if plan['gradient_checkpointing'] else 'off'}, {spread}, batch {plan['batch_size']} per GPU, "
             f"EMA {'on' if plan['ema'] else 'off'}",
             f"parameters: {counts['total'] / 1e9:.3f} B, trained {counts['trained'] / 1e6:.1f} M; sequence "
             f"{tokens['sequence']} tokens + {tokens['text']} text tokens, width {tokens['width']}, "
             f"{tokens['layers']} blocks",
             "per GPU                      GiB"]
    for name, value in result["per_gpu_bytes"].items():
        if name == "total":
            continue
        note = NOTES[name].format(frozen_b=f"{counts['frozen'] / 1e9:.2f} B", frozen_bytes=frozen_bytes,
                                  trained_b=f"{counts['trained'] / 1e9:.3f} B")
        lines.append(f"  {name:<26} {value / GIB:7.2f}   {note}")
    total = result["per_gpu_bytes"]["total"]
    lines.append(f"  {'total':<26} {total / GIB:7.2f}")
    verdict = "fits" if result["fits"] else "does NOT fit"
    lines.append(f"{verdict} a {plan['card_gib']:g} GiB card ({result['free_gib']:+.2f} GiB left)")
    return "\n".join(lines)


def print_plan(plan: PlanConfig) -> None:
    result = plan_memory(plan)
    print(json.dumps(result) if plan.json else format_plan(result))
