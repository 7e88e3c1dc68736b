"""A batch of card histories as arrays: the one layout the features and the sequence model read.

The score agent scores a micro-batch at once, so the models want NumPy
arrays, not one :class:`~models.history.History` at a time. :func:`gather`
lays each history's last entries out right-aligned in a row of fixed width
(:class:`Columns`); :func:`scored_windows` adds the transaction being
scored as a last column, once per batch, so the engineered features and the
sequence model share the same arrays instead of each gathering its own.
:func:`check_windows` is the cheap guard that a batch's windows belong to it.

Why right-aligned: the most recent entries sit in the same columns whatever
the history's length, so "the last ``n`` steps" is a slice, not a gather.

Example:
    >>> from models.history import append, new_history
    >>> from stream.contracts.records import Transaction
    >>> t1 = Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 2_000, 35.0, "EUR", "m2", "5411", "FR", "pos")
    >>> w = scored_windows([append(new_history(), t1, 32)], [t2])
    >>> w.ts.tolist(), w.amount.tolist(), w.lengths.tolist()
    ([[1000, 2000]], [[20.0, 35.0]], [1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from models.hashing import stable_hash
from models.history import _HASH_BYTES, _HASHES, _ROW_BYTES, _ROW_DTYPE, _WIDTH, History, _label
from stream.contracts.records import Transaction

__all__ = ["Columns", "check_windows", "gather", "scored_windows"]

_HASH_UNIT = np.dtype(f"V{_HASH_BYTES}")  # a hash row as one opaque unit (copied, never read)


class Columns(NamedTuple):
    """A batch of histories as arrays: row ``r`` is history ``r``'s last entries, right-aligned.

    ``ts``, ``amount`` and ``valid`` are ``[B, width + trailing]``, ``hashes``
    is ``[B, width + trailing, 4]`` (:data:`HASHED` order); entries fill the
    last ``lengths[r]`` of the first ``width`` columns, everything else is
    zero and not ``valid``. The ``trailing`` columns are for the caller (the
    sequence model puts the scored transaction there).
    """

    ts: npt.NDArray[np.int64]
    amount: npt.NDArray[np.float64]
    hashes: npt.NDArray[np.uint32]
    valid: npt.NDArray[np.bool_]
    lengths: npt.NDArray[np.int64]


def gather(histories: Sequence[History], width: int | None, trailing: int = 0) -> Columns:
    """The last ``width`` entries of each history as :class:`Columns`: what batch features are computed on.

    ``width`` None: every entry (the longest history's length).

    One ``bytes.join`` of the rows (and one of the category hashes) for the
    whole batch: a Python loop over entries was the slow part of scoring
    (docs/benchmark-history.md).

    >>> from models.history import append, new_history
    >>> from stream.contracts.records import Transaction
    >>> h = append(new_history(), Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos"), 32)
    >>> c = gather([h, new_history()], width=2, trailing=1)
    >>> c.ts.tolist(), c.valid.tolist(), c.lengths.tolist()
    ([[0, 1000, 0], [0, 0, 0]], [[False, True, False], [False, False, False]], [1, 0])
    """
    sizes = [len(h.labels) for h in histories]  # once, and not through History.__len__ (a Python call)
    if width is None:
        width = max(sizes, default=0)
    b, span = len(histories), width + trailing
    lengths = np.minimum(np.array(sizes, dtype=np.int64), width)
    row_parts: list[bytes] = []
    hash_parts: list[bytes] = []
    for h, k, size in zip(histories, lengths.tolist(), sizes, strict=True):
        if k == size:
            row_parts.append(h.rows)
            hash_parts.append(h.hash_rows)
        elif k:
            row_parts.append(h.rows[-_ROW_BYTES * k:])
            hash_parts.append(h.hash_rows[-_HASH_BYTES * k:])
    total = int(lengths.sum())
    # Flat positions of the entries: row r's k entries end at column width - 1.
    first = np.arange(b, dtype=np.int64) * span + width - lengths
    idx = np.repeat(first - (np.cumsum(lengths) - lengths), lengths) + np.arange(total, dtype=np.int64)
    ts = np.zeros(b * span, dtype=np.int64)
    amount = np.zeros(b * span, dtype=np.float64)
    # uint32, as the history keeps them: the sequence model's window features compare them over
    # [B, n, n] step pairs, in half the memory of int64.
    hashes = np.zeros((b * span, _WIDTH), dtype="<u4")  # (native on little-endian machines)
    valid = np.zeros(b * span, dtype=bool)
    if total:
        rows = np.frombuffer(b"".join(row_parts), dtype=_ROW_DTYPE)
        # Each field copied out of the packed (unaligned) rows first, then scattered: twice as fast as
        # scattering straight from the rows.
        ts[idx] = rows["ts"].copy()
        amount[idx] = rows["amount"].copy()
        # Scattered as 16-byte units: a scatter of [total, 4] uint32 rows took ten times as long.
        hashes.view(_HASH_UNIT).reshape(-1)[idx] = np.frombuffer(b"".join(hash_parts), dtype=_HASH_UNIT)
        valid[idx] = True
    return Columns(ts.reshape(b, span), amount.reshape(b, span), hashes.reshape(b, span, _WIDTH),
                   valid.reshape(b, span), lengths)


def scored_windows(histories: Sequence[History], transactions: Sequence[Transaction],
                   width: int | None = None) -> Columns:
    """Each history, then its scored transaction: the columns a micro-batch's models share.

    :func:`gather` of the last ``width`` entries (None: every entry, ``width``
    the longest history) with ``trailing=1``, that column holding
    ``transactions[r]`` (valid). The score
    agent gathers a batch once: the engineered features read the history
    columns and the transaction column, the sequence model the last ``n``
    columns (:func:`models.features.engineered_batch`, :func:`models.steps.step_tensors`).

    >>> from models.history import append, new_history
    >>> from stream.contracts.records import Transaction
    >>> t1 = Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 2_000, 35.0, "EUR", "m2", "5411", "FR", "pos")
    >>> w = scored_windows([append(new_history(), t1, 32), new_history()], [t2, t1])
    >>> w.ts.tolist(), w.valid.tolist(), w.lengths.tolist()
    ([[1000, 2000], [0, 1000]], [[True, True], [False, True]], [1, 0])
    """
    b = len(transactions)
    if len(histories) != b:
        raise ValueError(f"{len(histories)} histories for {b} transactions")
    cols = gather(histories, width, trailing=1)
    cols.ts[:, -1] = [t.event_time_ms for t in transactions]
    cols.amount[:, -1] = [t.amount for t in transactions]
    cols.hashes[:, -1] = np.frombuffer(b"".join([_hash_row(t) for t in transactions]), dtype="<u4").reshape(b, _WIDTH)
    cols.valid[:, -1] = True
    for column in cols:  # shared by every item of the batch, as views: nobody may write to them
        column.flags.writeable = False
    return cols


def check_windows(windows: Columns, histories: Sequence[History], transactions: Sequence[Transaction],
                  rows: Sequence[int] | None = None) -> None:
    """Raise ``ValueError`` unless ``windows`` belong to these histories and transactions.

    Rows ``rows`` of ``windows`` (default: all, in order) must hold these
    histories' entry counts and these transactions' event times. A cheap guard (two Python passes over the batch) against a window handle
    that belongs to another batch, or to other rows of this one, not a full
    comparison: the windows must be :func:`scored_windows` of these histories
    and transactions, every entry (``width`` None).
    """
    pick: slice | list[int] = slice(None) if rows is None else list(rows)
    lengths, times = windows.lengths[pick].tolist(), windows.ts[pick, -1].tolist()
    if (len(lengths) != len(histories) or lengths != [len(h) for h in histories]
            or times != [t.event_time_ms for t in transactions]):
        raise ValueError("windows are not scored_windows(histories, transactions) of these items: "
                         "their entry counts or transaction times differ")


def _hash_row(t: Transaction) -> bytes:
    """The :data:`HASHED` fields of ``t``, as a history's ``hash_rows`` keep its entry."""
    return _HASHES.pack(stable_hash(t.merchant_id), *_label(t.mcc, t.country, t.channel)[1])
