"""Decoding latency of the three inference paths, with exact FLOP counts and the machine's matmul peak.

* action-only, cached: state+observation prefix once, then only the 48 action tokens at each step;
* action-only, uncached: the whole S,O,A sequence at each step (the authors' first model);
* joint: S,O,A,V at each step, actions and video denoised together (Motus-style).
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .config import PolicyConfig
from .model.policy import GigaWorldPolicy


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` calls (the caller warms up), and the last call's output."""
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        output = fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), output


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call. Attention runs on the math backend here so that it is counted as matmuls."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of a large square matmul in `dtype` (CPUs without bf16 units are slow in bf16: smaller there)."""
    size = 8192 if device.type == "cuda" else (2048 if dtype == torch.float32 else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    best = min(_median_ms(lambda: a @ b, device, 1)[0] for _ in range(repeats))
    return 2 * size**3 / (best / 1e3) / 1e9


def measure_latency(
    preset: str = "bench",
    device: str = "cpu",
    threads: int = 1,
    batch_size: int = 1,
    num_steps: int | None = None,
    repeats: int = 3,
    seed: int = 0,
    dtype: str = "float32",
    compile: bool = False,
    attention: str = "sdpa",
    vae: str | None = None,
) -> dict:
    """Time the three decoding paths of a randomly initialised policy of `preset`. Returns a flat dict.
    dtype: weights' dtype ("float32" or "bfloat16"); compile: torch.compile the blocks; attention: "sdpa"/"flex";
    vae: a Wan2.2 VAE folder for presets with the VAE codec (default: its architecture with random weights)."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    config = PolicyConfig.preset(preset)
    steps = num_steps or config.num_inference_steps
    torch.manual_seed(seed)
    with torch.device("meta") if config.transformer.num_layers > 8 else contextlib.nullcontext():
        policy = GigaWorldPolicy(config)
    if any(p.is_meta for p in policy.parameters()):  # big presets: allocate straight on the target device
        policy.to_empty(device=dev)
        for parameter in policy.parameters():
            torch.nn.init.normal_(parameter, std=0.02)
    policy = policy.to(dev, getattr(torch, dtype)).eval()
    if config.codec.kind == "wan_vae":
        from .encoders.wan_vae import WanVAECodec

        policy.codec = (WanVAECodec.from_pretrained(vae, device, policy.dtype) if vae
                        else WanVAECodec.random_wan22(device, policy.dtype))
    batch = policy.example_batch(batch_size, seed)
    noise = torch.randn(batch_size, config.chunk_size, config.max_action_dim)

    paths = {
        "action_only_cached": lambda: policy.sample_actions(batch, steps, noise=noise, use_cache=True),
        "action_only_uncached": lambda: policy.sample_actions(batch, steps, noise=noise, use_cache=False),
        "joint": lambda: policy.sample_joint(batch, steps, action_noise=noise),
    }
    result: dict = {"preset": preset, "device": str(dev), "threads": torch.get_num_threads(), "dtype": dtype,
                    "compile": compile, "attention": attention,
                    "batch_size": batch_size, "num_steps": steps, "torch": torch.__version__,
                    "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    rows, cols = config.token_grid
    result["tokens"] = {"state": 1, "observation": rows * cols, "action": config.chunk_size,
                        "future": rows * cols * config.num_future_latent_frames}
    flop_counts = {name: count_flops(fn) for name, fn in paths.items()}  # eager SDPA: counts every matmul
    policy.transformer.attention_backend = attention
    if compile:
        policy.compile()
    outputs = {}
    for name, fn in paths.items():
        flops = flop_counts[name]
        fn()  # warm-up (and compilation)
        result[f"{name}_ms"], outputs[name] = _median_ms(fn, dev, repeats)
        result[f"gflops_{name}"] = flops / 1e9
        result[f"achieved_gflops_{name}"] = flops / 1e9 / (result[f"{name}_ms"] / 1e3)
    result["cached_vs_uncached_max_abs"] = float(
        (outputs["action_only_cached"] - outputs["action_only_uncached"]).abs().max()
    )
    cached_ms = result["action_only_cached_ms"]
    result["speedup_vs_uncached"] = result["action_only_uncached_ms"] / cached_ms
    result["speedup_vs_joint"] = result["joint_ms"] / cached_ms
    result["flop_ratio_vs_uncached"] = result["gflops_action_only_uncached"] / result["gflops_action_only_cached"]
    result["flop_ratio_vs_joint"] = result["gflops_joint"] / result["gflops_action_only_cached"]
    result["gflops_cached"] = result["gflops_action_only_cached"]
    result["achieved_gflops"] = result["achieved_gflops_action_only_cached"]
    result["matmul_peak_gflops"] = matmul_peak_gflops(dev, policy.dtype)
    result["achieved_fraction_of_peak"] = result["achieved_gflops"] / result["matmul_peak_gflops"]
    return result


def format_latency(result: dict) -> str:
    lines = [
        f"preset {result['preset']} on {result['device']} ({result['machine']}), {result['dtype']}, "
        f"attention {result['attention']}{', compiled' if result['compile'] else ''}, {result['threads']} thread(s), "
        f"batch {result['batch_size']}, {result['num_steps']} Euler steps, tokens {result['tokens']}",
        f"  action-only, cached prefix : {result['action_only_cached_ms']:9.1f} ms",
        f"  action-only, no cache      : {result['action_only_uncached_ms']:9.1f} ms  "
        f"({result['speedup_vs_uncached']:.2f}x slower; {result['flop_ratio_vs_uncached']:.2f}x the FLOPs)",
        f"  joint actions + video      : {result['joint_ms']:9.1f} ms  "
        f"({result['speedup_vs_joint']:.2f}x slower; {result['flop_ratio_vs_joint']:.2f}x the FLOPs)",
        f"  cached vs uncached max |diff| {result['cached_vs_uncached_max_abs']:.2e}",
        f"  cached path: {result['gflops_cached']:.2f} GFLOP, {result['achieved_gflops']:.1f} GFLOP/s = "
        f"{100 * result['achieved_fraction_of_peak']:.0f}% of the {result['matmul_peak_gflops']:.1f} GFLOP/s "
        f"matmul peak (uncached {result['achieved_gflops_action_only_uncached']:.1f}, "
        f"joint {result['achieved_gflops_joint']:.1f} GFLOP/s)",
    ]
    return "\n".join(lines)
