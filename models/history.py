"""A card's recent transactions, oldest first, kept as packed rows: what the ``history`` table holds.

One :class:`History` per card, never changed in place: :func:`advance`
returns a new one (the score agent writes it back to the table). A history
is two ``bytes`` objects of fixed-size little-endian rows, one row per entry:
``rows`` holds the event time, amount, transaction hash and merchant hash
(28 bytes: ``<qdQI``), ``hash_rows`` the :data:`HASHED` fields (merchant,
MCC, country, channel: 16 bytes, ``<IIII``) that features and the sequence
model compare and embed. Each entry also points at one shared
``(mcc, country, channel)`` tuple of strings, for people (alert
explanations, the worker's history endpoint).

Why rows of bytes: appending a transaction is one concatenation of each
(the score agent does it for every transaction), a redelivery is one
``bytes`` search, the changelog record *is* ``rows`` plus the labels, and a
micro-batch's model inputs are gathered with two ``bytes.join`` and NumPy
views. They also take less Python heap per card than columns or a list of
entries did (docs/benchmark-history.md has the measurements).

Two neighbours read the same rows: :mod:`models.history_codec` turns a
history into its changelog record and back (old formats included), and
:mod:`models.history_windows` lays a batch of histories out as arrays for
the features and the sequence model.

Every time-based rule uses event time, never the wall clock, and a
redelivered transaction sees exactly the history it saw the first time.

Example:
    >>> from stream.contracts.records import Transaction
    >>> t1 = Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 2_000, 35.0, "EUR", "m2", "5411", "FR", "ecom")
    >>> h = append(append(new_history(), t1, limit=32), t2, limit=32)
    >>> len(h), list(h.amount), h[-1].channel
    (2, [20.0, 35.0], 'ecom')
    >>> prior_history(h, t2) == h[:1]  # t2 redelivered: scored against what it saw the first time
    True
"""

from __future__ import annotations

import bisect
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload

import numpy as np
import numpy.typing as npt

from models.hashing import category_hash, stable_hash, txid_hash
from stream.contracts.records import Transaction

__all__ = [
    "AMOUNT",
    "CHANNEL",
    "COUNTRY",
    "HASHED",
    "MCC",
    "MERCHANT",
    "TS",
    "TXID",
    "Entry",
    "History",
    "advance",
    "append",
    "new_history",
    "position_of",
    "prior_history",
]


class Entry(NamedTuple):
    """One transaction of a history, as people read it."""

    ts: int  # event time, epoch ms
    amount: float
    merchant: int  # stable_hash(merchant_id): merchants are many, their ids are not kept
    mcc: str
    country: str
    channel: str
    txid: int  # txid_hash(transaction_id): spots a redelivery


#: Field positions of :class:`Entry` (``entry[AMOUNT]``).
TS, AMOUNT, MERCHANT, MCC, COUNTRY, CHANNEL, TXID = range(7)

Labels = tuple[str, str, str]
_ROW = struct.Struct("<qdQI")  # event time, amount, transaction hash, merchant hash
# The HASHED fields. The merchant's is in both rows: the changelog record is the first (no
# category hashes: decode recomputes them), and gather scatters whole rows of the second.
_HASHES = struct.Struct("<IIII")
_ROW_BYTES, _HASH_BYTES = _ROW.size, _HASHES.size
_TXID_AT = struct.calcsize("<qd")  # offset of the transaction hash in a row
_TS = struct.Struct("<q")
_TXID = struct.Struct("<Q")
# The same rows as a NumPy record (packed, like the struct): what models.history_windows and the codec's old
# format convert through. The row layout is shared with those two modules (they import these names).
_ROW_DTYPE = np.dtype([("ts", "<i8"), ("amount", "<f8"), ("txid", "<u8"), ("merchant", "<u4")])
if _ROW_DTYPE.itemsize != _ROW_BYTES:
    raise ImportError("models.history: the row record and the row struct disagree")
# (mcc, country, channel) triples are few: every entry points at one shared tuple, and their hashes
# are computed once per triple.
_LABELS: dict[Labels, tuple[Labels, tuple[int, int, int]]] = {}
#: Category hashes kept per entry, in this order (the sequence model's STEP_CATEGORICAL order).
HASHED = ("merchant", "mcc", "country", "channel")
_WIDTH = len(HASHED)


def _label(mcc: str, country: str, channel: str) -> tuple[Labels, tuple[int, int, int]]:
    """The shared ``(mcc, country, channel)`` tuple and the three :func:`~models.hashing.category_hash` values."""
    key = (mcc, country, channel)
    shared = _LABELS.get(key)
    if shared is None:
        if len(_LABELS) > 1 << 16:  # bound it against a flood of junk values; entries keep theirs
            _LABELS.clear()
        shared = _LABELS[key] = ((sys.intern(mcc), sys.intern(country), sys.intern(channel)),
                                 (category_hash(mcc), category_hash(country), category_hash(channel)))
    return shared


class History:
    """A card's last transactions in event-time order, as packed rows (see the module docstring).

    ``rows`` and ``hash_rows`` are the entries' bytes, ``labels`` their
    ``(mcc, country, channel)`` strings. For reading, ``ts`` (int64 ms),
    ``amount`` (float64), ``txid`` (uint64) and ``hashes`` (uint32, the
    :data:`HASHED` fields, four per entry) give the values as new
    :class:`array.array` columns. Indexing gives an :class:`Entry`, slicing
    a :class:`History`.

    The constructor takes those columns: ``hashes`` as
    :func:`~models.hashing.stable_hash` / :func:`~models.hashing.category_hash`
    values, four per entry, kept as given.
    """

    __slots__ = ("hash_rows", "labels", "rows")

    rows: bytes
    hash_rows: bytes
    labels: tuple[Labels, ...]

    def __init__(self, ts: Sequence[int] = (), amount: Sequence[float] = (), txid: Sequence[int] = (),
                 hashes: Sequence[int] = (), labels: Sequence[Labels] = ()) -> None:
        k = len(labels)
        if not len(ts) == len(amount) == len(txid) == k or len(hashes) != _WIDTH * k:
            raise ValueError(f"history columns of lengths {[len(ts), len(amount), len(txid), len(hashes)]} "
                             f"for {k} entries (hashes: {_WIDTH} per entry)")
        # Through arrays: the same type and range checks as the columns earlier releases kept.
        four = np.frombuffer(array("I", hashes), dtype=np.uint32).reshape(k, _WIDTH)
        self.rows = _rows_of(np.frombuffer(array("q", ts), dtype=np.int64),
                             np.frombuffer(array("d", amount), dtype=np.float64),
                             np.frombuffer(array("Q", txid), dtype=np.uint64), four[:, 0])
        self.hash_rows = four.astype("<u4").tobytes()
        self.labels = tuple(_label(*x)[0] for x in labels)

    @classmethod
    def _of(cls, rows: bytes, hash_rows: bytes, labels: tuple[Labels, ...]) -> History:
        """Construct without the checks (rows this module built)."""
        h = object.__new__(cls)
        h.rows, h.hash_rows, h.labels = rows, hash_rows, labels
        return h

    def _records(self) -> np.ndarray:
        return np.frombuffer(self.rows, dtype=_ROW_DTYPE)

    @property
    def ts(self) -> array[int]:
        """Event times, epoch ms (a new array)."""
        return array("q", self._records()["ts"].tolist())

    @property
    def amount(self) -> array[float]:
        """Amounts (a new array)."""
        return array("d", self._records()["amount"].tolist())

    @property
    def txid(self) -> array[int]:
        """Transaction hashes, :func:`~models.hashing.txid_hash` (a new array)."""
        return array("Q", self._records()["txid"].tolist())

    @property
    def hashes(self) -> array[int]:
        """The :data:`HASHED` fields, four per entry (a new array)."""
        return array("I", np.frombuffer(self.hash_rows, dtype="<u4").tolist())

    def hashed(self, field: str) -> array[int]:
        """One of the :data:`HASHED` columns (a new array).

        >>> from stream.contracts.records import Transaction
        >>> h = append(new_history(), Transaction("t1", "c1", 1, 2.0, "EUR", "m1", "5411", "FR", "pos"), 32)
        >>> from models.hashing import category_hash
        >>> list(h.hashed("country")) == [category_hash("FR")]
        True
        """
        i = HASHED.index(field)
        return self.hashes[i::_WIDTH]

    def __len__(self) -> int:
        return len(self.labels)

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> History: ...
    def __getitem__(self, index: int | slice) -> Entry | History:
        if isinstance(index, slice):
            if index.step not in (None, 1):
                raise ValueError("a history slices into consecutive entries only")
            start, stop, _ = index.indices(len(self))
            stop = max(stop, start)
            return History._of(self.rows[_ROW_BYTES * start:_ROW_BYTES * stop],
                               self.hash_rows[_HASH_BYTES * start:_HASH_BYTES * stop], self.labels[start:stop])
        i = range(len(self))[index]  # IndexError as a sequence's
        ts, amount, txid, merchant = _ROW.unpack_from(self.rows, _ROW_BYTES * i)
        mcc, country, channel = self.labels[i]
        return Entry(ts, amount, merchant, mcc, country, channel, txid)

    def __iter__(self) -> Iterator[Entry]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        # Bit for bit: a -0.0 amount is not 0.0 here, and a NaN equals the same NaN.
        return self.labels == other.labels and self.rows == other.rows and self.hash_rows == other.hash_rows

    __hash__ = None  # type: ignore[assignment]  # equal by value, like the lists it replaces

    def __repr__(self) -> str:
        return f"History({[tuple(e) for e in self]!r})"


def _rows_of(ts: npt.ArrayLike, amount: npt.ArrayLike, txid: npt.ArrayLike, merchant: npt.ArrayLike) -> bytes:
    """Rows from columns of equal length."""
    ts = np.asarray(ts)
    out = np.empty(len(ts), dtype=_ROW_DTYPE)
    out["ts"], out["amount"], out["txid"], out["merchant"] = ts, amount, txid, merchant
    return out.tobytes()


_EMPTY = History()


def new_history() -> History:
    """An empty history (one shared instance: a history is never changed in place)."""
    return _EMPTY


def position_of(history: History, t: Transaction) -> int | None:
    """Index of ``t`` in ``history`` if it is already there (a redelivery); the last one if twice."""
    return _position(history.rows, txid_hash(t.transaction_id))


def _position(rows: bytes, h: int) -> int | None:
    # One search of the rows' bytes from the end (in C, no Python loop per entry); a match counts only where a
    # row keeps its transaction hash (the bytes may also turn up across other fields).
    needle = _TXID.pack(h)
    at = rows.rfind(needle)
    while at >= 0:
        if at % _ROW_BYTES == _TXID_AT:
            return at // _ROW_BYTES
        at = rows.rfind(needle, 0, at + len(needle) - 1)  # the next match may overlap this one
    return None


def prior_history(history: History, t: Transaction) -> History:
    """The part of ``history`` that precedes ``t`` in event time.

    A redelivered transaction (already in the history after an at-least-once
    replay) sees exactly the history it saw the first time, so its score and
    its alert are the same.
    """
    cut, _ = _place(history, t, txid_hash(t.transaction_id))
    # Immutable, so the usual in-order arrival shares the whole history as its prior.
    return history if cut == len(history) else history[:cut]


def _place(history: History, t: Transaction, h: int) -> tuple[int, bool]:
    """Where ``t`` (whose :func:`txid_hash` is ``h``) is (a redelivery) or goes in ``history``, and whether it is already there."""
    rows = history.rows
    pos = _position(rows, h)
    if pos is not None:
        return pos, True
    size = len(history.labels)
    if not size or _TS.unpack_from(rows, _ROW_BYTES * (size - 1))[0] <= t.event_time_ms:  # in order: the usual case
        return size, False
    times = [row[0] for row in _ROW.iter_unpack(rows)]
    return bisect.bisect_right(times, t.event_time_ms), False


def append(history: History, t: Transaction, limit: int) -> History:
    """Insert ``t`` in event-time order, skip a duplicate, keep the last ``limit``."""
    return advance(history, t, limit)[1]


def advance(history: History, t: Transaction, limit: int) -> tuple[History, History]:
    """``(prior_history(history, t), append(history, t, limit))`` with one search of ``history``.

    What the score agent does for every transaction: the history ``t`` is
    scored against, and the history kept after it. Ties in event time keep
    arrival order.

    >>> from stream.contracts.records import Transaction
    >>> t1 = Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 2_000, 35.0, "EUR", "m2", "5411", "FR", "pos")
    >>> prior, kept = advance(append(new_history(), t2, 32), t1, 32)  # t1 arrives late
    >>> len(prior), list(kept.amount)
    (0, [20.0, 35.0])
    >>> advance(kept, t2, 32)[0] == kept[:1]  # t2 redelivered: the history it had, nothing appended
    True
    """
    if limit < 1:
        raise ValueError(f"a history keeps at least one entry, got limit={limit}")
    h = txid_hash(t.transaction_id)
    cut, present = _place(history, t, h)
    size = len(history.labels)
    prior = history if cut == size else history[:cut]  # shared in the usual in-order case (never changed in place)
    if present:
        return prior, history
    drop = max(size + 1 - limit, 0)  # oldest entries beyond the limit (the new one counts)
    label, (mcc, country, channel) = _label(t.mcc, t.country, t.channel)
    merchant = stable_hash(t.merchant_id)
    row = _ROW.pack(t.event_time_ms, t.amount, h, merchant)
    hash_row = _HASHES.pack(merchant, mcc, country, channel)
    rows, hash_rows, labels = history.rows, history.hash_rows, history.labels
    if cut == size:  # in order, the usual case: one concatenation each (a slice of all is no copy)
        return prior, History._of(rows[_ROW_BYTES * drop:] + row, hash_rows[_HASH_BYTES * drop:] + hash_row,
                                  labels[drop:] + (label,))
    rows = rows[:_ROW_BYTES * cut] + row + rows[_ROW_BYTES * cut:]
    hash_rows = hash_rows[:_HASH_BYTES * cut] + hash_row + hash_rows[_HASH_BYTES * cut:]
    return prior, History._of(rows[_ROW_BYTES * drop:], hash_rows[_HASH_BYTES * drop:],
                              (*labels[:cut], label, *labels[cut:])[drop:])
