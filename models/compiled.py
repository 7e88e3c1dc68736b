"""Numba-compiled loops: how they are compiled, cached, and called with one signature each.

Two of the score agent's per-window computations are loops over each
window's steps (:func:`models.steps.window_features`,
:func:`models.features.engineered_batch`): as whole-array NumPy they made
``[B, n, n]`` temporaries, compiled they do the same arithmetic in place.
A third is Kafka's murmur2 over a micro-batch's output keys
(:mod:`stream.kafka.partitioner`).

Numba compiles a function once per combination of argument types, and an
array's type includes its layout and whether it is writable, so each
compiled function here is called only through :func:`frozen`: inputs
C-contiguous, of fixed dtypes and read-only, whatever the caller passed (the
score agent's shared windows are read-only views, the training path's arrays
are fresh). A worker then compiles each loop once, at start-up, and the
machine code is cached on disk for the next start.

Numba keys that cache on the compiled function's own source file: a global
the loop reads is folded into the machine code, and a change to a global
defined in another module would leave a stale cache in use. So a compiled
loop reads only its own module's constants; anything else is an argument.

Example:
    >>> import numpy as np
    >>> @compiled
    ... def total(values):
    ...     s = 0.0
    ...     for v in values:
    ...         s += v
    ...     return s
    >>> total(frozen(np.arange(4), np.float64))
    6.0
    >>> frozen(np.arange(4), np.float64).flags.writeable
    False
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["compiled", "frozen"]


def compiled(function: Any) -> Any:
    """``function`` compiled by Numba (no Python objects, GIL released), machine code cached on disk.

    The cache sits next to the source file or in the user's cache directory
    (``NUMBA_CACHE_DIR`` overrides; the image points it at its volume). The
    first start compiles, ~1-2 s a function here; later ones load the cache.
    Where no cache location is writable (a read-only install without a
    writable home) every start compiles instead of failing to import.
    ``NUMBA_DISABLE_JIT=1`` leaves ``function`` plain Python, for a debugger.
    """
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # Numba's "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


def frozen(values: Any, dtype: type[np.generic]) -> npt.NDArray[Any]:
    """``values`` as a C-contiguous, read-only array of ``dtype``: the one argument type a compiled loop sees.

    No copy when ``values`` already is contiguous and of ``dtype`` (a
    read-only view of it).
    """
    out = np.ascontiguousarray(values, dtype=dtype)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out
