"""The LeRobot half of benchmarks/lerobot_interop.py; runs in .venv-lerobot (benchmarks/lerobot_env.sh) and imports
only LeRobot, numpy, torch and the standard library.

    read ROOT --values OUT.npz [--episodes 1 2] [--package lerobot|ledataset]   LeRobotDataset(root, episodes)
    write ROOT --frames IN.npz --spec SPEC.json                                  LeRobotDataset.create + add_frame
    delete-episodes SRC DST --episodes 0                                         dataset_tools.delete_episodes
    convert-v21 ROOT                                                             v2.1 -> v3.0, in place
    serve                                                                        the above, one JSON list a line

A command prints its result as one JSON object. `serve` reads commands (JSON lists of arguments) from stdin and
answers each with one line, {"result": ...} or {"error": "..."}: one process, so LeRobot is imported once (~5 s).
"""

import argparse
import contextlib
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

# No hub at run time: every dataset here is a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# torchvision 0.28 (the release for torch 2.13) is built against CUDA torch on PyPI, so its C ops do not load beside
# a CPU torch, and its import then fails registering fake kernels for two ops that no longer exist. LeRobot imports
# torchvision only for image transforms (pure Python); declaring the two schemas lets the import through.
_TORCHVISION_OPS = torch.library.Library("torchvision", "DEF")
for _schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"):
    _TORCHVISION_OPS.define(_schema)

REPO_ID = "local/interop"  # LeRobot wants a repo id even for a local root; nothing is fetched with it


def lerobot(package: str, module: str):
    """lerobot.datasets.<module> of `package`: "lerobot" or "ledataset" (the standalone lerobot-dataset)."""
    return importlib.import_module(f"{package}.datasets.{module}")


def video_decoding_problem() -> str | None:
    """None where LeRobot can decode videos here, else why not: it needs torchcodec, which loads FFmpeg's shared
    libraries from the system (its other backend, torchvision's VideoReader, is gone from torchvision 0.28)."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as error:  # ImportError, or RuntimeError where FFmpeg's libraries are missing
        return f"torchcodec: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def read(args) -> dict:
    """What LeRobotDataset sees: metadata and the selected frames' tasks; to --values the parquet side's numeric
    columns and every selected frame of every camera as LeRobot decodes it ("camera/<key>", (N, H, W, 3) uint8),
    unless videos cannot be decoded here ("not_decoded" says why)."""
    problem = video_decoding_problem()
    dataset = lerobot(args.package, "lerobot_dataset").LeRobotDataset(
        REPO_ID, root=args.root, episodes=args.episodes, video_backend=None if problem else "torchcodec")
    # Arrow, not datasets' numpy format: that one imports torchvision.io.VideoReader too.
    table = dataset.hf_dataset.with_format("arrow")[:]
    numeric = [k for k, f in dataset.features.items() if f["dtype"] not in ("video", "image")]
    arrays = {key: np.array(table[key].to_pylist()) for key in numeric}
    not_decoded = problem if dataset.meta.video_keys else None
    if not not_decoded:  # an item holds every camera, so no camera is decoded where videos cannot be
        items = [dataset[i] for i in range(len(dataset))]
        for key in dataset.meta.camera_keys:  # LeRobot gives float (3, H, W) in [0, 1]
            frames = torch.stack([item[key] for item in items]).permute(0, 2, 3, 1)
            arrays[f"camera/{key}"] = (frames * 255).round().to(torch.uint8).numpy()
    np.savez(args.values, **arrays)
    return {
        "fps": dataset.fps, "total_episodes": dataset.meta.total_episodes, "num_episodes": dataset.num_episodes,
        "num_frames": dataset.num_frames,
        "features": {k: [f["dtype"], list(f["shape"])] for k, f in dataset.features.items()},
        "tasks": [dataset.meta.tasks.iloc[i].name for i in table["task_index"].to_pylist()],
        "lengths": {str(e["episode_index"]): int(e["length"]) for e in dataset.meta.episodes},
        "not_decoded": not_decoded,
    }


def write(args) -> dict:
    """Writes the frames of --frames (arrays "<episode>/<feature>") as a LeRobot dataset; SPEC.json holds fps,
    features, use_videos, vcodec (None: LeRobot's default) and the task of each episode."""
    spec = json.loads(args.spec.read_text())
    for feature in spec["features"].values():  # add_frame compares shapes as tuples, and JSON has only lists
        feature["shape"] = tuple(feature["shape"])
    options = {"vcodec": spec["vcodec"]} if spec["vcodec"] else {}
    dataset = lerobot("lerobot", "lerobot_dataset").LeRobotDataset.create(
        REPO_ID, fps=spec["fps"], features=spec["features"], root=args.root, use_videos=spec["use_videos"], **options)
    frames = np.load(args.frames)
    for episode, task in enumerate(spec["tasks"]):
        arrays = {key: frames[f"{episode}/{key}"] for key in spec["features"]}
        for t in range(len(next(iter(arrays.values())))):
            dataset.add_frame({**{key: values[t] for key, values in arrays.items()}, "task": task})
        dataset.save_episode(parallel_encoding=False)  # one process: the machine has two cores
    dataset.finalize()
    return {"episodes": dataset.meta.total_episodes, "frames": dataset.meta.total_frames}


def delete_episodes(args) -> dict:
    source = lerobot("lerobot", "lerobot_dataset").LeRobotDataset(REPO_ID, root=args.src)
    result = lerobot("lerobot", "dataset_tools").delete_episodes(source, args.episodes, output_dir=args.dst,
                                                                 repo_id=REPO_ID + "-deleted")
    return {"episodes": result.meta.total_episodes, "frames": result.meta.total_frames}


def convert_v21(args) -> dict:
    """LeRobot's converter works in place on <root>/<repo id>; it keeps the v2.1 original beside it as <name>_old."""
    converter = lerobot("lerobot", "v30.convert_dataset_v21_to_v30")
    converter.convert_dataset(args.root.name, root=args.root.parent, push_to_hub=False)
    return {"root": str(args.root)}


def serve(parser: argparse.ArgumentParser) -> None:
    for line in sys.stdin:
        try:
            args = parser.parse_args(json.loads(line))
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries the answers only
                answer = {"result": args.run(args)}
        except (Exception, SystemExit) as error:  # SystemExit: arguments argparse refused
            traceback.print_exc()
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reader = commands.add_parser("read")
    reader.add_argument("root", type=Path)
    reader.add_argument("--values", type=Path, required=True)
    reader.add_argument("--episodes", type=int, nargs="+")
    reader.add_argument("--package", choices=("lerobot", "ledataset"), default="lerobot")
    reader.set_defaults(run=read)
    writer = commands.add_parser("write")
    writer.add_argument("root", type=Path)
    writer.add_argument("--frames", type=Path, required=True)
    writer.add_argument("--spec", type=Path, required=True)
    writer.set_defaults(run=write)
    deleter = commands.add_parser("delete-episodes")
    deleter.add_argument("src", type=Path)
    deleter.add_argument("dst", type=Path)
    deleter.add_argument("--episodes", type=int, nargs="+", required=True)
    deleter.set_defaults(run=delete_episodes)
    converter = commands.add_parser("convert-v21")
    converter.add_argument("root", type=Path)
    converter.set_defaults(run=convert_v21)
    commands.add_parser("serve")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.command == "serve":
        serve(parser)
    else:
        print(json.dumps(args.run(args)))


if __name__ == "__main__":
    main()
