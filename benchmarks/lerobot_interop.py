"""Cross-check of our LeRobot v3.0 reader/writer against LeRobot's own dataset code (0.4.4), both directions.

    bash benchmarks/lerobot_env.sh      # once: .venv-lerobot with lerobot 0.4.4 + lerobot-dataset 0.4.4
    .venv/bin/python benchmarks/lerobot_interop.py --lerobot-python .venv-lerobot/bin/python --out outputs/interop

Cases (each pass / fail with the reason, or "not available"):
  a  ours -> LeRobot: our writer's datasets loaded by LeRobotDataset (of lerobot and of the standalone
     lerobot-dataset), whole and as a subset of episodes; cameras as videos and as images
  b  LeRobot -> ours: LeRobotDataset.create with videos (AV1, its default, and h264) and with images, read by our
     LeRobotDataset and PolicyDataset; values exact, pixels exact (images) or within codec error (videos)
  c  LeRobot's statistics: delete_episodes rewrites our dataset's stats by LeRobot's aggregation (quantiles = the
     length-weighted mean of per-episode quantiles) with a gripper dim constant within each episode; our normaliser
     must stay bounded and a 2-step training's loss finite and < 100
  d  a v2.1 dataset (tests/lerobot_v21.py) converted by LeRobot's converter, read by ours; and converted by
     `gwp convert lerobot-v21`: both conversions agree, and LeRobot reads ours
LeRobot decodes videos with torchcodec only (torchvision 0.28 has no VideoReader), which needs FFmpeg's shared
libraries; where they are missing, its side checks metadata and values, and the table says frames were not decoded.
Writes summary.json to --out and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import itertools
import json
import math
import os
import platform
import select
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

# No hub at run time, on either side.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gigaworld_policy import EmbodimentSpec, PolicyConfig  # noqa: E402
from gigaworld_policy.data import LeRobotDataset, LeRobotDatasetWriter, PolicyDataset  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the v2.1 writer shared with the tests
from lerobot_v21 import write_v21_dataset  # noqa: E402

SIDE = HERE / "lerobot_side.py"
FPS = 10
SIZE = 32  # camera height and width
CAMERAS = ("observation.images.top", "observation.images.wrist")
STATE, ACTION = "observation.state", "action"
TASKS = ("open the drawer", "close the drawer")
# dB over all frames; LeRobot encodes at crf 30 with yuv420p, which on 32x32 frames gives ~32 dB (AV1) and ~29 dB
# (h264). Frame alignment is checked apart (check_aligned), so this only catches broken decoding.
MIN_VIDEO_PSNR = 25.0
SIDE_TIMEOUT_S = 600


class CheckFailed(Exception):
    pass


class NotAvailable(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Result:
    case: str
    status: str  # "pass", "fail" or "not available"
    detail: str
    seconds: float
    counts: dict = field(default_factory=dict)


# ---- data ----
def smooth_frames(episode: int, length: int, camera: int) -> np.ndarray:
    """(T, SIZE, SIZE, 3) uint8 smooth moving images (video codecs keep them well, so PSNR means something)."""
    t, y, x = np.mgrid[0:length, 0:SIZE, 0:SIZE]
    base = 128 + 60 * np.sin(x / 5 + t / 3 + camera) + 40 * np.cos(y / 4 + episode)
    return np.stack([base, 0.8 * base + 20, 255 - base], axis=-1).clip(0, 255).astype(np.uint8)


def make_episodes(lengths: tuple[int, ...], seed: int = 0) -> list[dict]:
    """Episodes of two cameras, a 4-dim state and a 4-dim action whose last dim (a gripper) is +1 or -1 for a whole
    episode: constant within each episode, different between them."""
    rng = np.random.default_rng(seed)
    episodes = []
    for index, length in enumerate(lengths):
        action = rng.normal(size=(length, 4)).astype(np.float32)
        action[:, 3] = 1.0 if index % 2 == 0 else -1.0
        episode = {camera: smooth_frames(index, length, i) for i, camera in enumerate(CAMERAS)}
        episode.update({STATE: rng.normal(size=(length, 4)).astype(np.float32), ACTION: action,
                        "task": TASKS[index % 2]})
        episodes.append(episode)
    return episodes


def features_of(camera_dtype: str) -> dict[str, dict]:
    features = {camera: {"dtype": camera_dtype, "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]}
                for camera in CAMERAS}
    features.update({key: {"dtype": "float32", "shape": [4], "names": None} for key in (STATE, ACTION)})
    return features


def write_ours(root: Path, episodes: list[dict], camera_dtype: str = "video") -> Path:
    with LeRobotDatasetWriter.create(root, fps=FPS, features=features_of(camera_dtype)) as writer:
        for episode in episodes:
            for t in range(len(episode[STATE])):
                writer.add_frame({key: value if key == "task" else value[t] for key, value in episode.items()})
            writer.save_episode()
        return writer.finalize()


def tiny_config() -> PolicyConfig:
    config = PolicyConfig.preset("tiny")
    return config.replace(embodiments=(EmbodimentSpec("robot", 4, 4),), max_state_dim=4, max_action_dim=4,
                          chunk_size=8, num_future_frames=2, future_stride=4)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


# ---- the LeRobot side ----
class LeRobotSide:
    """benchmarks/lerobot_side.py serving in LeRobot's venv: one process for all cases, as importing LeRobot takes
    ~5 s. Its HF caches stay in the work folder, its log (LeRobot's output, tracebacks) in lerobot-side.log."""

    def __init__(self, python: Path, work: Path):
        self.python, self.work = python, work
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "HF_HOME": str(self.work / "hf-home"), "TQDM_DISABLE": "1",
               "HF_LEROBOT_HOME": str(self.work / "hf-lerobot")}
        with (self.work / "lerobot-side.log").open("a") as log:
            return subprocess.Popen([str(self.python), str(SIDE), "serve"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def __call__(self, *args: str | Path) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        self.process.stdin.write(json.dumps([str(a) for a in args]) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], SIDE_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise CheckFailed(f"LeRobot: no answer to {args[0]} (see {self.work / 'lerobot-side.log'})")
        answer = json.loads(line)
        if "error" in answer:
            raise CheckFailed(f"LeRobot: {answer['error']}")
        return answer["result"]

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


# ---- checks shared by the cases ----
def expected_columns(episodes: list[dict], selected: list[int]) -> dict[str, np.ndarray]:
    """The data columns of `selected` episodes as they must read back, in frame order."""
    lengths = [len(e[STATE]) for e in episodes]
    starts = np.cumsum([0, *lengths])
    columns = {key: [] for key in (STATE, ACTION, "episode_index", "frame_index", "index", "timestamp")}
    for i in selected:
        columns[STATE].append(episodes[i][STATE])
        columns[ACTION].append(episodes[i][ACTION])
        columns["episode_index"].append(np.full(lengths[i], i))
        columns["frame_index"].append(np.arange(lengths[i]))
        columns["index"].append(np.arange(starts[i], starts[i + 1]))
        columns["timestamp"].append(np.arange(lengths[i], dtype=np.float32) / FPS)
    return {key: np.concatenate(parts) for key, parts in columns.items()}


def check_columns(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], who: str) -> None:
    for key, want in expected.items():
        check(key in got, f"{who}: no column {key!r}")
        value = np.asarray(got[key]).reshape(want.shape)
        check(np.array_equal(value, want), f"{who}: {key!r} differs (max |diff| "
              f"{np.abs(value.astype(np.float64) - want).max():.3g})")


def check_aligned(decoded: np.ndarray, written: np.ndarray, who: str) -> None:
    """Each decoded frame is closest to the written frame of its own index: a codec blurs, a wrong timestamp
    picks a neighbour."""
    errors = np.abs(decoded[:, None].astype(np.float32) - written[None].astype(np.float32)).mean(axis=(2, 3, 4))
    nearest = errors.argmin(axis=1)
    wrong = np.flatnonzero(nearest != np.arange(len(decoded)))
    check(not len(wrong), f"{who}: decoded frame {wrong[:1].tolist()} is closest to written frame "
          f"{nearest[wrong[:1]].tolist()}")


def check_frames(dataset: LeRobotDataset, episodes: list[dict], lossless: bool, who: str) -> float:
    """Every frame of every camera against the written ones: exact (lossless) or aligned and within codec error.
    Returns the lowest PSNR over episodes and cameras."""
    lowest = math.inf
    for episode, written in zip(dataset.episodes, episodes, strict=True):
        for camera in (k for k in written if k.startswith("observation.images.")):
            frames = dataset.frames(camera, episode.index, np.arange(episode.length))
            where = f"{who}: {camera}, episode {episode.index}"
            check(frames.shape == written[camera].shape, f"{where}: frames {frames.shape}")
            check(not lossless or np.array_equal(frames, written[camera]), f"{where}: pixels differ (max |diff| "
                  f"{np.abs(frames.astype(int) - written[camera]).max()})")
            check_aligned(frames, written[camera], where)
            lowest = min(lowest, psnr(frames, written[camera]))
    check(lowest >= MIN_VIDEO_PSNR, f"{who}: decoded frames PSNR {lowest:.1f} dB < {MIN_VIDEO_PSNR} dB")
    return lowest


def check_ours(dataset: LeRobotDataset, episodes: list[dict], lossless: bool, who: str = "ours") -> float:
    """Our reader against the episodes written: counts, tasks, values exact, frames (see check_frames)."""
    check([e.length for e in dataset.episodes] == [len(e[STATE]) for e in episodes],
          f"{who}: episode lengths {[e.length for e in dataset.episodes]}")
    check(dataset.fps == FPS, f"{who}: fps {dataset.fps}, wrote {FPS}")
    cameras = sorted(k for k in episodes[0] if k.startswith("observation.images."))
    check(sorted(dataset.camera_keys) == cameras, f"{who}: cameras {dataset.camera_keys}")
    expected = expected_columns(episodes, list(range(len(episodes))))
    check_columns(dataset.columns, {k: expected[k] for k in (STATE, ACTION, "episode_index", "index")}, who)
    tasks = [dataset.task_of(i) for i in range(dataset.num_frames)]
    check(tasks == [e["task"] for e in episodes for _ in e[STATE]], f"{who}: tasks differ")
    return check_frames(dataset, episodes, lossless, who)


def check_policy_dataset(dataset: LeRobotDataset) -> float:
    """PolicyDataset samples (images included at three frames) are finite; returns max |normalised action|."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate quantile range is warned about; bounded values are checked
        samples = PolicyDataset(dataset, tiny_config())
    for index in (0, len(samples) // 2, len(samples) - 1):
        sample = samples[index]
        check(sample["image"].shape == (3, *tiny_config().image_size), f"ours: image {tuple(sample['image'].shape)}")
        check(all(torch.isfinite(sample[k]).all() for k in ("image", "future_images", "state", "actions")),
              f"ours: sample {index} is not finite")
    actions = torch.stack([samples.sample(i, images=False)["actions"] for i in range(len(samples))])
    largest = float(actions.abs().max())
    check(largest < 10, f"ours: normalised actions reach {largest:.3g} (unbounded normaliser)")
    return largest


def check_lerobot_read(side: LeRobotSide, root: Path, episodes: list[dict], package: str = "lerobot",
                       subset: list[int] | None = None) -> str:
    """LeRobot's LeRobotDataset on `root`: metadata, the parquet side's values and every frame as LeRobot decodes
    it. Returns what became of the frames."""
    values = root.with_name(f"read-{root.name}-{package}-{'-'.join(map(str, subset or ['all']))}.npz")
    seen = side("read", root, "--package", package, "--values", values, *(["--episodes", *subset] if subset else []))
    selected = subset or list(range(len(episodes)))
    info = json.loads((root / "meta" / "info.json").read_text())
    check(seen["fps"] == FPS, f"LeRobot: fps {seen['fps']}")
    check(seen["total_episodes"] == len(episodes), f"LeRobot: total_episodes {seen['total_episodes']}")
    check(seen["num_frames"] == sum(len(episodes[i][STATE]) for i in selected),
          f"LeRobot: {seen['num_frames']} frames selected")
    check(seen["features"] == {k: [f["dtype"], f["shape"]] for k, f in info["features"].items()},
          f"LeRobot: features {seen['features']}")
    check(list(seen["lengths"].values()) == [len(e[STATE]) for e in episodes], "LeRobot: episode lengths differ")
    check(seen["tasks"] == [episodes[i]["task"] for i in selected for _ in episodes[i][STATE]], "LeRobot: tasks")
    arrays = dict(np.load(values))
    expected = expected_columns(episodes, selected)
    check_columns(arrays, {k: expected[k] for k in (STATE, ACTION, "episode_index", "index")}, "LeRobot")
    if seen["not_decoded"]:
        return f"frames not decoded by LeRobot ({seen['not_decoded']})"
    return check_lerobot_frames(arrays, [episodes[i] for i in selected], info["features"])


def check_lerobot_frames(arrays: dict[str, np.ndarray], episodes: list[dict], features: dict) -> str:
    """The frames LeRobot decoded ("camera/<key>", in frame order) against the written ones."""
    lowest = math.inf
    for key in (k for k in episodes[0] if k.startswith("observation.images.")):
        decoded = arrays[f"camera/{key}"]
        starts = np.cumsum([0, *(len(e[key]) for e in episodes)])
        for episode, (a, b) in zip(episodes, itertools.pairwise(starts), strict=True):
            if features[key]["dtype"] == "image":
                check(np.array_equal(decoded[a:b], episode[key]), f"LeRobot: {key} pixels differ")
            check_aligned(decoded[a:b], episode[key], f"LeRobot: {key}")
            lowest = min(lowest, psnr(decoded[a:b], episode[key]))
    check(lowest >= MIN_VIDEO_PSNR, f"LeRobot: decoded frames PSNR {lowest:.1f} dB < {MIN_VIDEO_PSNR} dB")
    return "LeRobot decodes every frame " + ("exactly" if math.isinf(lowest) else f"aligned, PSNR >= {lowest:.1f} dB")


# ---- cases ----
@functools.cache
def ours_dataset(work: Path, camera_dtype: str) -> tuple[Path, list[dict]]:
    """Our writer's dataset of 3 episodes, shared by the cases that read it."""
    episodes = make_episodes((12, 9, 15))
    return write_ours(work / f"ours-{camera_dtype}", episodes, camera_dtype), episodes


def case_ours_to_lerobot(side: LeRobotSide, work: Path, package: str, subset: list[int] | None,
                         camera_dtype: str) -> tuple[str, dict]:
    root, episodes = ours_dataset(work, camera_dtype)
    frames = check_lerobot_read(side, root, episodes, package, subset)
    selected = subset or list(range(len(episodes)))
    count = sum(len(episodes[i][STATE]) for i in selected)
    return (f"{len(selected)} of {len(episodes)} episodes, {count} frames; metadata and values exact; {frames}",
            {"episodes": len(selected), "frames": count})


def case_lerobot_to_ours(side: LeRobotSide, work: Path, camera_dtype: str, vcodec: str | None) -> tuple[str, dict]:
    episodes = make_episodes((12, 9, 15), seed=1)
    root = work / f"lerobot-{camera_dtype}-{vcodec or 'default'}"
    frames, spec = root.with_name(root.name + "-frames.npz"), root.with_name(root.name + "-spec.json")
    np.savez(frames, **{f"{i}/{key}": value for i, e in enumerate(episodes) for key, value in e.items()
                        if key != "task"})
    spec.write_text(json.dumps({"fps": FPS, "features": features_of(camera_dtype), "vcodec": vcodec,
                                "use_videos": camera_dtype == "video", "tasks": [e["task"] for e in episodes]}))
    side("write", root, "--frames", frames, "--spec", spec)
    dataset = LeRobotDataset(root)
    lowest = check_ours(dataset, episodes, lossless=camera_dtype == "image")
    largest = check_policy_dataset(dataset)
    codec = dataset.features[CAMERAS[0]].get("info", {}).get("video.codec", "none (PNG)")
    quality = "pixels exact" if math.isinf(lowest) else f"frames aligned, PSNR >= {lowest:.1f} dB"
    return (f"codec {codec}; {len(episodes)} episodes, {dataset.num_frames} frames; values exact, {quality}; "
            f"PolicyDataset |action| <= {largest:.2f}",
            {"episodes": len(episodes), "frames": dataset.num_frames, "min_psnr_db": round(lowest, 2)})


def train_two_steps(root: Path, out: Path) -> list[float]:
    """Losses of 2 training steps of the tiny preset on `root`."""
    from gigaworld_policy.train import OptimConfig, TrainConfig, train

    out.mkdir()
    config = TrainConfig(dataset=(str(root),), preset="tiny", steps=2, output_dir=str(out), batch_size=4,
                         num_workers=0, save_every=2, log_every=1, log_with="none", ema_decay=0,
                         optim=OptimConfig(lr=1e-3, warmup_steps=1))
    with (warnings.catch_warnings(), (out / "train.log").open("w") as log, contextlib.redirect_stdout(log),
          contextlib.redirect_stderr(log)):  # its config dump and progress bar would break the table
        warnings.simplefilter("ignore")
        train(config)
    return [json.loads(line)["train/loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def case_lerobot_stats(side: LeRobotSide, work: Path) -> tuple[str, dict]:
    episodes = make_episodes((12, 10, 14, 11), seed=2)
    source = write_ours(work / "stats-ours", episodes)
    root = work / "stats-lerobot"
    side("delete-episodes", source, root, "--episodes", "0")
    kept = episodes[1:]
    stats = json.loads((root / "meta" / "stats.json").read_text())[ACTION]
    gripper = (f"LeRobot's gripper q01..q99 {stats['q01'][3]:+.2f}..{stats['q99'][3]:+.2f}, min..max "
               f"{stats['min'][3]:+.0f}..{stats['max'][3]:+.0f}")
    dataset = LeRobotDataset(root)
    check_ours(dataset, kept, lossless=False)
    largest = check_policy_dataset(dataset)
    losses = train_two_steps(root, work / "stats-train")
    check(all(math.isfinite(x) and x < 100 for x in losses), f"ours: training losses {losses}")
    return (f"{gripper}; |action| <= {largest:.2f}; 2 training steps, loss {', '.join(f'{x:.3f}' for x in losses)}",
            {"episodes": len(kept), "frames": dataset.num_frames, "losses": losses})


@functools.cache
def lerobot_v21_conversion(side: LeRobotSide, work: Path, camera_dtype: str) -> tuple[Path, Path, list[dict]]:
    """A v2.1 dataset (tests/lerobot_v21.py) and LeRobot's conversion of it (in place, on a copy), with its
    episodes as arrays; shared by the two v2.1 cases of a camera dtype."""
    lengths = (12, 10, 9)
    source = work / f"v21-{camera_dtype}"
    records = write_v21_dataset(source, lengths=lengths, camera_dtype=camera_dtype)
    converted = work / f"v21-{camera_dtype}-lerobot" / "dataset"
    shutil.copytree(source, converted)
    side("convert-v21", converted)
    starts = np.cumsum([0, *lengths])
    episodes = [{key: (records[a]["task"] if key == "task" else np.stack([r[key] for r in records[a:b]]))
                 for key in records[0]} for a, b in itertools.pairwise(starts)]
    return source, converted, episodes


def case_v21_lerobot_to_ours(side: LeRobotSide, work: Path, camera_dtype: str) -> tuple[str, dict]:
    _, converted, episodes = lerobot_v21_conversion(side, work, camera_dtype)
    dataset = LeRobotDataset(converted)
    lowest = check_ours(dataset, episodes, lossless=camera_dtype == "image")
    largest = check_policy_dataset(dataset)
    lacking = sorted({"q01", "q99"} - set(dataset.stats[ACTION]))
    quality = "pixels exact" if math.isinf(lowest) else f"frames aligned, PSNR >= {lowest:.1f} dB"
    return (f"{len(episodes)} episodes, {dataset.num_frames} frames; values exact, {quality}; LeRobot's stats lack "
            f"{lacking}; PolicyDataset |action| <= {largest:.2f}",
            {"episodes": len(episodes), "frames": dataset.num_frames})


def convert_with_gwp(source: Path, destination: Path) -> None:
    gwp = Path(sys.executable).parent / "gwp"
    done = subprocess.run([str(gwp), "convert", "lerobot-v21", str(source), str(destination)], capture_output=True,
                          text=True)
    error = (done.stderr.strip().splitlines() or ["?"])[-1]
    if done.returncode != 0 and "invalid choice: 'lerobot-v21'" in error:
        raise NotAvailable("`gwp convert lerobot-v21` does not exist yet")
    check(done.returncode == 0, f"gwp convert lerobot-v21: {error}")


def case_v21_compare(side: LeRobotSide, work: Path, camera_dtype: str) -> tuple[str, dict]:
    source, converted, episodes = lerobot_v21_conversion(side, work, camera_dtype)
    ours_root = work / f"v21-{camera_dtype}-gwp"
    convert_with_gwp(source, ours_root)
    theirs, ours = LeRobotDataset(converted), LeRobotDataset(ours_root)
    check_ours(ours, episodes, lossless=camera_dtype == "image", who="gwp's conversion")
    camera = theirs.camera_keys[0]
    for a, b in zip(theirs.episodes, ours.episodes, strict=True):
        check(np.array_equal(theirs.frames(camera, a.index, np.arange(a.length)),
                             ours.frames(camera, b.index, np.arange(b.length))),
              f"episode {a.index}: the two conversions decode to different frames")
    check({k: (f["dtype"], f["shape"]) for k, f in theirs.features.items()}
          == {k: (f["dtype"], f["shape"]) for k, f in ours.features.items()}, "the two conversions' features differ")
    for key, name in itertools.product((STATE, ACTION), ("min", "max", "mean", "std")):
        check(np.allclose(theirs.stats[key][name], ours.stats[key][name], rtol=1e-5, atol=1e-6),
              f"stats {key}/{name}: LeRobot's {theirs.stats[key][name]}, gwp's {ours.stats[key][name]}")
    frames = check_lerobot_read(side, ours_root, episodes)
    return (f"{len(episodes)} episodes; same frames, values, features and min/max/mean/std as LeRobot's conversion; "
            f"LeRobot reads gwp's: values exact, {frames}", {"episodes": len(episodes), "frames": ours.num_frames})


# ---- running ----
def run_case(name: str, function, *args) -> Result:
    start = time.perf_counter()
    try:
        detail, counts = function(*args)
        status = "pass"
    except NotAvailable as error:
        status, detail, counts = "not available", str(error), {}
    except Exception as error:  # any failure of either side is this case's result, not the end of the run
        status, detail, counts = "fail", f"{type(error).__name__}: {error}", {}
    return Result(name, status, detail, round(time.perf_counter() - start, 2), counts)


def cases(side: LeRobotSide, work: Path) -> list[tuple]:
    """(name, function, *arguments) of every case, in the order they run."""
    return [
        ("a. ours -> LeRobot (lerobot), all episodes", case_ours_to_lerobot, side, work, "lerobot", None, "video"),
        ("a. ours -> LeRobot (lerobot), episodes=[1]", case_ours_to_lerobot, side, work, "lerobot", [1], "video"),
        ("a. ours -> LeRobot (lerobot-dataset), all episodes", case_ours_to_lerobot, side, work, "ledataset", None,
         "video"),
        ("a. ours -> LeRobot (lerobot-dataset), episodes=[1]", case_ours_to_lerobot, side, work, "ledataset", [1],
         "video"),
        ("a. ours (images) -> LeRobot, episodes=[1, 2]", case_ours_to_lerobot, side, work, "lerobot", [1, 2],
         "image"),
        ("b. LeRobot (video, default codec) -> ours", case_lerobot_to_ours, side, work, "video", None),
        ("b. LeRobot (video, h264) -> ours", case_lerobot_to_ours, side, work, "video", "h264"),
        ("b. LeRobot (images) -> ours", case_lerobot_to_ours, side, work, "image", None),
        ("c. LeRobot's delete_episodes stats -> ours, 2 training steps", case_lerobot_stats, side, work),
        ("d. v2.1 (video) -> LeRobot's converter -> ours", case_v21_lerobot_to_ours, side, work, "video"),
        ("d. v2.1 (video) -> gwp convert, vs LeRobot's", case_v21_compare, side, work, "video"),
        ("d. v2.1 (images) -> LeRobot's converter -> ours", case_v21_lerobot_to_ours, side, work, "image"),
        ("d. v2.1 (images) -> gwp convert, vs LeRobot's", case_v21_compare, side, work, "image"),
    ]


def versions(python: Path) -> dict:
    script = ("import importlib.metadata as m, json, platform; print(json.dumps({p: m.version(p) for p in "
              "('lerobot', 'lerobot-dataset', 'torch', 'torchvision', 'torchcodec', 'datasets', 'av', 'pyarrow')} | "
              "{'python': platform.python_version()}))")
    theirs = json.loads(subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                                       check=True).stdout)
    ours = {p: importlib.metadata.version(p) for p in ("gigaworld-policy", "torch", "av", "pyarrow")}
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"lerobot_venv": theirs, "ours": {**ours, "python": platform.python_version(), "commit": commit}}


def run(lerobot_python: Path, out: Path, only: str | None = None) -> dict:
    """Runs the cases (those whose name contains `only`) in a fresh out/work; writes and returns the summary."""
    work = (out / "work").absolute()
    shutil.rmtree(work, ignore_errors=True)
    ours_dataset.cache_clear()  # their folders were just removed
    lerobot_v21_conversion.cache_clear()
    work.mkdir(parents=True)
    side = LeRobotSide(lerobot_python.absolute(), work)
    start = time.perf_counter()
    try:
        results = [run_case(name, *rest) for name, *rest in cases(side, work) if not only or only in name]
    finally:
        side.close()
    summary = {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - start, 1),
               "versions": versions(lerobot_python),
               "counts": {s: sum(r.status == s for r in results) for s in ("pass", "fail", "not available")},
               "cases": [asdict(r) for r in results]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_table(summary: dict) -> None:
    print("| case | result | s | detail |\n|---|---|---|---|")
    for r in summary["cases"]:
        print(f"| {r['case']} | {r['status']} | {r['seconds']:.1f} | {r['detail']} |")
    counts = summary["counts"]
    print(f"\n{counts['pass']} passed, {counts['fail']} failed, {counts['not available']} not available "
          f"in {summary['seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lerobot-python", type=Path, default=Path(".venv-lerobot/bin/python"),
                        help="python of LeRobot's venv (bash benchmarks/lerobot_env.sh makes it)")
    parser.add_argument("--out", type=Path, default=Path("outputs/interop"))
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    if not args.lerobot_python.exists():
        sys.exit(f"{args.lerobot_python} does not exist: run `bash benchmarks/lerobot_env.sh` first")
    torch.set_num_threads(1)
    summary = run(args.lerobot_python, args.out, args.only)
    print_table(summary)
    print(f"summary in {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
