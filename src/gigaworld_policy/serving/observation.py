"""Turn a request dict into an `Observation`, whatever the client's key convention.

Recognised out of the box:
    LeRobot style   observation.images.<camera>, observation.state, task
    openpi style    observation/<camera> or observation/images/<camera> or images: {<camera>: ...},
                    observation/state or state, prompt
`key_map` renames client keys to the policy's camera names first, e.g. {"observation/image": "corner"}.
Images: (H, W, 3) or (3, H, W), uint8 or float in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..envs.base import Observation

IMAGE_PREFIXES = ("observation.images.", "observation/images/", "observation/")
STATE_KEYS = ("observation.state", "observation/state", "state")
TASK_KEYS = ("task", "prompt")


def _image(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"image {name!r} must be an array, got {type(value).__name__}")
    if value.ndim == 3 and value.shape[0] == 3 and value.shape[-1] != 3:
        value = value.transpose(1, 2, 0)
    if value.ndim != 3 or value.shape[-1] != 3:
        raise ValueError(f"image {name!r} must be (H, W, 3) or (3, H, W), got shape {value.shape}")
    if value.dtype != np.uint8:
        if value.dtype.kind != "f" or not np.isfinite(value).all():
            raise ValueError(f"image {name!r} must be uint8 or float in [0, 1], got {value.dtype}")
        value = (np.clip(value, 0, 1) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(value)


def _camera_name(key: str) -> str:
    """The camera an image key names: its last part after a known prefix, else the key itself."""
    return next((key[len(p):] for p in IMAGE_PREFIXES if key.startswith(p)), key)


def check_key_map(key_map: dict[str, str], cameras: list[str]) -> None:
    """Refuse a key map that renames client keys to something a request is never read for."""
    readable = {*cameras, *STATE_KEYS, *TASK_KEYS}
    unknown = sorted(target for target in key_map.values() if _camera_name(target) not in readable)
    if unknown:
        raise ValueError(f"key map renames to {unknown}, which this policy does not read; rename client keys to "
                         f"its cameras {cameras} (or to a state or task key)")


def parse_observation(request: dict, cameras: list[str], key_map: dict[str, str] | None = None) -> Observation:
    if not isinstance(request, dict):
        raise ValueError(f"a request must be a map of observation keys, got {type(request).__name__}")
    request = {(key_map or {}).get(k, k): v for k, v in request.items()}
    images: dict[str, np.ndarray] = {}
    nested = request.get("images")
    if isinstance(nested, dict):
        images.update({k: _image(k, v) for k, v in nested.items()})
    for key, value in request.items():
        name = _camera_name(key)
        if name in cameras and name not in images:
            images[name] = _image(key, value)
    missing = [c for c in cameras if c not in images]
    if missing:
        raise ValueError(f"missing image(s) for camera(s) {missing}; send e.g. 'observation.images.{missing[0]}' "
                         f"(keys received: {sorted(request)})")
    state = next((request[k] for k in STATE_KEYS if k in request), None)
    if state is not None:
        state = np.asarray(state, dtype=np.float32)
        if state.ndim != 1 or not np.isfinite(state).all():
            raise ValueError(f"state must be a finite 1-D array, got shape {state.shape}")
    task = next((request[k] for k in TASK_KEYS if k in request), None)
    if not isinstance(task, str):
        raise ValueError("missing the instruction: send 'task' (or 'prompt') as a string")
    return Observation(images, state, task)
