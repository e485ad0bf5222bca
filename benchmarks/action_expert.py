"""The action expert against the plain model, in one run.

* cached action-only decoding of `bench-expert` (bench + a quarter-width expert) against `bench`, timed in turn
  round after round (a shared machine's load reaches both alike): per call and per Euler step, with exact FLOPs;
* the weights one cached Euler step reads, `gwp05` against `gwp0`, counted from the module tree on the meta device
  (no 5B weights are allocated).

    python benchmarks/action_expert.py [--threads 1] [--rounds 5]

`gwp bench latency --preset bench-expert` (and `--preset bench`) gives each preset's full table, uncached and joint
decoding included.
"""

from __future__ import annotations

import argparse

from gigaworld_policy.bench import compare_cached, weights_per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per preset and path (median reported)")
    args = parser.parse_args()

    result = compare_cached(("bench", "bench-expert"), args.rounds, args.threads)
    print(f"cached action-only decoding, batch 1, {result['threads']} thread(s), median of {result['rounds']} rounds")
    for name in ("bench", "bench-expert"):
        r = result[name]
        print(f"  {name:12s}: {r['cached_ms']:7.1f} ms per call ({r['num_steps']} Euler steps), {r['step_ms']:6.1f} ms "
              f"per step; {r['gflops_cached']:.2f} GFLOP per call, {r['gflops_step']:.3f} per step")
    plain, expert = result["bench"], result["bench-expert"]
    print(f"  bench-expert against bench: {plain['cached_ms'] / expert['cached_ms']:.2f}x faster per call "
          f"({plain['gflops_cached'] / expert['gflops_cached']:.2f}x fewer FLOPs), "
          f"{plain['step_ms'] / expert['step_ms']:.2f}x per Euler step "
          f"({plain['gflops_step'] / expert['gflops_step']:.2f}x)")

    weights = {name: weights_per_step(name) for name in ("gwp0", "gwp05")}
    for w in weights.values():
        print(f"{w['preset']}: {w['parameters'] / 1e9:.3f} B parameters; a cached Euler step reads "
              f"{w['step_parameters'] / 1e6:.0f} M of them = {w['step_bytes'] / 1e9:.2f} GB in bfloat16")
    print(f"gwp05 reads {weights['gwp0']['step_bytes'] / weights['gwp05']['step_bytes']:.2f}x fewer weight bytes "
          f"per Euler step than gwp0")


if __name__ == "__main__":
    main()
