"""The GPU check: one command, one JSON, in under 8 minutes on one modern GPU (random weights throughout).

    python benchmarks/gpu_check.py > gpu_check.json                       # gwp0 and gwp05 on cuda
    python benchmarks/gpu_check.py --preset tiny --device cpu --no-compile  # the same small, on a CPU (tested)

What it measures, in this order (a stage that would start after --budget-s is listed under "skipped"):
* decoding latency of gwp0 and gwp05 (the action expert): action-only cached, uncached and joint, bf16, with SDPA
  and flex attention, eager and with --compile (regional torch.compile of the blocks);
* one full fine-tuning step and one LoRA step of gwp0 (bf16 autocast, gradient checkpointing, batch 1, AdamW; the
  LoRA run's frozen weights in bf16): seconds per step and peak memory, beside `gwp plan-memory`'s prediction for
  the same run (no EMA, no reserve), whose activations it measures on this machine's CPU.

Images enter as VAE latents and instructions as text-encoder-sized embeddings, so neither the VAE nor the text
encoder is built or timed. Imports: torch, numpy, safetensors and peft (with what peft needs: transformers, tqdm,
pyyaml), and this repository's src/ (added to the path here); not diffusers, PyAV, pandas, Pillow, MuJoCo or tyro.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from gigaworld_policy.bench import bench_policy, decoding_latency, training_step  # noqa: E402
from gigaworld_policy.memory import PlanConfig, plan_memory  # noqa: E402
from gigaworld_policy.model.lora import cast_frozen, inject_lora  # noqa: E402

EXPERT_OF = {"gwp0": "gwp05", "tiny": "tiny-expert", "bench": "bench-expert"}


def decoding_stage(preset: str, device: torch.device, attention: str, compile: bool, repeats: int) -> dict:
    policy, batch, noise = bench_policy(preset, device, dtype="bfloat16", codec=False)
    policy.transformer.attention_backend = attention
    if compile:
        policy.compile()
    started = time.perf_counter()
    result = decoding_latency(policy, batch, noise, repeats)
    return {"preset": preset, "attention": attention, "compile": compile, "dtype": "bfloat16", **result,
            "stage_seconds": time.perf_counter() - started}


def training_stage(preset: str, device: torch.device, lora_rank: int, repeats: int) -> dict:
    policy, batch, _ = bench_policy(preset, device, codec=False)
    if lora_rank:
        inject_lora(policy, lora_rank, lora_rank)
        cast_frozen(policy, torch.bfloat16)
    policy.transformer.gradient_checkpointing = True
    result = training_step(policy, batch, "bf16", repeats)
    return {"preset": preset, "lora_rank": lora_rank, "mixed_precision": "bf16", "gradient_checkpointing": True,
            "batch_size": 1, **result}


def planned_bytes(preset: str, lora_rank: int, threads: int) -> float:
    plan = PlanConfig(preset=preset, lora_rank=lora_rank, gradient_checkpointing=True, mixed_precision="bf16",
                      ema=False, reserve_gib=0.0, threads=threads)
    return plan_memory(plan)["per_gpu_bytes"]["total"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="gwp0", help="gwp0 (its action-expert twin is timed too) or tiny")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile stages")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=420, help="no stage starts after this many seconds")
    parser.add_argument("--plan-threads", type=int, default=8, help="CPU threads for the memory plan's measurement")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    torch.manual_seed(0)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "python": platform.python_version(), "decoding": [], "training": [],
              "skipped": []}
    stages = []
    for compile in (False, True) if not args.no_compile else (False,):
        for attention in ("sdpa", "flex"):
            for preset in (args.preset, EXPERT_OF[args.preset]):
                stages.append((f"decoding {preset} {attention}{' compiled' if compile else ''}", "decoding",
                               lambda p=preset, a=attention, c=compile: decoding_stage(p, device, a, c, args.repeats)))
        if not compile:  # the training steps right after the eager decoding: they matter more than compiled flex
            for rank in (0, args.lora_rank):
                stages.append((f"training {args.preset} lora {rank}", "training",
                               lambda r=rank: training_stage(args.preset, device, r, args.repeats)))
    for name, kind, run in stages:
        if time.perf_counter() - started > args.budget_s:
            report["skipped"].append(name)
            continue
        try:
            report[kind].append(run())
        except Exception as error:  # one failing stage (e.g. out of memory) must not lose the others' figures
            report[kind].append({"stage": name, "error": f"{type(error).__name__}: {error}"[:500]})
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for row in report["training"]:
        if "peak_memory_bytes" in row and time.perf_counter() - started <= args.budget_s:
            row["planned_bytes"] = planned_bytes(args.preset, row["lora_rank"], args.plan_threads)
    report["seconds"] = time.perf_counter() - started
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
