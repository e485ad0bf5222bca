"""Feature statistics in LeRobot's layout: mean, std, min, max, count and quantiles per dimension.

Images are summarised per channel on values scaled to [0, 1], with shape (3, 1, 1) as LeRobot stores them.
"""

from __future__ import annotations

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """values (N, D) -> {mean, std, min, max, count, q01..q99}, each (D,) except count (1,)."""
    values = np.asarray(values, dtype=np.float64)
    stats = {
        "mean": values.mean(axis=0),
        "std": values.std(axis=0),
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "count": np.array([len(values)]),
    }
    for name, q in QUANTILES.items():
        stats[name] = np.quantile(values, q, axis=0)
    return stats


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """frames (N, H, W, 3) uint8 -> per-channel stats of values in [0, 1], each shaped (3, 1, 1)."""
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
    stats = feature_stats(pixels)
    stats = {k: (v.reshape(3, 1, 1) if k != "count" else np.array([len(frames)])) for k, v in stats.items()}
    return stats


def to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()}



def aggregate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The mean/std/min/max/count of the union of parts (e.g. episodes), exactly, from each part's own."""
    counts = np.array([float(np.asarray(p["count"]).reshape(-1)[0]) for p in parts])
    weights = (counts / counts.sum()).reshape(-1, *[1] * np.asarray(parts[0]["mean"]).ndim)
    means = np.stack([np.asarray(p["mean"], dtype=np.float64) for p in parts])
    second_moments = np.stack([np.asarray(p["std"], dtype=np.float64) ** 2 for p in parts]) + means**2
    mean = (weights * means).sum(0)
    return {
        "mean": mean,
        "std": np.sqrt(np.maximum((weights * second_moments).sum(0) - mean**2, 0)),
        "min": np.min([np.asarray(p["min"]) for p in parts], axis=0),
        "max": np.max([np.asarray(p["max"]) for p in parts], axis=0),
        "count": np.array([int(counts.sum())]),
    }
