"""msgpack with numpy arrays, wire-compatible with openpi's `msgpack_numpy`.

An array travels as {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": shape}; a numpy
scalar as {b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}. openpi packs these keys as bytes and its
client only decodes bytes keys, so we send bytes keys and accept str keys too.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OVU":
            raise TypeError(f"cannot send arrays of dtype {obj.dtype}")
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _get(obj: dict, key: str) -> Any:
    return obj[key.encode()] if key.encode() in obj else obj[key]


def _decode(obj: dict) -> Any:
    if obj.get(b"__ndarray__") or obj.get("__ndarray__"):
        data, dtype, shape = _get(obj, "data"), np.dtype(_get(obj, "dtype")), tuple(_get(obj, "shape"))
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # writable, owns its memory
    if obj.get(b"__npgeneric__") or obj.get("__npgeneric__"):
        return np.dtype(_get(obj, "dtype")).type(_get(obj, "data"))
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode a message; map keys come back as str (bytes keys are decoded)."""
    return _str_keys(msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False))


def _str_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k.decode() if isinstance(k, bytes) else k): _str_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_str_keys(v) for v in obj]
    return obj
