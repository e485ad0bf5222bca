"""Decoding latency of the three inference paths, with exact FLOP counts and the machine's matmul peak.

* action-only, cached: state+observation prefix once, then only the 48 action tokens at each step;
* action-only, uncached: the whole S,O,A sequence at each step (the authors' first model);
* joint: S,O,A,V at each step, actions and video denoised together (Motus-style).

`step_weights` counts the weights one cached Euler step reads (at batch 1 on a GPU each of them is read from memory
once per step), from the module tree alone, so that `weights_per_step("gwp05")` needs no 5B weights.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import re
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


def step_weights(policy: GigaWorldPolicy) -> int:
    """Parameters one cached action-only Euler step reads at batch 1: the action encoder and decoder (one
    embodiment's bank) and the transformer that carries the action tokens - the action expert, or else the Wan
    blocks with their time embedding and output norm, less the cross-attention keys/values (cached per instruction).
    Works on the meta device."""
    banks = sum(p.numel() // module.num_embodiments for module in (policy.action_encoder, policy.action_decoder)
                for p in module.parameters())
    if policy.action_expert is not None:
        return banks + sum(p.numel() for p in policy.action_expert.parameters())
    unread = re.compile(r"patch_embedding\.|proj_out\.|condition_embedder\.text_embedder\."
                        r"|blocks\.\d+\.attn2\.(to_k|to_v|norm_k)\.")
    return banks + sum(p.numel() for name, p in policy.transformer.named_parameters() if not unread.match(name))


def weights_per_step(preset: str, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Parameter counts of `preset` (built on the meta device: no memory) and the bytes of weights one cached
    Euler step reads in `dtype`."""
    with torch.device("meta"):
        policy = GigaWorldPolicy(PolicyConfig.preset(preset))
    per_step = step_weights(policy)
    return {"preset": preset, "parameters": sum(p.numel() for p in policy.parameters()),
            "step_parameters": per_step, "step_bytes": per_step * dtype.itemsize, "dtype": str(dtype)}


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of a large square matmul in `dtype` (CPUs without bf16 units are slow in bf16: smaller there)."""
    size = 8192 if device.type == "cuda" else (2048 if dtype == torch.float32 else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    best = min(_median_ms(lambda: a @ b, device, 1)[0] for _ in range(repeats))
    return 2 * size**3 / (best / 1e3) / 1e9


def bench_policy(preset: str, device: torch.device, batch_size: int = 1, seed: int = 0, dtype: str = "float32",
                 vae: str | None = None, codec: bool = True) -> tuple[GigaWorldPolicy, dict, torch.Tensor]:
    """A randomly initialised policy of `preset` in eval mode, an example batch and action noise (B, H, A).
    codec=False: no VAE is attached (none is built: no diffusers needed) and the batch carries the codec latents of
    its images and future frames instead, `latents` (B, C, 1 + F', h, w)."""
    config = PolicyConfig.preset(preset)
    torch.manual_seed(seed)
    with torch.device("meta") if config.transformer.num_layers > 8 else contextlib.nullcontext():
        policy = GigaWorldPolicy(config)
    if any(p.is_meta for p in policy.parameters()):  # big presets: allocate straight on the target device
        policy.to_empty(device=device)
        for parameter in policy.parameters():
            torch.nn.init.normal_(parameter, std=0.02)
    policy = policy.to(device, getattr(torch, dtype)).eval()
    if not codec:
        batch = policy.example_batch(batch_size, seed)
        del batch["image"], batch["future_images"]
        g = torch.Generator().manual_seed(seed)
        batch["latents"] = torch.randn(batch_size, config.codec.latent_channels, 1 + config.num_future_latent_frames,
                                       *config.latent_size, generator=g)
        return policy, batch, torch.randn(batch_size, config.chunk_size, config.max_action_dim, generator=g)
    if config.codec.kind == "wan_vae":
        from .encoders.wan_vae import WanVAECodec

        policy.codec = (WanVAECodec.from_pretrained(vae, str(device), policy.dtype) if vae
                        else WanVAECodec.random_wan22(str(device), policy.dtype))
    batch = policy.example_batch(batch_size, seed)
    return policy, batch, torch.randn(batch_size, config.chunk_size, config.max_action_dim)


def compare_cached(presets: tuple[str, ...], rounds: int = 5, threads: int = 1, device: str = "cpu") -> dict:
    """Cached action-only decoding of several presets timed in turn, round after round, so that a load that changes
    during the run (a shared machine) reaches all of them alike. Per preset: median ms of one call with the
    preset's Euler steps and of one with a single step, the per-step difference, and the FLOPs of both."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    calls, num_steps = {}, {}
    for name in presets:
        policy, batch, noise = bench_policy(name, dev)
        num_steps[name] = policy.config.num_inference_steps
        for steps in ("all", "one"):
            n = num_steps[name] if steps == "all" else 1
            calls[name, steps] = functools.partial(policy.sample_actions, batch, n, noise=noise, use_cache=True)
    flops = {key: count_flops(fn) / 1e9 for key, fn in calls.items()}
    times: dict = {key: [] for key in calls}
    for fn in calls.values():
        fn()  # warm-up
    for _ in range(rounds):
        for key, fn in calls.items():
            times[key].append(_median_ms(fn, dev, 1)[0])
    result = {}
    for name, steps in num_steps.items():
        full, one = statistics.median(times[name, "all"]), statistics.median(times[name, "one"])
        result[name] = {"cached_ms": full, "one_step_ms": one, "step_ms": (full - one) / (steps - 1),
                        "gflops_cached": flops[name, "all"],
                        "gflops_step": (flops[name, "all"] - flops[name, "one"]) / (steps - 1), "num_steps": steps}
    result["threads"], result["rounds"] = torch.get_num_threads(), rounds
    return result


def decoding_latency(policy: GigaWorldPolicy, batch: dict, noise: torch.Tensor, repeats: int = 3) -> dict:
    """Median ms of the three decoding paths (after a warm-up, which compiles a compiled policy) and the largest
    difference between cached and uncached actions."""
    steps = policy.config.num_inference_steps
    paths = {
        "action_only_cached": lambda: policy.sample_actions(batch, steps, noise=noise, use_cache=True),
        "action_only_uncached": lambda: policy.sample_actions(batch, steps, noise=noise, use_cache=False),
        "joint": lambda: policy.sample_joint(batch, steps, action_noise=noise),
    }
    result, outputs = {}, {}
    for name, fn in paths.items():
        fn()
        result[f"{name}_ms"], outputs[name] = _median_ms(fn, policy.device, repeats)
    result["cached_vs_uncached_max_abs"] = float(
        (outputs["action_only_cached"].float() - outputs["action_only_uncached"].float()).abs().max())
    return result


def training_step(policy: GigaWorldPolicy, batch: dict, mixed_precision: str = "bf16", repeats: int = 3) -> dict:
    """Seconds per optimiser step (median of `repeats` after a warm-up step: compute_loss, backward, AdamW on the
    trainable parameters) and, on a GPU, the peak memory allocated during those steps."""
    policy.train()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    device = policy.device
    autocast = (torch.autocast(device.type, torch.bfloat16) if mixed_precision == "bf16"
                else contextlib.nullcontext())

    def step():
        with autocast:
            loss, _ = policy(batch, generator=torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    step()  # warm-up: the optimiser state is allocated here
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, loss = _median_ms(step, device, repeats)
    result = {"seconds_per_step": seconds / 1e3, "loss": float(loss),
              "trained_parameters": sum(p.numel() for p in trainable),
              "parameters": sum(p.numel() for p in policy.parameters())}
    if device.type == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


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
    policy, batch, noise = bench_policy(preset, dev, batch_size, seed, dtype, vae)
    config = policy.config
    steps = num_steps or config.num_inference_steps

    paths = {
        "action_only_cached": lambda: policy.sample_actions(batch, steps, noise=noise, use_cache=True),
        "action_only_uncached": lambda: policy.sample_actions(batch, steps, noise=noise, use_cache=False),
        "joint": lambda: policy.sample_joint(batch, steps, action_noise=noise),
    }
    result: dict = {"preset": preset, "device": str(dev), "threads": torch.get_num_threads(), "dtype": dtype,
                    "compile": compile, "attention": attention,
                    "parameters": sum(p.numel() for p in policy.parameters()), "step_parameters": step_weights(policy),
                    "batch_size": batch_size, "num_steps": steps, "torch": torch.__version__,
                    "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    rows, cols = config.token_grid
    result["tokens"] = {"state": 1, "observation": rows * cols, "action": config.chunk_size,
                        "future": rows * cols * config.num_future_latent_frames}

    def one_step():  # one Euler step of the cached path: what the call with all steps costs more than this one
        return policy.sample_actions(batch, 1, noise=noise, use_cache=True)

    flop_counts = {name: count_flops(fn) for name, fn in {**paths, "cached_one_step": one_step}.items()}
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
    one_step()
    one_step_ms, _ = _median_ms(one_step, dev, repeats)
    if steps > 1:
        result["cached_step_ms"] = (result["action_only_cached_ms"] - one_step_ms) / (steps - 1)
        result["gflops_cached_step"] = (flop_counts["action_only_cached"] - flop_counts["cached_one_step"]) / (
            steps - 1) / 1e9
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
        f"  {result['parameters'] / 1e6:.1f} M parameters; one cached Euler step reads "
        f"{result['step_parameters'] / 1e6:.1f} M of them",
    ]
    if "cached_step_ms" in result:
        lines.append(f"  one cached Euler step: {result['cached_step_ms']:.1f} ms, {result['gflops_cached_step']:.2f} "
                     f"GFLOP (the rest of the cached path is the prefix pass and the text keys/values, once per call)")
    return "\n".join(lines)
