"""The LeRobot v3.0 dataset format, read and written with pyarrow + PyAV (no LeRobot dependency).

    meta/info.json                                   version, fps, features, path templates, totals
    meta/stats.json                                  per-feature mean/std/min/max/count/q01..q99
    meta/tasks.parquet                               task string (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, offsets, per-episode stats
    data/chunk-XXX/file-XXX.parquet                  one row per frame, several episodes per file
    videos/<camera key>/chunk-XXX/file-XXX.mp4       several episodes per file, located by timestamps

A dataset without an `action` feature (video only) is valid.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..atomic import remove_folders_of_dead_writers, writer_temporary_directory
from . import stats as stats_lib
from .lerobot_meta import CAMERA_DTYPES, camera_size, info_path, read_info, read_stats
from .video import PIX_FMT, VideoDecoder, VideoEncoder, probe_video

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
IMAGE_PREFIX = "observation.images."
STATE, ACTION = "observation.state", "action"  # the features a policy reads besides its cameras
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # an encoded image, as LeRobot stores it


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def column_values(column: pa.Array, dtype: str) -> np.ndarray:
    """A numeric column as (N,) or, for list-valued features, (N, D) values of `dtype`."""
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1).astype(dtype)
    return column.to_numpy(zero_copy_only=False).astype(dtype)


def next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)


class LeRobotDatasetWriter:
    """Write a dataset episode by episode.

        writer = LeRobotDatasetWriter.create(root, fps=10, features={...})
        for each step: writer.add_frame({"observation.images.top": hwc_uint8, "observation.state": ...,
                                         "action": ..., "task": "open the drawer"})
        writer.save_episode()   # or writer.discard_episode()
        writer.finalize()

    Everything goes into a hidden folder beside `root`, renamed to `root` by `finalize()`: a crash leaves
    no dataset at `root` rather than a half-written one. As a context manager it discards on error.
    """

    def __init__(self, root: Path, tmp: Path, fps: int, features: dict[str, dict], robot_type: str | None,
                 chunks_size: int, data_files_size_in_mb: float, video_files_size_in_mb: float):
        self.root, self.tmp, self.fps, self.robot_type = root, tmp, fps, robot_type
        self.features = features
        self.chunks_size = chunks_size
        self.data_limit = data_files_size_in_mb * 2**20
        self.video_limit = video_files_size_in_mb * 2**20
        self.video_keys = [k for k, f in features.items() if f["dtype"] == "video"]
        self.image_keys = [k for k, f in features.items() if f["dtype"] == "image"]
        self.camera_keys = self.video_keys + self.image_keys
        self.numeric_keys = [k for k, f in features.items() if f["dtype"] not in CAMERA_DTYPES]
        self.tasks: dict[str, int] = {}
        self.episode_rows: list[dict[str, Any]] = []
        self.values: dict[str, list[np.ndarray]] = {k: [] for k in self.numeric_keys}  # all episodes, for stats
        self.image_samples: dict[str, list[np.ndarray]] = {k: [] for k in self.camera_keys}
        self.total_frames = 0
        self._buffer: list[dict[str, Any]] = []  # the current episode's frames
        self._data_rows: list[pd.DataFrame] = []  # frames of the data file being filled
        self._data_file = (0, 0)
        self._encoders: dict[str, VideoEncoder] = {}
        self._video_file = {k: (0, 0) for k in self.video_keys}

    @classmethod
    def create(cls, root: str | os.PathLike, fps: int, features: dict[str, dict], robot_type: str | None = None,
               chunks_size: int = 1000, data_files_size_in_mb: float = 100,
               video_files_size_in_mb: float = 500) -> LeRobotDatasetWriter:
        """features: {name: {"dtype": "video" | "image" | "float32" | ..., "shape": [...], "names": [...] | None}};
        camera features are (H, W, 3) uint8 frames named `observation.images.<camera>`, stored in mp4 videos
        ("video") or as PNG in the data files ("image", LeRobot's use_videos=False: lossless, larger)."""
        root = Path(root)
        if root.exists():
            raise FileExistsError(f"{root} already exists; choose a new dataset folder")
        for name, spec in features.items():
            if name in INDEX_FEATURES or name == "task":
                raise ValueError(f"feature name {name!r} is reserved by the format")
            if spec["dtype"] in CAMERA_DTYPES and (len(spec["shape"]) != 3 or spec["shape"][2] != 3):
                raise ValueError(f"camera feature {name!r} must have shape (H, W, 3), got {spec['shape']}")
        # A writer killed by a signal (SIGKILL, or SIGTERM without our handler) leaves its hidden folder behind.
        remove_folders_of_dead_writers(root.parent, f".{root.name}.writing-")
        tmp = writer_temporary_directory(root.parent, f".{root.name}.writing-")
        full = {k: {"dtype": v["dtype"], "shape": list(v["shape"]), "names": v.get("names")} for k, v in
                features.items()}
        return cls(root, tmp, fps, full, robot_type, chunks_size, data_files_size_in_mb, video_files_size_in_mb)

    def __enter__(self) -> LeRobotDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    # ---- frames and episodes ------------------------------------------------------------------------
    def add_frame(self, frame: dict[str, Any]) -> None:
        if "task" not in frame:
            raise ValueError("every frame needs a 'task' string")
        missing = [k for k in self.features if k not in frame]
        if missing:
            raise ValueError(f"frame is missing features {missing}")
        checked = {"task": str(frame["task"])}
        for key, spec in self.features.items():
            value = np.asarray(frame[key])
            if spec["dtype"] in CAMERA_DTYPES:
                if value.dtype != np.uint8 or list(value.shape) != spec["shape"]:
                    raise ValueError(f"'{key}' must be uint8 {tuple(spec['shape'])}, got {value.dtype} {value.shape}")
            else:
                value = value.astype(spec["dtype"]).reshape(-1)
                if list(value.shape) != spec["shape"]:
                    raise ValueError(f"'{key}' must have shape {tuple(spec['shape'])}, got {value.shape}")
                if not np.isfinite(value).all():
                    raise ValueError(f"'{key}' contains NaN or infinite values")
            checked[key] = value
        self._buffer.append(checked)

    def discard_episode(self) -> None:
        self._buffer = []

    def save_episode(self) -> int:
        """Write the buffered frames as one episode; returns its episode index."""
        if not self._buffer:
            raise ValueError("no frames to save: add_frame() first")
        frames, self._buffer = self._buffer, []
        episode = len(self.episode_rows)
        length = len(frames)
        tasks = list(dict.fromkeys(f["task"] for f in frames))
        for task in tasks:
            self.tasks.setdefault(task, len(self.tasks))
        row: dict[str, Any] = {"episode_index": episode, "tasks": tasks, "length": length,
                               "dataset_from_index": self.total_frames,
                               "dataset_to_index": self.total_frames + length}

        # Columns in info.json's order (features, then the index columns), as LeRobot writes them: its reader
        # casts a subset of episodes to the schema of info.json and refuses any other order.
        columns: dict[str, Any] = {}
        for key in self.features:
            if key in self.image_keys:
                columns[key] = [{"bytes": _png(f[key]), "path": None} for f in frames]
            elif key in self.numeric_keys:
                values = np.stack([f[key] for f in frames])
                columns[key] = list(values)
                self.values[key].append(values)
                for name, value in stats_lib.feature_stats(values).items():
                    row[f"stats/{key}/{name}"] = value.tolist()
        columns.update({
            "timestamp": np.arange(length, dtype=np.float32) / self.fps,
            "frame_index": np.arange(length, dtype=np.int64),
            "episode_index": np.full(length, episode, dtype=np.int64),
            "index": np.arange(self.total_frames, self.total_frames + length, dtype=np.int64),
            "task_index": np.array([self.tasks[f["task"]] for f in frames], dtype=np.int64),
        })
        self._append_data(row, pd.DataFrame(columns))

        for key in self.camera_keys:
            images = np.stack([f[key] for f in frames])
            if key in self.video_keys:
                row.update(self._append_video(key, images))
            # Image stats from at most 20 frames per episode, 4x subsampled in space (LeRobot samples too).
            sample = images[np.linspace(0, length - 1, min(length, 20)).astype(int)][:, ::4, ::4]
            self.image_samples[key].append(sample)
            for name, value in stats_lib.image_stats(sample).items():
                row[f"stats/{key}/{name}"] = np.asarray(value).tolist()
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        self.episode_rows.append(row)
        self.total_frames += length
        return episode

    def _append_data(self, row: dict[str, Any], frame_table: pd.DataFrame) -> None:
        buffered = sum(t.memory_usage(deep=True).sum() for t in self._data_rows)
        if self._data_rows and buffered > self.data_limit:
            self._flush_data()
            self._data_file = next_file(*self._data_file, self.chunks_size)
        row["data/chunk_index"], row["data/file_index"] = self._data_file
        self._data_rows.append(frame_table)

    def _flush_data(self) -> None:
        if not self._data_rows:
            return
        chunk, file = self._data_file
        path = self.tmp / DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = pd.concat(self._data_rows, ignore_index=True)
        table = pa.Table.from_pandas(frames, preserve_index=False)
        for key in self.image_keys:  # pandas cannot tell an all-None path column is a string
            table = table.set_column(table.schema.get_field_index(key), key,
                                     pa.array(frames[key].tolist(), type=IMAGE_STRUCT))
        pq.write_table(table, path)
        self._data_rows = []

    def _append_video(self, key: str, images: np.ndarray) -> dict[str, Any]:
        encoder = self._encoders.get(key)
        if encoder is not None and encoder.encoded_bytes > self.video_limit:
            encoder.close()
            self._video_file[key] = next_file(*self._video_file[key], self.chunks_size)
            encoder = None
        chunk, file = self._video_file[key]
        if encoder is None:
            path = self.tmp / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            height, width, _ = self.features[key]["shape"]
            encoder = self._encoders[key] = VideoEncoder(path, self.fps, height, width)
        start = encoder.num_frames
        for image in images:
            encoder.write(image)
        return {f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                f"videos/{key}/from_timestamp": start / self.fps,
                f"videos/{key}/to_timestamp": encoder.num_frames / self.fps}

    # ---- finishing ----------------------------------------------------------------------------------
    def finalize(self, extra_meta: dict[str, dict] | None = None) -> Path:
        """Write the metadata and move the dataset to its folder in one rename. Returns the folder.
        extra_meta: {file name: JSON object} written beside info.json, e.g. how a simulator recorded the data."""
        if self._buffer:
            raise ValueError("the last episode is neither saved nor discarded")
        if not self.episode_rows:
            raise ValueError("the dataset has no episodes")
        reserved = sorted({"info.json", "stats.json", "tasks.parquet", "episodes"} & set(extra_meta or {}))
        if reserved:
            raise ValueError(f"extra metadata may not replace the format's own meta/ files {reserved}")
        self._flush_data()
        for encoder in self._encoders.values():
            encoder.close()
        meta = self.tmp / "meta"
        episodes_path = self.tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), episodes_path)
        tasks = pd.DataFrame({"task_index": list(self.tasks.values())}, index=pd.Index(list(self.tasks), name="task"))
        tasks.to_parquet(meta / "tasks.parquet")

        dataset_stats = {k: stats_lib.feature_stats(np.concatenate(v)) for k, v in self.values.items()}
        for key, samples in self.image_samples.items():
            dataset_stats[key] = stats_lib.image_stats(np.concatenate(samples))
        (meta / "stats.json").write_text(json.dumps(stats_lib.to_json(dataset_stats), indent=2))
        (meta / "info.json").write_text(json.dumps(self._info(), indent=2))
        for name, content in (extra_meta or {}).items():
            (meta / name).write_text(json.dumps(content, indent=2))
        os.replace(self.tmp, self.root)
        return self.root

    def _info(self) -> dict[str, Any]:
        features = {}
        for key, spec in self.features.items():
            if spec["dtype"] == "image":
                spec = {**spec, "names": ["height", "width", "channels"]}
            if spec["dtype"] == "video":
                height, width, channels = spec["shape"]
                spec = {**spec, "names": ["height", "width", "channels"], "info": {
                    "video.height": height, "video.width": width, "video.codec": "h264",
                    "video.pix_fmt": PIX_FMT, "video.is_depth_map": False, "video.fps": self.fps,
                    "video.channels": channels, "has_audio": False}}
            features[key] = spec
        features.update(INDEX_FEATURES)
        return {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": len(self.episode_rows), "total_frames": self.total_frames,
            "total_tasks": len(self.tasks), "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_limit / 2**20, "video_files_size_in_mb": self.video_limit / 2**20,
            "fps": self.fps, "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if self.video_keys else None, "features": features,
        }

    def abort(self) -> None:
        for encoder in self._encoders.values():
            try:
                encoder.close()
            except Exception:  # the folder is deleted anyway
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass(frozen=True)
class Episode:
    index: int
    start: int  # global frame index of the first frame
    length: int
    tasks: tuple[str, ...]


class LeRobotDataset:
    """Read a LeRobot v3.0 dataset from a local folder. Numeric features are loaded into memory; camera frames are
    decoded on demand, from the videos or, for cameras stored as images (`dtype: "image"`), from the PNG bytes in
    the data files. The metadata is checked against the files it describes (frame counts, fps and sizes of the
    videos) before anything is read for training."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.info = self.read_info(self.root)
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict] = self.info["features"]
        self.camera_keys = [k for k, f in self.features.items() if f["dtype"] in CAMERA_DTYPES]
        self.video_keys = [k for k in self.camera_keys if self.features[k]["dtype"] == "video"]
        episode_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        self.episodes_table = self._read_parquets(episode_files, "meta/episodes")
        self.episodes = [
            Episode(int(r["episode_index"]), int(r["dataset_from_index"]), int(r["length"]), tuple(r["tasks"]))
            for r in self.episodes_table.to_pylist()
        ]
        self._episode_start = {e.index: e.start for e in self.episodes}
        tasks = self._read_parquets([self.root / "meta" / "tasks.parquet"], "meta/tasks").to_pandas()
        tasks = tasks.sort_values("task_index")
        if tasks["task_index"].tolist() != list(range(len(tasks))):  # frames name their task by this number
            raise ValueError(f"{self.root}: meta/tasks.parquet's task_index must run 0..{len(tasks) - 1}, got "
                             f"{tasks['task_index'].tolist()[:10]}")
        self.tasks = [str(t) for t in tasks.index]
        self.stats = read_stats(self.root)
        self._load_data()
        self._video_segments = {key: self._segments(key) for key in self.video_keys}
        self._check_timestamps()
        self._decoder = VideoDecoder()

    def camera_key(self, camera: str) -> str:
        """The feature key of `camera` ('observation.images.<name>' or '<name>')."""
        key = camera if camera in self.features else IMAGE_PREFIX + camera
        if key not in self.camera_keys:
            raise ValueError(f"camera {camera!r} does not exist; this dataset has {self.camera_keys}")
        return key

    def camera_size(self, camera: str) -> tuple[int, int]:
        """(height, width) of `camera` ('observation.images.<name>' or '<name>') as recorded."""
        key = self.camera_key(camera)
        return camera_size(self.features[key], f"{info_path(self.root)}: feature {key!r}")

    def _segments(self, key: str) -> dict[int, tuple[Path, float]]:
        """episode index -> (video file, timestamp of the episode's first frame in it)."""
        segments = {}
        columns = [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
        missing = [c for c in columns if c not in self.episodes_table.column_names]
        if missing:
            raise ValueError(f"{self.root}: meta/episodes has no columns {missing} for video feature {key!r}")
        end = f"videos/{key}/to_timestamp"  # optional here; where given, the segment must hold the whole episode
        ends = end in self.episodes_table.column_names
        lengths = {e.index: e.length for e in self.episodes}
        for row in self.episodes_table.select(["episode_index", *columns, *([end] if ends else [])]).to_pylist():
            path = self.root / self.info["video_path"].format(
                video_key=key, chunk_index=row[columns[0]], file_index=row[columns[1]]
            )
            episode, start = int(row["episode_index"]), float(row[columns[2]])
            if ends and (float(row[end]) - start) * self.fps < lengths[episode] - 0.5:
                raise ValueError(f"{self.root}: meta/episodes gives episode {episode}'s {key!r} video "
                                 f"{float(row[end]) - start:.3f} s of {path.name}, shorter than its {lengths[episode]} "
                                 f"frames at {self.fps:g} fps (the rest would come from the next episode)")
            segments[episode] = (path, start)
        for path in sorted({path for path, _ in segments.values()}):
            self._check_video(key, path)
        return segments

    def _check_video(self, key: str, path: Path) -> None:
        """The video file agrees with info.json: frame rate and frame size (else frames would be picked or sized
        wrongly without a word)."""
        fps, height, width = probe_video(path)
        if abs(fps - self.fps) > 1e-3 * self.fps:
            raise ValueError(f"{info_path(self.root)} says fps {self.info['fps']}, but {path} runs at {fps:g} "
                             f"frames per second")
        if (height, width) != self.camera_size(key):
            raise ValueError(f"{info_path(self.root)} says {key!r} is {self.camera_size(key)} (height, width), but "
                             f"{path} is {(height, width)}")

    @staticmethod
    def read_info(root: str | os.PathLike) -> dict:
        """meta/info.json of a v3 dataset (fps, features with their shapes, ...), checked, without loading data."""
        return read_info(root, "v3")

    def _read_parquets(self, paths: list[Path], what: str) -> pa.Table:
        if not paths:
            raise FileNotFoundError(f"{self.root}: no {what} parquet files")
        tables = []
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"dataset file is missing: {path}")
            try:
                tables.append(pq.read_table(path))
            except (pa.ArrowException, OSError) as error:  # a damaged body fails in its thrift decoder (OSError)
                raise ValueError(f"corrupt parquet file {path}: {error}") from error
        try:
            return pa.concat_tables(tables)
        except pa.ArrowInvalid as error:
            raise ValueError(f"{self.root}: the {what} parquet files do not share one schema: {error}") from error

    def _load_data(self) -> None:
        files = sorted({(int(c), int(f)) for c, f in zip(self.episodes_table["data/chunk_index"].to_pylist(),
                                                         self.episodes_table["data/file_index"].to_pylist(),
                                                         strict=True)})
        paths = [self.root / self.info["data_path"].format(chunk_index=c, file_index=f) for c, f in files]
        table = self._read_parquets(paths, "data")
        if table.num_rows != self.info["total_frames"]:
            raise ValueError(f"{self.root}: info.json says {self.info['total_frames']} frames, data files hold "
                             f"{table.num_rows}")
        index = table["index"].to_numpy()
        if not np.array_equal(index, np.arange(len(index))):
            raise ValueError(f"{self.root}: data rows are not in 'index' order 0..{len(index) - 1}")
        self.columns: dict[str, np.ndarray] = {}
        self._images: dict[str, pa.Array] = {}  # PNG bytes per frame of cameras stored as images
        for key, spec in self.features.items():
            if spec["dtype"] == "video":
                continue
            if key not in table.column_names:
                raise ValueError(f"{self.root}: feature {key!r} is in info.json but not in the data files")
            column = table[key].combine_chunks()
            if spec["dtype"] == "image":
                self._images[key] = self._image_bytes(key, column)
            else:
                self.columns[key] = column_values(column, spec["dtype"])
        for key in (STATE, ACTION):  # what a policy reads: a NaN would surface hours later, naming no frame
            values = self.columns.get(key)
            if values is not None and values.dtype.kind == "f" and not np.isfinite(values).all():
                frame = int(np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))[0])
                episode = int(self.columns["episode_index"][frame])
                raise ValueError(f"{self.root}: feature {key!r} has NaN or infinite values, first at frame {frame} "
                                 f"(episode {episode}); a policy cannot learn from them")
        self._check_episode_rows()
        used = self.columns.get("task_index", np.zeros(0, np.int64))
        if len(used) and not 0 <= used.min() <= used.max() < len(self.tasks):
            raise ValueError(f"{self.root}: the data files name task_index {int(used.max())}, but meta/tasks.parquet "
                             f"has {len(self.tasks)} tasks")

    def _check_episode_rows(self) -> None:
        """Each episode of meta/episodes is exactly the data rows [start, start + length): chunks and future frames
        are read by row from there, so a start that is off would silently mix in a neighbour episode."""
        episode_index = self.columns["episode_index"]
        for episode in self.episodes:
            rows = np.flatnonzero(episode_index == episode.index)
            if len(rows) != episode.length:
                raise ValueError(f"{self.root}: episode {episode.index} has length {episode.length} in meta/episodes "
                                 f"but {len(rows)} rows in the data files")
            if rows[0] != episode.start or rows[-1] != episode.start + episode.length - 1:
                raise ValueError(f"{self.root}: meta/episodes puts episode {episode.index} at rows [{episode.start}, "
                                 f"{episode.start + episode.length}), but the data files hold it at rows "
                                 f"{rows[0]}..{rows[-1]}")
        unknown = sorted(set(np.unique(episode_index).tolist()) - set(self._episode_start))
        if unknown:
            raise ValueError(f"{self.root}: the data files hold episodes {unknown[:5]} that meta/episodes does not "
                             "list")

    def _check_timestamps(self) -> None:
        """Frames are read by position, at frame / fps: a dropped or repeated frame would shift every later image
        against its state and action (LeRobot checks the same on load)."""
        timestamps = self.columns.get("timestamp")
        for episode in self.episodes if timestamps is not None else ():
            stored = timestamps[episode.start : episode.start + episode.length].reshape(-1)
            off = np.flatnonzero(np.abs(stored - np.arange(episode.length) / self.fps) >= 0.5 / self.fps)
            if len(off):
                frame = int(off[0])
                raise ValueError(f"{self.root}: episode {episode.index}'s frame {frame} has timestamp "
                                 f"{stored[frame]:.4f} s in the data files, expected {frame / self.fps:.4f} s at "
                                 f"{self.fps:g} fps (a dropped or repeated frame?)")

    def _image_bytes(self, key: str, column: pa.Array) -> pa.Array:
        """The encoded images of an image feature: LeRobot stores them as {bytes, path} structs."""
        if not pa.types.is_struct(column.type) or column.type.get_field_index("bytes") < 0:
            raise ValueError(f"{self.root}: image feature {key!r} must be stored as {{bytes, path}} structs in the "
                             f"data files, got {column.type}")
        images = column.field("bytes")
        if images.null_count:
            raise ValueError(f"{self.root}: image feature {key!r} has {images.null_count} frames without embedded "
                             f"image bytes (images stored as separate files are not supported)")
        return images

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def has_actions(self) -> bool:
        return "action" in self.features

    def task_of(self, index: int) -> str:
        return self.tasks[int(self.columns["task_index"][index])]

    def frames(self, camera: str, episode: int, frame_indices: list[int] | np.ndarray) -> np.ndarray:
        """Frames (N, H, W, 3) uint8 of `camera` ('observation.images.<name>' or '<name>') in `episode`."""
        key = self.camera_key(camera)
        if key in self._images:
            start = self._episode_start[episode]
            return np.stack([self._decode_image(key, start + int(i)) for i in frame_indices])
        path, start = self._video_segments[key][episode]
        return self._decoder.decode(path, start + np.asarray(frame_indices) / self.fps, self.fps)

    def _decode_image(self, key: str, index: int) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(self._images[key][index].as_py())) as image:
                frame = np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{self.root}: frame {index} of {key!r} is not a readable image: {error}") from error
        if frame.shape[:2] != self.camera_size(key):
            raise ValueError(f"{info_path(self.root)} says {key!r} is {self.camera_size(key)} (height, width), but "
                             f"frame {index} is {frame.shape[:2]}")
        return frame

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_decoder"] = None  # open containers do not cross process boundaries
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._decoder = VideoDecoder()
