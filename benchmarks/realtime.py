"""Real-time chunking under inference latency, closed loop on the environment a dataset was recorded in.

    python benchmarks/realtime.py --checkpoint RUN/checkpoints/last --dataset DATA --delays 0,2,4,8 --episodes 10

For each delay d (control steps a chunk takes to compute) and execution (sync: the robot holds still meanwhile;
async: it keeps executing the current chunk and switches to the new one where it is by then; rtc: the same, and the
request carries the actions executed meanwhile, which the new chunk continues; see gigaworld_policy.execution), it
runs `--episodes` held-out seeds per task and measures success and smoothness (mean |a_t - a_{t-1}| where chunks
meet against within chunks, and the largest jump), and the decoding time with and without a prefix. Writes
OUT/realtime.json and the section "realtime NAME" of docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gigaworld_policy.atomic import write_text_atomically
from gigaworld_policy.envs.base import episode_seed
from gigaworld_policy.envs.recording import read_recording
from gigaworld_policy.envs.registry import make_env
from gigaworld_policy.execution import EXECUTIONS, DelayedChunks, smoothness
from gigaworld_policy.inference import Predictor
from gigaworld_policy.studies.report import markers, write_section
from gigaworld_policy.studies.statistics import wilson_interval

ROOT = Path(__file__).resolve().parents[1]


def episode(predictor: Predictor, env, seed: int, execute_steps: int, delay: int, execution: str) -> dict:
    """One episode; the sampling noise is drawn from `seed`, as in gwp eval."""
    generator = torch.Generator().manual_seed(seed)
    start = {"observation": env.reset(seed)}

    def observe():
        return start.pop("observation") if start else env.observe()

    def predict(observation, prefix):
        return predictor.predict(observation, generator=generator, action_prefix=prefix)["actions"]

    chunks = DelayedChunks(predict, execute_steps, delay, execution, env.hold_action)
    actions, starts, success, done = [], [], False, False
    while not done:
        action, first = chunks.act(observe)
        step_success, done = env.step(action)
        success |= step_success
        actions.append(action)
        starts.append(first)
    return {"success": bool(success), "length": len(actions), **smoothness(np.stack(actions), np.array(starts))}


def decoding_ms(predictor: Predictor, env, prefix_steps: int, repeats: int) -> float:
    """Median time of one plan, with a committed prefix of `prefix_steps` (robot units, zeros)."""
    observation = env.reset(0)
    prefix = np.zeros((prefix_steps, predictor.action_dim), np.float32) if prefix_steps else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(observation, action_prefix=prefix)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def summary(rows: list[dict]) -> dict:
    successes = sum(r["success"] for r in rows)
    low, high = wilson_interval(successes, len(rows))
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in ("boundary_jump", "within_chunk_step")}
    return {"episodes": len(rows), "successes": successes, "success_rate": successes / len(rows), "ci95": [low, high],
            **mean, "largest_boundary_jump": float(np.nanmax([r["largest_boundary_jump"] for r in rows]))}


def section(name: str, results: dict, command: str) -> str:
    begin, end = markers("realtime", name)
    tasks = ", ".join(results["tasks"])
    lines = [begin, f"### Real-time chunking under latency: {name}", "",
             f"`{command}`", "",
             f"{results['episodes']} held-out episodes per task on {tasks} ({results['checkpoint']}, trained with "
             f"action_prefix_prob {results['action_prefix_prob']}), re-planning every {results['execute_steps']} "
             f"steps; a chunk takes d control steps to compute. Jumps are mean |a_t - a_t-1| over the executed "
             f"actions, in Meta-World's units (hand motion and gripper).", "",
             "| d | execution | success | 95% interval | jump where chunks meet | step within a chunk | largest jump |",
             "|---|---|---|---|---|---|---|"]
    for key, row in results["runs"].items():
        delay, execution = key.split("/")
        low, high = row["ci95"]
        lines.append(f"| {delay} | {execution} | {100 * row['success_rate']:.0f}% | {100 * low:.0f}–{100 * high:.0f}% "
                     f"| {row['boundary_jump']:.3f} | {row['within_chunk_step']:.3f} "
                     f"| {row['largest_boundary_jump']:.2f} |")
    lines += ["", "Decoding time per plan (median, ms): " + ", ".join(
        f"prefix {d}: {ms:.0f}" for d, ms in results["decoding_ms"].items()) + f" ({results['machine']}).", end]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", required=True, help="the training data: its recording gives the environment")
    parser.add_argument("--delays", default="0,2,4,8", help="control steps a chunk takes, comma-separated")
    parser.add_argument("--executions", default=",".join(EXECUTIONS))
    parser.add_argument("--episodes", type=int, default=10, help="per task")
    parser.add_argument("--execute-steps", type=int, default=8)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--name", default="mt3")
    parser.add_argument("--out", default="outputs/realtime")
    parser.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    predictor = Predictor.from_checkpoint(args.checkpoint)
    recording = read_recording(args.dataset)
    delays = [int(d) for d in args.delays.split(",")]
    runs: dict[str, dict] = {}
    for delay in delays:
        for execution in (EXECUTIONS[:1] if delay == 0 else args.executions.split(",")):  # d = 0: all the same
            rows = []
            for number, task in enumerate(recording.tasks):
                env = make_env(recording.settings, task, args.episode_steps)
                try:
                    rows += [episode(predictor, env, episode_seed(args.seed, number, e), args.execute_steps, delay,
                                     execution) for e in range(args.episodes)]
                finally:
                    env.close()
            runs[f"{delay}/{execution if delay else 'any'}"] = summary(rows)
            print(delay, execution, json.dumps(runs[f"{delay}/{execution if delay else 'any'}"]), flush=True)
    env = make_env(recording.settings, recording.tasks[0], args.episode_steps)
    timing = {d: decoding_ms(predictor, env, d, 9) for d in sorted({0, *delays}) if d <= predictor.max_action_prefix}
    env.close()
    results = {"checkpoint": str(args.checkpoint), "tasks": list(recording.tasks), "episodes": args.episodes,
               "execute_steps": args.execute_steps, "action_prefix_prob": predictor.policy.config.action_prefix_prob,
               "runs": runs, "decoding_ms": timing, "machine": "2 CPU cores, 1 torch thread"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "realtime.json", json.dumps(results, indent=2))
    command = "python benchmarks/realtime.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "results"))
    write_section(Path(args.results), "realtime", args.name, section(args.name, results, command))


if __name__ == "__main__":
    main()
