"""The main job: Meta-World demonstrations -> training -> closed-loop evaluation -> a report.

    gwp demo [--out outputs/demo] [--tasks reach-v3 button-press-topdown-v3 drawer-open-v3] [--episodes 50]
             [--train-minutes 40] [--eval-episodes 20] [--image-size 64 64 ...]

The recipe (docs/RESULTS.md, "The main job"): the current image through a small CNN and the goal's position in the
state, as Meta-World's multi-task benchmarks observe it (so the policy is not image-only), 50 demonstrations per task.
`--observation-encoder patch --episodes 20 --no-observe-goal` is the image-only recipe it replaced.

Every field of `DemoConfig` is a flag; the environment's settings (`--cameras`, `--image-size`, ...) are its own.

Runs on a CPU with no downloads. Writes OUT/report.md with the success table, the loss curve (OUT/loss.png) and
a rollout GIF per task.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from .atomic import file_written_atomically, write_text_atomically
from .config import PRESETS
from .envs.metaworld import MetaWorldSettings


@dataclass
class DemoConfig:
    """The main job: expert demonstrations, training for a time budget, closed-loop evaluation, a report."""

    out: str = "outputs/demo"
    tasks: tuple[str, ...] = ("reach-v3", "button-press-topdown-v3", "drawer-open-v3")
    episodes: int = 50  # expert demonstrations per task
    env: tyro.conf.OmitArgPrefixes[MetaWorldSettings] = MetaWorldSettings(image_size=(64, 64), observe_goal=True)
    """the environment the demonstrations are recorded in and the policy is evaluated in"""
    preset: str = "small"
    observation_encoder: Literal["patch", "cnn"] | None = "cnn"  # how the policy sees the current image (None: the
    # preset's latent patches, or --init's encoder)
    init: str | None = None  # post-train from this checkpoint, e.g. the video prior priors/metaworld-small
    train_minutes: float = 40.0
    max_steps: int = 100_000  # training steps, if time allows
    batch_size: int = 8
    lr: float = 3e-4
    # after 200 warm-up steps: constant, or a cosine over the training minutes (to a tenth of --lr at the budget's end)
    lr_schedule: Literal["constant", "time-cosine"] = "constant"
    eval_episodes: int = 20  # per task, on seeds disjoint from the demonstrations
    execute_steps: int = 8  # actions executed per plan
    episode_steps: int = 200  # evaluation time limit per episode
    seed: int = 0

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:  # before the demonstrations are recorded, not after
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")


def plot_losses(metrics_file: Path, image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key, label in (("train/loss", "total"), ("train/loss_action", "action"), ("train/loss_video", "video")):
        axis.plot([r["step"] for r in rows], [r[key] for r in rows], label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("flow-matching loss")
    axis.set_yscale("log")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    with file_written_atomically(image) as temporary:
        figure.savefig(temporary)
    plt.close(figure)


def run_demo(cfg: DemoConfig) -> Path:
    """Run the whole pipeline; returns the path of the report."""
    import torch

    from .envs.recording import collect
    from .evaluate import closed_loop, env_maker, report_markdown
    from .inference import Predictor
    from .train import OptimConfig, TrainConfig, train

    torch.set_num_threads(1)  # small models on few cores: more threads only contend (see docs/BENCHMARKS.md)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data, run_dir = out / "data", out / "train"
    timings = {}

    start = time.monotonic()
    if not (data / "meta" / "info.json").is_file():
        expert = collect(cfg.env, list(cfg.tasks), cfg.episodes, data, seed=cfg.seed)
        write_text_atomically(out / "expert.json", json.dumps(expert, indent=2))
    timings["collect_min"] = (time.monotonic() - start) / 60

    start = time.monotonic()
    resume = (run_dir / "checkpoints" / "last").exists()
    result = train(TrainConfig(dataset=(str(data),), preset=cfg.preset, steps=cfg.max_steps, resume=resume,
                               max_minutes=cfg.train_minutes, output_dir=str(run_dir), batch_size=cfg.batch_size,
                               num_workers=1, save_every=1000, log_every=25, seed=cfg.seed,
                               observation_encoder=cfg.observation_encoder, init=cfg.init,
                               optim=OptimConfig(lr=cfg.lr, warmup_steps=200, schedule=cfg.lr_schedule)))
    timings["train_min"] = (time.monotonic() - start) / 60
    plot_losses(run_dir / "metrics.jsonl", out / "loss.png")

    start = time.monotonic()
    predictor = Predictor.from_checkpoint(result.checkpoint)
    report = closed_loop(predictor, env_maker(predictor, cfg.env, cfg.episode_steps), list(cfg.tasks),
                         cfg.eval_episodes, seed=1000, execute_steps=cfg.execute_steps, out_dir=out / "eval")
    timings["eval_min"] = (time.monotonic() - start) / 60

    steps = int(result.checkpoint.name)
    encoder = {"cnn": "a small CNN", "patch": "the codec's latent patches"}[result.policy.config.observation_encoder]
    recipe = (f"Recipe: the current image seen through {encoder}; the state is the robot's"
              + (" and the goal's position (so not an image-only policy)" if cfg.env.observe_goal else "")
              + (f"; post-trained from `{cfg.init}`" if cfg.init else "; trained from random weights") + ".")
    gifs = sorted((out / "eval" / "videos").glob("*.gif"))
    lines = [
        "# GigaWorld-Policy on Meta-World — demo report", "",
        f"One `{cfg.preset}` policy for {', '.join(cfg.tasks)}: {cfg.episodes} expert demonstrations per task "
        f"({len(cfg.env.cameras)} cameras at {cfg.env.image_size[0]}x{cfg.env.image_size[1]}), trained for {steps} "
        f"steps ({timings['train_min']:.1f} min, batch {cfg.batch_size}, learning rate {cfg.lr:g}"
        f"{', decayed over the minutes' if cfg.lr_schedule == 'time-cosine' else ''}), evaluated closed-loop on "
        f"{cfg.eval_episodes} held-out seeds per task, executing {cfg.execute_steps} of each predicted chunk.", "",
        recipe, "",
        f"Machine: {platform.machine()}, {platform.processor() or 'CPU'}; collection {timings['collect_min']:.1f} min, "
        f"training {timings['train_min']:.1f} min, evaluation {timings['eval_min']:.1f} min.", "",
        "## Success", "", report_markdown(report),
        "## Training loss", "", "![loss](loss.png)", "",
        "## Rollouts", "", *[f"![{g.stem}](eval/videos/{g.name})" for g in gifs], "",
        f"Checkpoint: `{result.checkpoint}`. Full results: `eval/eval.json`.", "",
    ]
    report_path = out / "report.md"
    write_text_atomically(report_path, "\n".join(lines))
    return report_path
