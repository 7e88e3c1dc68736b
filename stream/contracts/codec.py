"""JSON in and out of the hot path (orjson: about 4x the standard library here).

Every record the engine reads or writes is JSON; these two functions are the
only place that knows which library does it. Output is compact UTF-8; NaN
and infinities become ``null`` (standard JSON has no spelling for them);
NumPy scalars and arrays are written as numbers and lists.

Example:
    >>> import numpy as np
    >>> dumps({"a": 1, "s": "é", "x": np.float32(0.5), "v": np.arange(2)})
    b'{"a":1,"s":"\\xc3\\xa9","x":0.5,"v":[0,1]}'
    >>> loads(b'{"a": [1, 2.5]}')
    {'a': [1, 2.5]}
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONDecodeError", "dumps", "loads"]

JSONDecodeError = orjson.JSONDecodeError  # a subclass of json.JSONDecodeError and ValueError
loads = orjson.loads

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    item = getattr(value, "item", None)  # NumPy scalars orjson does not take natively
    if item is not None:
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)
