"""Evaluation.

Closed loop: roll the policy out in an `Env` with action chunking (execute `execute_steps` of the H predicted
actions, then re-plan) and report success rate with a 95% Wilson interval, episode length and policy latency.
Open loop: predicted action chunks and future frames against held-out ground truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .atomic import file_written_atomically, write_text_atomically
from .data.composite import to_model_range, to_uint8
from .envs.base import DivergingEnv, Env, EnvSettings, StagedEnv, episode_seed
from .execution import ENSEMBLE, executor
from .model.policy import GigaWorldPolicy
from .studies.statistics import wilson_interval


@dataclass
class EpisodeResult:
    task: str
    seed: int
    success: bool
    length: int
    latencies_ms: list[float] = field(default_factory=list)
    stage: int | None = None  # the highest stage reached, of an environment with stages (envs/base.StagedEnv)
    stage_names: tuple[str, ...] = ()  # that environment's stages of the task
    diverged: bool = False  # the episode ended because the simulation diverged (envs/base.DivergingEnv)


def rollout(predictor, env: Env, seed: int, execute_steps: int, camera: str | None = None,
            with_video: bool = False, delay_steps: int = 0, execution: str = "sync",
            ensemble_coeff: float = 0.01) -> tuple[EpisodeResult, list[np.ndarray], dict | None]:
    """One episode. Returns its result, the frames of `camera` (for a rollout video), and with_video the
    predicted vs real future frames of the first plan ({"predicted": (F,H,W,3), "real": [...]}). The sampling noise
    is drawn from `seed` too, so an episode is a pure function of the policy and its seed. `delay_steps` control
    steps pass while a chunk is computed, and `execution` says what the robot does meanwhile (see execution.py;
    with 0, the default, every execution is the plain rollout); sync execution holds the robot still with the
    environment's `hold_action`. `execution="ensemble"` is ACT's temporal ensembling of overlapping chunks instead
    (weights exp(-ensemble_coeff * i), i = 0 the oldest chunk; no delay)."""
    start_observation = {"now": env.reset(seed)}
    generator = torch.Generator().manual_seed(seed)
    result = EpisodeResult(env.task, seed, False, 0)
    frames = [start_observation["now"].images[camera]] if camera else []
    composites, first_plan = [], None
    stride = predictor.policy.config.future_stride

    def observe():  # the cameras are rendered only when the policy looks
        return start_observation.pop("now") if start_observation else env.observe()

    def plan(observation, prefix):
        nonlocal first_plan
        decode_video = with_video and first_plan is None
        start = time.perf_counter()
        prediction = predictor.predict(observation, with_video=decode_video, generator=generator,
                                       action_prefix=prefix)
        if not decode_video:  # latency is that of action-only decoding, as deployed
            result.latencies_ms.append((time.perf_counter() - start) * 1e3)
        if "video" in prediction:
            first_plan = {"predicted": prediction["video"], "start": result.length, "observation": observation}
        return prediction["actions"]

    chunks = executor(plan, execute_steps, delay_steps, execution, env.hold_action, ensemble_coeff)
    done = False
    while not done:
        action, _ = chunks.act(observe)
        if first_plan and result.length <= first_plan["start"] + stride * len(first_plan["predicted"]):
            # the real frames the first plan's predicted future is compared with
            now = first_plan.pop("observation") if "observation" in first_plan else env.observe()
            composites.append(predictor.composite_uint8(now))
        success, done = env.step(action)
        result.length += 1
        result.success |= success
        if camera:
            frames.append(env.render(camera))
    if isinstance(env, StagedEnv):
        result.stage, result.stage_names = env.stage, env.stages
    if isinstance(env, DivergingEnv):
        result.diverged = env.diverged
    comparison = None
    if first_plan is not None:
        wanted = [first_plan["start"] + stride * (k + 1) for k in range(len(first_plan["predicted"]))]
        real = [composites[i] for i in wanted if i < len(composites)]
        comparison = {"predicted": first_plan["predicted"], "real": real}
    return result, frames, comparison


def closed_loop(predictor, make_env: Callable[[str], Env], tasks: list[str], episodes: int, seed: int = 1000,
                execute_steps: int | None = None, out_dir: str | Path | None = None, videos_per_task: int = 1,
                with_video: bool = False, progress: bool = True, delay_steps: int = 0,
                execution: str = "sync", ensemble_coeff: float = 0.01) -> dict:
    """Evaluate on `episodes` seeds per task, `episode_seed(seed, task_number, e)` (disjoint from the
    demonstration seeds `gwp collect` uses with its default base seed 0, below 1000 attempts per task)."""
    from tqdm import tqdm

    execute_steps = execute_steps or predictor.policy.config.chunk_size
    out_dir = Path(out_dir) if out_dir else None
    results: list[EpisodeResult] = []
    bar = tqdm(total=episodes * len(tasks), desc="evaluating", unit="episode", disable=not progress)
    for number, task in enumerate(tasks):
        env = make_env(task)
        try:
            for e in range(episodes):
                record = out_dir is not None and e < videos_per_task
                camera = predictor.cameras[0] if record else None
                result, frames, comparison = rollout(predictor, env, episode_seed(seed, number, e), execute_steps,
                                                     camera, with_video and record, delay_steps, execution,
                                                     ensemble_coeff)
                results.append(result)
                if record:
                    save_rollout(out_dir / "videos" / f"{task}-seed{result.seed}", frames)
                if comparison and comparison["real"]:
                    real = to_model_range(torch.from_numpy(np.stack(comparison["real"])))
                    pred = to_model_range(torch.from_numpy(comparison["predicted"][: len(real)]))
                    save_future_comparison(out_dir / "videos" / f"{task}-seed{result.seed}-future.png",
                                           real[None], pred[None])
                bar.update()
                bar.set_postfix(success=f"{np.mean([r.success for r in results]):.2f}")
        finally:
            env.close()
    bar.close()
    report = summarize(results, execute_steps)
    report["execution"] = {"mode": execution, "delay_steps": delay_steps,
                           **({"ensemble_coeff": ensemble_coeff} if execution == ENSEMBLE else {})}
    if out_dir is not None:
        write_report(report, out_dir)
    return report


def env_maker(predictor, settings: EnvSettings, max_steps: int) -> Callable[[str], Env]:
    """`closed_loop`'s `make_env`: the registered environment of `settings` on a task, rendering only the cameras the
    policy reads, with episodes of at most `max_steps` steps. Settings the policy cannot read (another state size,
    cameras it needs that they lack or render at another size than it was trained on) are refused in one sentence
    before any episode runs: evaluate with the settings its data was recorded with (`read_recording`)."""
    from .envs.registry import make_env, name_of

    name = name_of(settings)
    hint = "evaluate with the settings its data was recorded with (gwp eval --dataset DIR)"
    given = settings.state_names
    if predictor.state_dim not in (0, len(given)):
        raise ValueError(f"the policy reads a state of {predictor.state_dim} numbers; the {name} settings give "
                         f"{len(given)} ({', '.join(given)}): {hint}")
    missing = [camera for camera in predictor.cameras if camera not in settings.cameras]
    sizes = sorted({"x".join(map(str, size)) for size in predictor.camera_sizes})
    rendered = "x".join(map(str, settings.image_size))
    if missing or sizes != [rendered]:
        raise ValueError(f"the policy was trained on cameras {predictor.cameras} at {' and '.join(sizes)}; the {name} "
                         f"settings render {list(settings.cameras)} at {rendered}: {hint}")
    policy_view = replace(settings, cameras=tuple(predictor.cameras))
    return lambda task: make_env(policy_view, task, max_steps)


def summarize(results: list[EpisodeResult], execute_steps: int) -> dict:
    per_task = {}
    for task in dict.fromkeys(r.task for r in results):
        rows = [r for r in results if r.task == task]
        successes = sum(r.success for r in rows)
        low, high = wilson_interval(successes, len(rows))
        per_task[task] = {"episodes": len(rows), "successes": successes, "success_rate": successes / len(rows),
                          "ci95": [low, high], "mean_length": float(np.mean([r.length for r in rows]))}
        if all(r.stage is not None for r in rows):  # the fraction of episodes that reached each stage
            per_task[task]["stages"] = {name: sum(r.stage > k for r in rows) / len(rows)
                                        for k, name in enumerate(rows[0].stage_names)}
        diverged = sum(r.diverged for r in rows)
        if diverged:
            per_task[task]["diverged"] = diverged
    latencies = [ms for r in results for ms in r.latencies_ms]
    rates = [v["success_rate"] for v in per_task.values()]
    return {
        "tasks": per_task,
        "average_success_rate": float(np.mean(rates)) if rates else 0.0,
        "episodes": len(results),
        "execute_steps": execute_steps,
        "latency_ms": {"p50": float(np.percentile(latencies, 50)) if latencies else None,
                       "p95": float(np.percentile(latencies, 95)) if latencies else None},
        "results": [{k: v for k, v in asdict(r).items() if k not in ("latencies_ms", "stage_names")
                     and not (k == "stage" and v is None) and not (k == "diverged" and not v)} for r in results],
    }


def report_markdown(report: dict) -> str:
    lines = ["| task | success | 95% interval | episodes | mean length |", "|---|---|---|---|---|"]
    for task, row in report["tasks"].items():
        low, high = row["ci95"]
        lines.append(f"| {task} | {100 * row['success_rate']:.0f}% | {100 * low:.0f}–{100 * high:.0f}% | "
                     f"{row['episodes']} | {row['mean_length']:.1f} |")
    lines.append(f"| **average** | **{100 * report['average_success_rate']:.0f}%** | | {report['episodes']} | |")
    staged = {task: row["stages"] for task, row in report["tasks"].items() if "stages" in row}
    if staged:
        lines.append("\nStages reached (fraction of episodes): " + "; ".join(
            f"{task}: " + ", ".join(f"{name} {100 * rate:.0f}%" for name, rate in stages.items())
            for task, stages in staged.items()) + ".")
    diverged = {task: (row["diverged"], row["episodes"]) for task, row in report["tasks"].items() if "diverged" in row}
    if diverged:
        lines.append("\nEpisodes that ended, failed, when the simulation diverged under the commanded motion: "
                     + "; ".join(f"{task} {count}/{episodes}" for task, (count, episodes) in diverged.items()) + ".")
    latency = report["latency_ms"]
    if latency["p50"] is not None:
        lines.append(f"\nPolicy latency per plan: p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms "
                     f"(re-planning every {report['execute_steps']} steps).")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("eval.json", json.dumps(report, indent=2)), ("eval.md", report_markdown(report))):
        write_text_atomically(out_dir / name, text)


def save_rollout(stem: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """stem.mp4 and stem.gif of (H, W, 3) uint8 frames, each written under a temporary name and moved into place."""
    from PIL import Image

    from .data.video import VideoEncoder

    stem.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with file_written_atomically(stem.with_suffix(".mp4")) as mp4:
        encoder = VideoEncoder(mp4, fps, height - height % 2, width - width % 2)
        for frame in frames:
            encoder.write(np.ascontiguousarray(frame[: height - height % 2, : width - width % 2]))
        encoder.close()
    images = [Image.fromarray(f) for f in frames[::2]]
    with file_written_atomically(stem.with_suffix(".gif")) as gif:
        images[0].save(gif, save_all=True, append_images=images[1:], duration=2000 // fps, loop=0)


@torch.no_grad()
def open_loop(policy: GigaWorldPolicy, batch: dict, num_steps: int | None = None,
              generator: torch.Generator | None = None,
              temperature: float = 1.0) -> tuple[dict[str, float], Tensor | None]:
    """Metrics on one batch of held-out samples, in normalised units:
    action_mse (and action_mse_dim<i>) over valid steps and dims, video_mse over valid future frames (pixels in
    [-1, 1], video decoded given the true actions), and video_mse_static, the error of predicting that nothing moves
    (the current frame repeated): the bar a useful video prediction has to clear. video_mse_other_actions decodes the
    same noise given the previous sample's action chunk (B > 1): equal to video_mse, the video ignores the actions. A
    policy trained without the video loss (video_loss_weight 0) predicts no video: the video metrics but
    video_mse_static are left out. temperature: of the action sampling (see `sample_actions`); the video is decoded
    from the true actions at every temperature. Returns the metrics and the predicted frames (B, F, 3, H, W), or
    None."""
    metrics: dict[str, float] = {}
    predicted = None
    if batch.get("actions") is not None:
        actions = policy.sample_actions(batch, num_steps, generator=generator, temperature=temperature)
        target = batch["actions"][..., : actions.shape[-1]].to(actions)
        valid = (~batch["action_is_pad"]).to(actions.device)[:, :, None].expand_as(actions).float()
        dims = torch.tensor([policy.config.embodiments[int(e)].action_dim for e in batch["embodiment"]])
        valid = valid * (torch.arange(actions.shape[-1]) < dims[:, None])[:, None, :].to(valid)
        error = (actions - target) ** 2 * valid
        per_dim = error.sum(dim=(0, 1)) / valid.sum(dim=(0, 1)).clamp(min=1)
        metrics["action_mse"] = float(error.sum() / valid.sum().clamp(min=1))
        metrics.update({f"action_mse_dim{i}": float(v) for i, v in enumerate(per_dim)})
        if batch.get("future_images") is not None:
            valid_frames = ~batch["future_is_pad"]

            def frame_mse(frames: Tensor) -> float:  # (B, F, 3, H, W) against the true futures, valid frames only
                error = ((frames - batch["future_images"]) ** 2).mean(dim=(2, 3, 4))
                return float((error * valid_frames).sum() / valid_frames.sum().clamp(min=1))

            if policy.config.video_loss_weight > 0:
                # the draw sample_video would make, shared by both decodes
                noise = torch.randn((len(actions), *policy.config.future_latent_shape), generator=generator)
                predicted = policy.sample_video(batch, batch["actions"], num_steps, noise=noise).cpu()
                metrics["video_mse"] = frame_mse(predicted)
                if len(actions) > 1:
                    own_dims = (torch.arange(batch["actions"].shape[-1]) < dims[:, None])[:, None, :]
                    other = policy.sample_video(batch, batch["actions"].roll(1, 0) * own_dims, num_steps, noise=noise)
                    metrics["video_mse_other_actions"] = frame_mse(other.cpu())
            if batch.get("image") is not None:
                metrics["video_mse_static"] = frame_mse(batch["image"][:, None].expand_as(batch["future_images"]))
    return metrics, predicted


def dataset_embodiment(policy: GigaWorldPolicy, dataset, embodiment: str | None = None) -> str:
    """The embodiment that scores `dataset` (a `LeRobotDataset`): `embodiment` if given, else the one named by the
    dataset's robot_type (as training names them for data of several robots), else the policy's only one."""
    trained = list(policy.processors)
    if not trained:
        raise ValueError("the checkpoint has no processor: it was not trained on a dataset")
    robot = dataset.info.get("robot_type")
    name = embodiment or (robot if robot in policy.processors else None) or (trained[0] if len(trained) == 1 else None)
    if name is None:
        raise ValueError(f"{dataset.root} is robot {robot!r}; the policy acts as {trained}: name the embodiment to "
                         f"score it as")
    if name not in policy.processors:
        raise ValueError(f"the checkpoint has no processor for embodiment {name!r} (it has {trained})")
    return name


def open_loop_dataset(policy: GigaWorldPolicy, dataset_root: str | Path, last_episodes: int = 5,
                      max_samples: int = 64, batch_size: int = 8, out_dir: str | Path | None = None,
                      seed: int = 0, temperature: float = 1.0, num_steps: int | None = None,
                      embodiment: str | None = None) -> dict[str, float]:
    """Open-loop metrics (see `open_loop`, also for `temperature` and `num_steps`) averaged over up to `max_samples`
    frames, evenly spread over the last `last_episodes` episodes of a dataset, preprocessed exactly as the checkpoint
    was trained, as the embodiment of `dataset_embodiment`."""
    from .data import DataConfig, LeRobotDataset, PolicyDataset

    dataset = LeRobotDataset(dataset_root)
    embodiment = dataset_embodiment(policy, dataset, embodiment)
    samples = PolicyDataset(dataset, policy.config, DataConfig(embodiment=policy.config.embodiment_index(embodiment)),
                            processor=policy.processors[embodiment])
    first = dataset.episodes[-min(last_episodes, len(dataset.episodes))].start
    indices = np.linspace(first, len(samples) - 1, min(max_samples, len(samples) - first)).round().astype(int)
    totals: dict[str, float] = {}
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        batch = torch.utils.data.default_collate([samples[int(i)] for i in chunk])
        metrics, predicted = open_loop(policy, batch, num_steps, generator=generator, temperature=temperature)
        if start == 0 and predicted is not None and out_dir is not None:
            save_future_comparison(Path(out_dir) / "open_loop_future.png", batch["future_images"], predicted)
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value * len(chunk)
    result = {key: value / len(indices) for key, value in totals.items()} | {"samples": int(len(indices))}
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_text_atomically(Path(out_dir) / "open_loop.json", json.dumps(result, indent=2))
    return result


def save_future_comparison(path: str | Path, true_frames: Tensor, predicted: Tensor, max_rows: int = 4) -> None:
    """PNG grid: one row per sample, the true future frames then the predicted ones. Frames (B, F, 3, H, W)."""
    from PIL import Image

    rows = []
    for true, pred in zip(true_frames[:max_rows], predicted[:max_rows], strict=True):
        frames = torch.cat([true, pred])  # (2F, 3, H, W)
        rows.append(torch.cat(list(frames), dim=2))  # (3, H, 2F*W)
    grid = torch.cat(rows, dim=1)
    pixels = to_uint8(grid)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_written_atomically(path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp)
