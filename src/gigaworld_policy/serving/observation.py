"""Turn a request dict into an `Observation`, whatever the client's key convention.

Recognised out of the box:
    LeRobot style   observation.images.<camera>, observation.state, task
    openpi style    observation/<camera> or observation/images/<camera> or images: {<camera>: ...},
                    observation/state or state, prompt
`key_map` renames client keys to the policy's camera names first, e.g. {"observation/image": "corner"}.
Images: (H, W, 3) or (3, H, W), uint8 or float in [0, 1]. State: a list or 1-D array of real numbers.
`return_video`: true or false.

Requests come from the network: anything malformed raises a ValueError that says what was expected and what
was given, so the server can send it back as the error reply.
"""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

from ..data.lerobot import IMAGE_PREFIX
from ..envs.base import Observation

IMAGE_PREFIXES = (IMAGE_PREFIX, "observation/images/", "observation/")
STATE_KEYS = ("observation.state", "observation/state", "state")
TASK_KEYS = ("task", "prompt")
# Limits of a request, announced in the server's metadata. Three float32 camera views of 640x480 take 11 MB; a 200 MB
# message was accepted before there was a limit.
MAX_MESSAGE_BYTES = 16 * 2**20
# Tokenisers read the whole string before truncating it: a 4 MB instruction took ~6 s. 2,000 characters is more
# than umT5's 512 tokens of English text, so no instruction a model can read is refused.
MAX_INSTRUCTION_CHARS = 2000
FLOAT32_MAX = float(np.finfo(np.float32).max)

_short = reprlib.Repr()  # values quoted in error messages stay short whatever the client sent
_short.maxstring = _short.maxother = 60


def _kind(value: Any) -> str:
    """How an error message names what the client sent: 'a map', 'None', "str 'abc'", 'float32 0.5', ..."""
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, np.generic):
        return f"{value.dtype} {_short.repr(value.item())}"
    return "None" if value is None else f"{type(value).__name__} {_short.repr(value)}"


def _check_keys(where: str, mapping: dict) -> None:
    wrong = [k for k in mapping if not isinstance(k, str)]
    if wrong:
        raise ValueError(f"{where} keys must be strings, got {_kind(wrong[0])}")


def _image(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ValueError(f"image {name!r} must be an array, got {_kind(value)}")
    if value.ndim == 3 and value.shape[0] == 3 and value.shape[-1] != 3:
        value = value.transpose(1, 2, 0)
    if value.ndim != 3 or value.shape[-1] != 3:
        raise ValueError(f"image {name!r} must be (H, W, 3) or (3, H, W), got shape {value.shape}")
    if 0 in value.shape:
        raise ValueError(f"image {name!r} has no pixels: shape {value.shape}, expected at least 1x1")
    if value.dtype == np.uint8:
        return np.ascontiguousarray(value)
    if value.dtype.kind != "f":
        raise ValueError(f"image {name!r} must be uint8 or float in [0, 1], got {value.dtype}")
    if not np.isfinite(value).all():
        raise ValueError(f"image {name!r} has NaN or infinite values; float images must be in [0, 1]")
    low, high = float(value.min()), float(value.max())
    if low < 0 or high > 1:  # clipping would turn a 0..255 float image white without a word
        raise ValueError(f"float image {name!r} must be in [0, 1], got values in [{low:.4g}, {high:.4g}] "
                         f"(send uint8 for 0..255 pixels)")
    return np.ascontiguousarray((value * 255).round().astype(np.uint8))


def _real_array(name: str, value: Any, ndim: int) -> np.ndarray:
    """`value` as an `ndim`-D float32 array of finite numbers, or a ValueError saying what it is instead."""
    shape = "a list or 1-D array" if ndim == 1 else f"a {ndim}-D array (or nested lists)"
    if isinstance(value, dict | str | bytes):
        raise ValueError(f"{name} must be {shape} of numbers, got {_kind(value)}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError):  # e.g. nested lists of different lengths
        array = None
    if array is None or array.dtype.kind == "O":  # objects (None, maps) among numbers: None would pass as NaN
        listed = "a flat list" if ndim == 1 else shape
        raise ValueError(f"{name} must be {listed} of numbers, got {_short.repr(value)}")
    if array.dtype.kind == "c":  # a cast would drop the imaginary part without a word
        raise ValueError(f"{name} must be real numbers, got {array.dtype}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numbers, got an array of {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    array = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(array) | (np.abs(array) > FLOAT32_MAX))
    if len(bad):
        where = tuple(int(i) for i in bad[0])
        raise ValueError(f"{name} must be finite float32 numbers (|x| <= {FLOAT32_MAX:.3g}), got "
                         f"{array[where]:.4g} at index {where[0] if ndim == 1 else where}")
    return array.astype(np.float32)


def _state(value: Any) -> np.ndarray:
    return _real_array("state", value, 1)


def action_prefix(request: dict, action_dim: int, max_steps: int) -> np.ndarray | None:
    """The request's "action_prefix": (d, action_dim) actions in robot units that the robot executes while this
    request is served (real-time chunking), d <= max_steps; None when the request has none, or one of no steps."""
    if "action_prefix" not in request:
        return None
    given = request["action_prefix"]
    if isinstance(given, np.ndarray) and given.ndim == 2 and given.shape[0] == 0:  # nothing runs meanwhile
        return None
    if max_steps == 0:
        raise ValueError("this policy does not take an 'action_prefix' (it was trained without action_prefix_prob)")
    prefix = _real_array("action_prefix", request["action_prefix"], 2)
    if prefix.shape[0] > max_steps or prefix.shape[1] != action_dim:
        raise ValueError(f"action_prefix must be (d <= {max_steps}, {action_dim}), got {prefix.shape}")
    return prefix


def _instruction(request: dict, max_chars: int) -> str:
    key = next((k for k in TASK_KEYS if k in request), None)
    if key is None:
        raise ValueError("missing the instruction: send 'task' (or 'prompt') as a string")
    task = request[key]
    if not isinstance(task, str):
        raise ValueError(f"the instruction {key!r} must be a string, got {_kind(task)}")
    if len(task) > max_chars:
        raise ValueError(f"the instruction is {len(task):,} characters long; this server takes at most {max_chars:,}")
    return task


def _listing(keys: list[str], at_most: int = 12) -> str:
    shown = ", ".join(repr(k) for k in sorted(keys)[:at_most])
    return shown + (f" and {len(keys) - at_most} more" if len(keys) > at_most else "")


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


def wants_video(request: dict) -> bool:
    """The request's "return_video", which must be a bool: `bool("false")` would be True."""
    value = request.get("return_video", False)
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"'return_video' must be true or false, got {_kind(value)}")
    return bool(value)


def parse_observation(request: Any, cameras: list[str], key_map: dict[str, str] | None = None,
                      max_instruction_chars: int = MAX_INSTRUCTION_CHARS) -> Observation:
    if not isinstance(request, dict):
        raise ValueError(f"a request must be a map of observation keys, got {_kind(request)}")
    _check_keys("request", request)
    request = {(key_map or {}).get(k, k): v for k, v in request.items()}
    images: dict[str, np.ndarray] = {}
    nested = request.get("images")
    if isinstance(nested, dict):
        _check_keys("'images'", nested)
        images.update({k: _image(k, v) for k, v in nested.items() if k in cameras})  # others go unread, as below
    for key, value in request.items():
        name = _camera_name(key)
        if name in cameras and name not in images:
            images[name] = _image(key, value)
    missing = [c for c in cameras if c not in images]
    if missing:
        raise ValueError(f"missing image(s) for camera(s) {missing}; send e.g. 'observation.images.{missing[0]}' "
                         f"(keys received: {_listing(list(request))})")
    state = next((request[k] for k in STATE_KEYS if k in request), None)
    return Observation(images, None if state is None else _state(state), _instruction(request, max_instruction_chars))
