"""LeRobot v2.1 (and v2.0) datasets converted to v3.0, offline and without re-encoding.

v2.x keeps one file per episode:
    meta/info.json               codebase_version "v2.1"; data_path / video_path templates with {episode_chunk}
    meta/episodes.jsonl          {"episode_index", "tasks", "length"} per line
    meta/tasks.jsonl             {"task_index", "task"} per line
    meta/episodes_stats.jsonl    {"episode_index", "stats": {feature: {min, max, mean, std, count}}} (v2.1 only)
    data/chunk-000/episode_000000.parquet
    videos/chunk-000/<video key>/episode_000000.mp4

v3.0 packs many episodes into each file (see `lerobot.py`). The conversion joins the data files, copies the video
packets into joined videos (frames decode bit-identically), numbers the `index` column 0..N-1 in episode order, and
computes the statistics of numeric features exactly from the data, quantiles included.

    gwp convert lerobot-v21 SRC DST
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_directory
from . import stats as stats_lib
from .lerobot import CODEBASE_VERSION, DATA_PATH, EPISODES_PATH, VIDEO_PATH, column_values, next_file
from .lerobot_meta import CAMERA_DTYPES, read_info
from .video import concatenate_videos

EPISODES, TASKS, EPISODE_STATS = "meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl"


def convert_lerobot_v21(source: str | os.PathLike, destination: str | os.PathLike,
                        data_files_size_in_mb: float = 100, video_files_size_in_mb: float = 500) -> Path:
    """Write the v3.0 version of the v2.x dataset at `source` to the new folder `destination` (atomically: it
    appears complete or not at all). Returns `destination`."""
    source, destination = Path(source), Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists; choose a new dataset folder")
    info = read_info(source, "v2")
    episodes = sorted(_read_jsonl(source / EPISODES), key=lambda e: e["episode_index"])
    tasks = sorted(_read_jsonl(source / TASKS), key=lambda t: t["task_index"])
    camera_stats = _camera_stats(source, info)
    with atomic_directory(destination) as tmp:
        rows, values = _convert_data(source, tmp, info, episodes, data_files_size_in_mb * 2**20)
        for key in _keys(info, "video"):
            _convert_videos(source, tmp, info, key, rows, video_files_size_in_mb * 2**20)
        dataset_stats = {key: stats_lib.feature_stats(v) for key, v in values.items()}
        for key, per_episode in camera_stats.items():
            for row in rows:
                row.update({f"stats/{key}/{name}": np.asarray(v).tolist()
                            for name, v in per_episode[row["episode_index"]].items()})
            dataset_stats[key] = stats_lib.aggregate(list(per_episode.values()))
        _write_meta(tmp, info, rows, tasks, dataset_stats, data_files_size_in_mb, video_files_size_in_mb)
    return destination


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file is missing: {path}")
    lines = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from error
        if not isinstance(value, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {value!r:.60}")
        lines.append(value)
    return lines


def _keys(info: dict, dtype: str) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] == dtype]


def _episode_file(source: Path, info: dict, template: str, episode: int, **keys: str) -> Path:
    chunk = episode // int(info.get("chunks_size", 1000))
    return source / info[template].format(episode_chunk=chunk, episode_index=episode, **keys)


def _groups(sizes: list[int], limit: float) -> list[list[int]]:
    """Consecutive indices packed into groups whose sizes add up to at most `limit` (at least one each)."""
    groups: list[list[int]] = [[]]
    total = 0
    for index, size in enumerate(sizes):
        if groups[-1] and total + size > limit:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += size
    return groups


def _convert_data(source: Path, tmp: Path, info: dict, episodes: list[dict],
                  limit: float) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Join the episodes' data files into v3.0 files; returns the episode rows of meta/episodes so far and all
    values of each numeric feature (for the dataset's statistics)."""
    paths = [_episode_file(source, info, "data_path", e["episode_index"]) for e in episodes]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"dataset file is missing: {missing[0]} ({len(missing)} data files in all)")
    columns = [k for k, f in info["features"].items() if f["dtype"] != "video"]  # info.json's order
    numeric = [k for k in columns if info["features"][k]["dtype"] not in CAMERA_DTYPES]
    rows, values = [], {k: [] for k in numeric}
    file, start = (0, 0), 0
    for group in _groups([p.stat().st_size for p in paths], limit):
        tables = []
        for number in group:
            episode, table = episodes[number], _read_table(paths[number])
            if table.num_rows != episode["length"]:
                raise ValueError(f"{paths[number]} holds {table.num_rows} frames, {EPISODES} says episode "
                                 f"{episode['episode_index']} has {episode['length']}")
            absent = [k for k in columns if k not in table.column_names]
            if absent:
                raise ValueError(f"{paths[number]} lacks the columns {absent} that meta/info.json lists")
            table = table.select(columns)
            table = table.set_column(columns.index("index"), "index",
                                     pa.array(np.arange(start, start + table.num_rows, dtype=np.int64)))
            row = {"episode_index": episode["episode_index"], "tasks": list(episode["tasks"]),
                   "length": table.num_rows, "dataset_from_index": start, "dataset_to_index": start + table.num_rows,
                   "data/chunk_index": file[0], "data/file_index": file[1]}
            for key in numeric:
                episode_values = column_values(table[key].combine_chunks(), info["features"][key]["dtype"])
                values[key].append(episode_values.reshape(len(episode_values), -1))
                row.update({f"stats/{key}/{name}": v.tolist()
                            for name, v in stats_lib.feature_stats(values[key][-1]).items()})
            rows.append(row)
            tables.append(table)
            start += table.num_rows
        path = tmp / DATA_PATH.format(chunk_index=file[0], file_index=file[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), path)
        file = next_file(*file, int(info.get("chunks_size", 1000)))
    return rows, {k: np.concatenate(v) for k, v in values.items()}


def _read_table(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"corrupt parquet file {path}: {error}") from error


def _convert_videos(source: Path, tmp: Path, info: dict, key: str, rows: list[dict], limit: float) -> None:
    """Join camera `key`'s episode videos into v3.0 files; adds their locations to the episode rows."""
    paths = [_episode_file(source, info, "video_path", row["episode_index"], video_key=key) for row in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"video file is missing: {missing[0]} ({len(missing)} of {key!r} in all)")
    fps, file = float(info["fps"]), (0, 0)
    for group in _groups([p.stat().st_size for p in paths], limit):
        output = tmp / VIDEO_PATH.format(video_key=key, chunk_index=file[0], file_index=file[1])
        frames = concatenate_videos([paths[n] for n in group], fps, output)
        start = 0
        for number, count in zip(group, frames, strict=True):
            row = rows[number]
            if count < row["length"]:
                raise ValueError(f"{paths[number]} has {count} frames, episode {row['episode_index']} has "
                                 f"{row['length']}")
            row.update({f"videos/{key}/chunk_index": file[0], f"videos/{key}/file_index": file[1],
                        f"videos/{key}/from_timestamp": start / fps,
                        f"videos/{key}/to_timestamp": (start + row["length"]) / fps})
            start += count
        file = next_file(*file, int(info.get("chunks_size", 1000)))


def _camera_stats(source: Path, info: dict) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    """{camera key: {episode index: its stats}} from meta/episodes_stats.jsonl (v2.1; v2.0 has none)."""
    path = source / EPISODE_STATS
    if not path.is_file():
        return {}
    cameras = [k for k, f in info["features"].items() if f["dtype"] in CAMERA_DTYPES]
    found: dict[str, dict[int, dict[str, np.ndarray]]] = {k: {} for k in cameras}
    for line in _read_jsonl(path):
        for key in cameras:
            if key in line.get("stats", {}):
                found[key][int(line["episode_index"])] = {n: np.asarray(v, dtype=np.float64)
                                                          for n, v in line["stats"][key].items()}
    return {k: v for k, v in found.items() if v}


def _write_meta(tmp: Path, info: dict, rows: list[dict], tasks: list[dict], dataset_stats: dict,
                data_files_size_in_mb: float, video_files_size_in_mb: float) -> None:
    for row in rows:
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
    episodes_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes_path)
    pd.DataFrame({"task_index": [t["task_index"] for t in tasks]},
                 index=pd.Index([t["task"] for t in tasks], name="task")).to_parquet(tmp / "meta" / "tasks.parquet")
    (tmp / "meta" / "stats.json").write_text(json.dumps(stats_lib.to_json(dataset_stats), indent=2))
    converted = {k: v for k, v in info.items() if k not in ("total_chunks", "total_videos")}
    converted.update({"codebase_version": CODEBASE_VERSION, "total_episodes": len(rows),
                      "total_frames": sum(r["length"] for r in rows), "data_path": DATA_PATH,
                      "video_path": VIDEO_PATH if _keys(info, "video") else None,
                      "data_files_size_in_mb": data_files_size_in_mb, "video_files_size_in_mb": video_files_size_in_mb})
    (tmp / "meta" / "info.json").write_text(json.dumps(converted, indent=2))

