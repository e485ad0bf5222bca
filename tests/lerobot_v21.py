"""A writer of the LeRobot v2.1 layout (one data file and one video per episode), for tests of the converter.

    records = write_v21_dataset(root, lengths=(12, 10), camera_dtype="video")
    # records[i]: frame i in episode order, {"observation.images.top": (H, W, 3) uint8, "observation.state": (4,),
    #              "action": (4,), "task": str}

It follows the v2.1 files of LeRobot's published datasets: meta/info.json (codebase_version "v2.1", path templates
with {episode_chunk}), meta/episodes.jsonl, meta/tasks.jsonl, meta/episodes_stats.jsonl (no quantiles).
"""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from helpers import smooth_frame
from PIL import Image

from gigaworld_policy.data.stats import feature_stats, image_stats
from gigaworld_policy.data.video import VideoEncoder

DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
CAMERA = "observation.images.top"
TASKS = ("pick the cube", "place the cube")
H, W = 32, 48


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _stats_json(stats: dict) -> dict:
    return {name: np.asarray(v).tolist() for name, v in stats.items() if not name.startswith("q")}


def write_v21_dataset(root, lengths=(12, 10), camera_dtype="video", fps=10, chunks_size=1000) -> list[dict]:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True)
    (root / "meta").mkdir()
    records, episodes, episode_stats, start = [], [], [], 0
    for episode, length in enumerate(lengths):
        task_index = episode % 2
        frames = [{CAMERA: smooth_frame(episode, t, 0), "observation.state": rng.normal(size=4).astype(np.float32),
                   "action": rng.normal(size=4).astype(np.float32), "task": TASKS[task_index]} for t in range(length)]
        records += frames
        columns = {
            "observation.state": pa.array([f["observation.state"].tolist() for f in frames], pa.list_(pa.float32())),
            "action": pa.array([f["action"].tolist() for f in frames], pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(length, dtype=np.float32) / fps),
            "frame_index": pa.array(np.arange(length)),
            "episode_index": pa.array(np.full(length, episode)),
            "index": pa.array(np.arange(start, start + length)),
            "task_index": pa.array(np.full(length, task_index)),
        }
        chunk = episode // chunks_size
        if camera_dtype == "image":
            columns = {CAMERA: pa.array([{"bytes": _png(f[CAMERA]), "path": None} for f in frames],
                                        pa.struct([("bytes", pa.binary()), ("path", pa.string())])), **columns}
        else:
            encoder = VideoEncoder(root / VIDEO_PATH.format(episode_chunk=chunk, video_key=CAMERA,
                                                            episode_index=episode), fps, H, W)
            for f in frames:
                encoder.write(f[CAMERA])
            encoder.close()
        path = root / DATA_PATH.format(episode_chunk=chunk, episode_index=episode)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        episodes.append({"episode_index": episode, "tasks": [TASKS[task_index]], "length": length})
        stats = {key: _stats_json(feature_stats(np.stack([f[key] for f in frames])))
                 for key in ("observation.state", "action")}
        stats[CAMERA] = _stats_json(image_stats(np.stack([f[CAMERA] for f in frames])))
        episode_stats.append({"episode_index": episode, "stats": stats})
        start += length
    _write_meta(root, lengths, camera_dtype, fps, chunks_size, episodes, episode_stats)
    return records


def _write_meta(root, lengths, camera_dtype, fps, chunks_size, episodes, episode_stats) -> None:
    camera = {"dtype": camera_dtype, "shape": [H, W, 3], "names": ["height", "width", "channel"]}
    if camera_dtype == "video":
        camera["info"] = {"video.fps": float(fps), "video.height": H, "video.width": W, "video.channels": 3,
                          "video.codec": "h264", "video.pix_fmt": "yuv420p", "video.is_depth_map": False,
                          "has_audio": False}
    scalar = {"shape": [1], "names": None}
    info = {
        "codebase_version": "v2.1", "robot_type": "test", "total_episodes": len(lengths),
        "total_frames": sum(lengths), "total_tasks": len(TASKS),
        "total_videos": len(lengths) if camera_dtype == "video" else 0,
        "total_chunks": 1, "chunks_size": chunks_size, "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if camera_dtype == "video" else None,
        "features": {
            CAMERA: camera,
            "observation.state": {"dtype": "float32", "shape": [4], "names": None},
            "action": {"dtype": "float32", "shape": [4], "names": None},
            "timestamp": {"dtype": "float32", **scalar}, "frame_index": {"dtype": "int64", **scalar},
            "episode_index": {"dtype": "int64", **scalar}, "index": {"dtype": "int64", **scalar},
            "task_index": {"dtype": "int64", **scalar},
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    lines = {"episodes.jsonl": episodes, "episodes_stats.jsonl": episode_stats,
             "tasks.jsonl": [{"task_index": i, "task": t} for i, t in enumerate(TASKS)]}
    for name, rows in lines.items():
        (root / "meta" / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
