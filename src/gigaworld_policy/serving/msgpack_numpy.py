"""msgpack with numpy arrays, wire-compatible with openpi's `msgpack_numpy`.

An array travels as {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": shape}; a numpy
scalar as {b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}. openpi packs these keys as bytes and its
client only decodes bytes keys, so we send bytes keys and accept str keys too.

`unpackb` reads messages from the network, so it trusts nothing: whatever the bytes, it returns a value or raises
a ValueError whose message says what was wrong.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..extras import require

msgpack = require("msgpack", "the policy server and its client")
NUMERIC_KINDS = "biufc"  # bool, int, uint, float, complex: the only arrays a policy reads
# Elements of all msgpack arrays and maps in one message together. A request has a few dozen (images travel as
# bytes); 16 MB of one-byte list items decode to 16 M Python objects in ~0.5 s of C that holds the GIL and so stalls
# every connection.
MAX_ITEMS = 2**16


class _MalformedArray(ValueError):
    """An array or scalar map that cannot be decoded (kept apart from msgpack's own errors)."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OVU":
            raise TypeError(f"cannot send arrays of dtype {obj.dtype}")
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _numeric_dtype(text: Any) -> np.dtype:
    if isinstance(text, str):
        try:
            dtype = np.dtype(text)
        except (TypeError, ValueError):
            dtype = None
        if dtype is not None and dtype.kind in NUMERIC_KINDS:
            return dtype
    raise _MalformedArray(f"array dtype must name a number type such as '<f4' or '|u1', got {text!r:.40}")


def _array(obj: dict) -> np.ndarray:
    data, shape = obj.get("data"), obj.get("shape")
    if not isinstance(data, bytes):
        raise _MalformedArray(f"array 'data' must be bytes, got {type(data).__name__}")
    if not (isinstance(shape, list) and len(shape) <= 32 and all(type(n) is int and n >= 0 for n in shape)):
        raise _MalformedArray(f"array 'shape' must be a list of at most 32 sizes >= 0, got {shape!r:.60}")
    dtype = _numeric_dtype(obj.get("dtype"))
    needed = math.prod(shape) * dtype.itemsize
    if len(data) != needed:
        raise _MalformedArray(f"array of dtype {dtype.str} and shape {shape} needs {needed} bytes of data, "
                              f"got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # writable, owns its memory


def _scalar(obj: dict) -> np.generic:
    dtype, data = _numeric_dtype(obj.get("dtype")), obj.get("data")
    if isinstance(data, bool | int | float):
        try:
            return dtype.type(data)
        except (OverflowError, ValueError, TypeError):
            pass
    raise _MalformedArray(f"a numpy scalar of dtype {dtype.str} needs a number that fits it, got {data!r:.40}")


def _key(key: Any) -> Any:
    """openpi sends some keys as bytes: decode them; refuse keys Python cannot hash (lists, maps, arrays)."""
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError:
            raise _MalformedArray(f"map key {key!r:.40} is not UTF-8 text") from None
    if key is None or isinstance(key, str | bool | int | float):
        return key
    raise _MalformedArray(f"map keys must be strings (or numbers), got a {type(key).__name__}")


def _decode_map(pairs: list[tuple[Any, Any]]) -> Any:
    # msgpack calls this for every map, innermost first, so decoding never recurses in Python
    obj = {_key(k): v for k, v in pairs}
    if obj.get("__ndarray__") is True:
        return _array(obj)
    if obj.get("__npgeneric__") is True:
        return _scalar(obj)
    return obj


def _too_many(max_items: int, given: str = "more") -> str:
    return (f"a message may hold at most {max_items:,} list and map elements in all, got {given}; send arrays as "
            f"numpy arrays, not as lists")


class _Hooks:
    """msgpack's hooks for one message: they decode maps and count elements, refusing the message once it has more
    than `max_items` (msgpack itself refuses any one array or map that long before building it)."""

    def __init__(self, max_items: int):
        self.max_items, self.left = max_items, max_items

    def _count(self, items: int) -> None:
        self.left -= items
        if self.left < 0:
            raise _MalformedArray(_too_many(self.max_items))

    def list(self, values: list) -> list:
        self._count(len(values))
        return values

    def map(self, pairs: list[tuple[Any, Any]]) -> Any:
        self._count(len(pairs))
        return _decode_map(pairs)


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes, max_items: int = MAX_ITEMS) -> Any:
    """Decode a message; map keys come back as str (bytes keys are decoded). Raises ValueError with a sentence."""
    hooks = _Hooks(max_items)
    try:
        return msgpack.unpackb(data, object_pairs_hook=hooks.map, list_hook=hooks.list, raw=False,
                               strict_map_key=False, max_array_len=max_items, max_map_len=max_items)
    except _MalformedArray:
        raise
    except msgpack.StackError:
        raise ValueError("not valid msgpack: maps and arrays are nested too deeply") from None
    except ValueError as error:  # msgpack's own: bad bytes, truncated input, extra data, text that is not UTF-8
        too_long = re.fullmatch(r"(\d+) exceeds max_(array|map)_len\(\d+\)", str(error))  # msgpack's wording
        if too_long:
            kind = "a list" if too_long[2] == "array" else "a map"
            raise ValueError(_too_many(max_items, f"{kind} of {int(too_long[1]):,}")) from None
        raise ValueError(f"not valid msgpack: {error}") from None
