"""Does the method learn? Train and evaluate ablations on the same Meta-World demonstrations and held-out seeds.

Variants (all the same network and budget unless said):
    gwp            video + action losses, independent flow times, action-only decoding   (our default)
    action_only    action loss only (video_loss_weight 0): the ablation the paper's claim rests on
    shared_sigma   one flow time for actions and video (the paper's first model)
    pretrain       a video-only pre-training stage on extra demonstrations whose actions are withheld, then
                   post-training (the budget is split between the two stages)
    baseline       a standard flow-matching policy without video: the observation seen through a small CNN
                   (as in Diffusion Policy) instead of the codec's latent patches, action loss only

For every variant and training seed: train for `--train-minutes`, evaluate closed-loop on `--eval-episodes` held-out
seeds per task, and record success and policy latency. Writes a table (mean success +- 95% interval over training
seeds) and a bar plot into the section of docs/RESULTS.md between the learning markers, and everything raw into
OUT/learning.json.

    python benchmarks/learning.py --tasks mt3 --episodes 20 --train-minutes 20 --seeds 3 --eval-episodes 20
    python benchmarks/learning.py --tasks mt10 ...
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from gigaworld_policy.envs.metaworld import MT10, MetaWorldEnv, collect
from gigaworld_policy.evaluate import closed_loop
from gigaworld_policy.inference import Predictor
from gigaworld_policy.train import OptimConfig, TrainConfig, train

TASK_SETS = {"mt3": ("reach-v3", "button-press-topdown-v3", "drawer-open-v3"), "mt10": MT10}
VARIANTS = ("gwp", "action_only", "shared_sigma", "pretrain", "baseline")
BEGIN, END = "<!-- learning:begin -->", "<!-- learning:end -->"


def train_variant(variant: str, args, data: Path, extra: Path, run: Path, seed: int) -> Path:
    common = dict(preset=args.preset, batch_size=args.batch_size, num_workers=1, seed=seed, steps=10**7,
                  save_every=10**6, log_every=50, log_with="none",
                  optim=OptimConfig(lr=args.lr, warmup_steps=200, schedule="constant"))
    minutes = args.train_minutes
    overrides = {"action_only": {"video_loss_weight": 0.0}, "shared_sigma": {"shared_flow_time": True},
                 "baseline": {"video_loss_weight": 0.0, "observation_encoder": "cnn"}}
    if variant == "pretrain":
        pre = train(TrainConfig(dataset=(str(extra),), stage="pretrain", output_dir=str(run / "pretrain"),
                                max_minutes=minutes / 2, **common))
        return train(TrainConfig(dataset=(str(data),), init=str(pre.checkpoint), output_dir=str(run / "post"),
                                 max_minutes=minutes / 2, **common)).checkpoint
    return train(TrainConfig(dataset=(str(data),), output_dir=str(run), max_minutes=minutes,
                             **overrides.get(variant, {}), **common)).checkpoint


def evaluate_checkpoint(checkpoint: Path, tasks, args) -> dict:
    predictor = Predictor.from_checkpoint(checkpoint)

    def make_env(task):
        return MetaWorldEnv(task, tuple(predictor.cameras), tuple(args.camera_size), args.episode_steps)

    return closed_loop(predictor, make_env, list(tasks), args.eval_episodes, seed=1000,
                       execute_steps=args.execute_steps, progress=False)


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95% t-interval half-width over training seeds (0 with one seed)."""
    if len(values) < 2:
        return float(np.mean(values)), 0.0
    t95 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(len(values), 2.0)
    return float(np.mean(values)), t95 * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def write_results(results: dict, args, out: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    names, means, errors = [], [], []
    for variant, runs in results.items():
        mean, half = interval([r["average_success_rate"] for r in runs])
        latency = np.median([r["latency_ms"]["p50"] for r in runs])
        rows.append(f"| {variant} | {100 * mean:.0f}% ± {100 * half:.0f} | {len(runs)} | {latency:.0f} ms |")
        names.append(variant)
        means.append(100 * mean)
        errors.append(100 * half)
    figure, axis = plt.subplots(figsize=(6, 3), dpi=100)
    axis.bar(names, means, yerr=errors, capsize=4)
    axis.set_ylabel("success on held-out seeds (%)")
    axis.set_ylim(0, 100)
    figure.tight_layout()
    plot = Path(args.docs) / "learning.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(plot)
    plt.close(figure)
    section = "\n".join([
        BEGIN, "## Learning: GigaWorld-Policy vs ablations on Meta-World", "",
        f"Command: `{command}`", "",
        f"Tasks {', '.join(args.task_list)}; {args.episodes} expert demonstrations per task"
        + (f" (and {args.episodes} more per task with actions withheld for the pre-training variant)"
           if "pretrain" in results else "") + f"; `{args.preset}` preset, "
        f"{args.train_minutes} min of CPU training per run, {args.eval_episodes} held-out episodes per task, "
        f"executing {args.execute_steps} actions per plan.", "",
        "| variant | mean success ± 95% interval over training seeds | seeds | policy latency p50 |",
        "|---|---|---|---|", *rows, "", f"![learning]({plot.name})", "", END,
    ])
    results_md = Path(args.docs) / "RESULTS.md"
    text = results_md.read_text() if results_md.exists() else "# Results\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    results_md.write_text(text)
    (out / "learning.json").write_text(json.dumps(results, indent=2))


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="mt3", help="mt3, mt10 or a comma-separated list")
    parser.add_argument("--episodes", type=int, default=20, help="demonstrations per task")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--train-minutes", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--execute-steps", type=int, default=8)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--camera-size", type=int, nargs=2, default=(64, 64))
    parser.add_argument("--out", default="outputs/learning")
    parser.add_argument("--docs", default="docs", help="where RESULTS.md and the plot go")
    args = parser.parse_args()
    args.task_list = TASK_SETS.get(args.tasks) or tuple(t for t in args.tasks.split(",") if t)
    torch.set_num_threads(1)
    out = Path(args.out)
    data, extra = out / "demos", out / "extra_demos"
    if not (data / "meta" / "info.json").exists():
        collect(list(args.task_list), args.episodes, str(data), image_size=tuple(args.camera_size), seed=0)
    variants = [v for v in args.variants.split(",") if v]
    if "pretrain" in variants and not (extra / "meta" / "info.json").exists():
        collect(list(args.task_list), args.episodes, str(extra), image_size=tuple(args.camera_size), seed=5000)
    results = {}
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {VARIANTS}")
        results[variant] = []
        for seed in range(args.seeds):
            started = time.monotonic()
            checkpoint = train_variant(variant, args, data, extra, out / "runs" / f"{variant}-seed{seed}", seed)
            report = evaluate_checkpoint(checkpoint, args.task_list, args)
            report["train_and_eval_minutes"] = (time.monotonic() - started) / 60
            results[variant].append(report)
            print(f"{variant} seed {seed}: {100 * report['average_success_rate']:.0f}% average success", flush=True)
    write_results(results, args, out, "python benchmarks/learning.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
