"""The online learner's inputs as the ``features`` table keeps them: packed float64s.

Example:
    >>> unpack_inputs(pack_inputs([0.25, -3.0]))
    [0.25, -3.0]
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["pack_inputs", "pack_rows", "unpack_inputs"]


def pack_inputs(vector: Sequence[float]) -> str:
    """The online learner's inputs as the ``features`` table keeps them: base64 of little-endian float64.

    Exact (the learner trains on the very values it scored with), and one
    object per kept transaction instead of a list and twenty floats: the
    table holds every transaction of the retention, and fewer long-lived
    small objects leave Python's heap less fragmented.

    >>> pack_inputs([0.5, -1.0])
    'AAAAAAAA4D8AAAAAAADwvw=='
    >>> unpack_inputs(pack_inputs([0.1, 2.0, 1e-300]))
    [0.1, 2.0, 1e-300]
    """
    return pack_rows(np.asarray([vector], dtype=np.float64))[0]


def pack_rows(matrix: npt.NDArray[np.float64]) -> list[str]:
    """:func:`pack_inputs` of every row of ``matrix``: the score agent packs a micro-batch's inputs at once.

    >>> pack_rows(np.array([[0.5, -1.0], [0.1, 2.0]])) == [pack_inputs([0.5, -1.0]), pack_inputs([0.1, 2.0])]
    True
    """
    little = np.ascontiguousarray(matrix, dtype="<f8")
    width = 8 * little.shape[1] if little.ndim == 2 else 0
    if not width:
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    # Slices of one bytes object: iterating the matrix made a NumPy row object per row.
    raw, encode = little.tobytes(), binascii.b2a_base64
    return [encode(raw[i:i + width], newline=False).decode("ascii") for i in range(0, len(raw), width)]


def unpack_inputs(packed: str | Sequence[float]) -> list[float]:
    """Inverse of :func:`pack_inputs`; a plain list of floats (what earlier builds wrote to the changelog) passes through.

    Raises ``ValueError`` (or ``TypeError``) for anything else, e.g. a
    damaged string.

    >>> unpack_inputs([1.0, 2.0])
    [1.0, 2.0]
    >>> unpack_inputs("AAAA")
    Traceback (most recent call last):
    ...
    ValueError: packed inputs of 3 bytes, not a multiple of 8
    """
    if isinstance(packed, str):
        raw = base64.b64decode(packed, validate=True)  # binascii.Error is a ValueError
        if len(raw) % 8:
            raise ValueError(f"packed inputs of {len(raw)} bytes, not a multiple of 8")
        return list(struct.unpack(f"<{len(raw) // 8}d", raw))
    return [float(v) for v in packed]
