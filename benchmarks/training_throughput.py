"""Training throughput, peak memory and achieved GFLOP/s at the `tiny` and `small` presets.

Each preset runs in a fresh process (so its peak resident memory is its own): a training step is
compute_loss + backward + AdamW step on a random batch of the preset's shapes. FLOPs of one step are counted
exactly (torch's FLOP counter; attention on the math backend so it counts as matmuls); the matmul peak is a
2048x2048 fp32 matmul timed in the same process.

    python benchmarks/training_throughput.py [--batch-size 8] [--steps 10] [--threads 1]
"""

import argparse
import multiprocessing
import resource
import time


def measure(preset: str, batch_size: int, steps: int, threads: int) -> dict:
    import torch

    from gigaworld_policy import GigaWorldPolicy, PolicyConfig
    from gigaworld_policy.bench import count_flops, matmul_peak_gflops

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    policy = GigaWorldPolicy(PolicyConfig.preset(preset)).train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batch = policy.example_batch(batch_size)

    def step():
        loss, _ = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    flops = count_flops(step)  # also the warm-up step
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {
        "preset": preset,
        "params_m": sum(p.numel() for p in policy.parameters()) / 1e6,
        "samples_per_s": batch_size / seconds,
        "step_ms": seconds * 1e3,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / 1e9 / seconds,
        "matmul_peak_gflops": matmul_peak_gflops(torch.device("cpu"), torch.float32),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    print(f"batch {args.batch_size}, {args.steps} timed steps, torch threads {args.threads}, fp32, CPU")
    print("| preset | params (M) | samples/s | step (ms) | GFLOP/step | GFLOP/s | % of matmul peak | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in ("tiny", "small"):
        with context.Pool(1) as pool:
            r = pool.apply(measure, (preset, args.batch_size, args.steps, args.threads))
        print(f"| {r['preset']} | {r['params_m']:.2f} | {r['samples_per_s']:.1f} | {r['step_ms']:.0f} | "
              f"{r['gflop_per_step']:.2f} | {r['achieved_gflops']:.1f} | "
              f"{100 * r['achieved_gflops'] / r['matmul_peak_gflops']:.0f}% of {r['matmul_peak_gflops']:.0f} | "
              f"{r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
