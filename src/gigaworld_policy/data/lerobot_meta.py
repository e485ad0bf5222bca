"""The metadata files of a LeRobot dataset (meta/info.json, meta/stats.json), read and checked before any data is.

A wrong file fails here with a sentence that names it and says what was expected, not later in a decoder or a
forward pass (an `fps` that disagrees with the videos, for one, would otherwise pick the wrong frames silently).
"""

from __future__ import annotations

import os
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from ..config import read_json

CAMERA_DTYPES = ("video", "image")  # "image": PNG bytes in the parquet files (LeRobot's use_videos=False)
V21_CONVERT_HINT = "convert it with `gwp convert lerobot-v21 SRC DST`"


def info_path(root: str | os.PathLike) -> Path:
    return Path(root) / "meta" / "info.json"


def read_info(root: str | os.PathLike, version: str = "v3") -> dict:
    """meta/info.json of a dataset of `version` ("v3" or "v2"), checked: fps, features, totals, path templates."""
    path = info_path(root)
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: {path} is missing")
    info = read_json(path)
    if not isinstance(info, dict):
        raise ValueError(f"{path} must hold a JSON object, got a {type(info).__name__}")
    found = str(info.get("codebase_version", ""))
    if not found.startswith(version):
        hint = f"; {V21_CONVERT_HINT}" if version == "v3" and found.startswith("v2") else ""
        raise ValueError(f"{path}: codebase_version {found!r} is not supported here (expected {version}.x){hint}")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, Real) or not fps > 0:
        raise ValueError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    total = info.get("total_frames")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"{path}: 'total_frames' must be a whole number >= 0, got {total!r}")
    _check_features(info.get("features"), path)
    templates = ["data_path"] + (["video_path"] if any(f["dtype"] == "video" for f in info["features"].values())
                                 else [])
    for key in templates:
        if not isinstance(info.get(key), str):
            raise ValueError(f"{path}: {key!r} must be a path template string, got {info.get(key)!r}")
    return info


def _check_features(features: Any, path: Path) -> None:
    if not isinstance(features, dict) or not features:
        raise ValueError(f"{path}: 'features' must be a JSON object of features, got {features!r:.80}")
    for name, spec in features.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str):
            raise ValueError(f"{path}: feature {name!r} must be an object with a 'dtype' string, got {spec!r:.80}")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n > 0 for n in shape):
            raise ValueError(f"{path}: feature {name!r} must have a 'shape' list of positive whole numbers, "
                             f"got {shape!r}")
        if spec["dtype"] in CAMERA_DTYPES:
            camera_size(spec, f"{path}: feature {name!r}")  # raises on a shape that is no colour image


def camera_size(spec: dict, where: str) -> tuple[int, int]:
    """(height, width) of a camera feature, whose shape is (H, W, 3) or, where its names say so, (3, H, W)."""
    shape, names = spec["shape"], spec.get("names") or []
    channels_first = len(names) == 3 and str(names[0]).startswith("channel")
    if len(shape) != 3 or shape[0 if channels_first else 2] != 3:
        raise ValueError(f"{where}: a camera's shape must be (height, width, 3), got {shape}")
    return (shape[1], shape[2]) if channels_first else (shape[0], shape[1])


def read_stats(root: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """meta/stats.json as {feature: {statistic: array}}; empty when the dataset has none."""
    path = Path(root) / "meta" / "stats.json"
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict) or not all(isinstance(s, dict) for s in data.values()):
        raise ValueError(f"{path} must map each feature to an object of statistics, got {str(data)[:80]}")
    stats = {}
    for key, values in data.items():
        try:
            stats[key] = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: statistics of {key!r} must be numbers or lists of numbers ({error})") from error
    return stats
