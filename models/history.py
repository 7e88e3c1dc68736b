"""A card's recent transactions, oldest first, kept as columns: what the ``history`` table holds.

One :class:`History` per card, never changed in place: :func:`advance`
returns a new one (the score agent writes it back to the table). The columns
are :class:`array.array`: event times, amounts, transaction hashes, and the
merchant / MCC / country / channel hashes that features and the sequence
model compare and embed, with no Python object per value. Each entry also
points at one shared ``(mcc, country, channel)`` tuple of strings, for people
(alert explanations, the worker's history endpoint).

Why columns and not a list of entries (what earlier releases kept): with
4,000 cards of 27 entries on average a card's history takes 2.3 kB instead of
5.4 kB of Python objects (``tracemalloc``); the sequence model's inputs are
gathered with one ``bytes.join`` per column per micro-batch instead of a
Python loop over every entry; and the changelog record is the columns' bytes
(:func:`encode`, 1.4 kB against 2.0 kB of JSON). :func:`decode` also reads
the JSON lists earlier releases wrote, so an upgraded worker recovers an old
changelog (an older release cannot read the new records: roll back with the
changelog of that release, or rebuild it by replaying).

Every time-based rule uses event time, never the wall clock, and a
redelivered transaction sees exactly the history it saw the first time.

Example:
    >>> from stream.records import Transaction
    >>> t1 = Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 2_000, 35.0, "EUR", "m2", "5411", "FR", "ecom")
    >>> h = append(append(new_history(), t1, limit=32), t2, limit=32)
    >>> len(h), list(h.amount), h[-1].channel
    (2, [20.0, 35.0], 'ecom')
    >>> decode(encode(h)) == h
    True
"""

from __future__ import annotations

import bisect
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt
import orjson

from models.hashing import category_hash, stable_hash, txid_hash
from stream.records import Transaction

__all__ = [
    "AMOUNT",
    "CHANNEL",
    "COUNTRY",
    "HASHED",
    "MAX_ENTRIES",
    "MCC",
    "MERCHANT",
    "TS",
    "TXID",
    "Columns",
    "Entry",
    "History",
    "advance",
    "append",
    "check_windows",
    "decode",
    "encode",
    "gather",
    "hashes_of",
    "new_history",
    "position_of",
    "prior_history",
    "scored_windows",
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
# (mcc, country, channel) triples are few: every entry points at one shared tuple.
_LABELS: dict[Labels, Labels] = {}
_FORMAT = 1  # first byte of an encoded history
_HEADER = struct.Struct("<BH")  # format, number of entries
#: Most entries an encoded history holds (its count is 16 bits; ``FRAUDSTREAM_HISTORY_LENGTH`` is held to it).
MAX_ENTRIES = 0xFFFF
_LITTLE = sys.byteorder == "little"
#: Category hashes kept per entry, in this order (the sequence model's STEP_CATEGORICAL order).
HASHED = ("merchant", "mcc", "country", "channel")
_WIDTH = len(HASHED)
if array("I").itemsize != 4:  # CRC-32 values; 'I' is 4 bytes on every platform Python supports today
    raise ImportError("models.history needs array typecode 'I' to be 4 bytes")


def _labels(mcc: str, country: str, channel: str) -> Labels:
    key = (mcc, country, channel)
    shared = _LABELS.get(key)
    if shared is None:
        if len(_LABELS) > 1 << 16:  # bound it against a flood of junk values; entries keep theirs
            _LABELS.clear()
        shared = _LABELS[key] = (sys.intern(mcc), sys.intern(country), sys.intern(channel))
    return shared


class History:
    """A card's last transactions in event-time order, as columns (see the module docstring).

    ``ts`` (int64 ms), ``amount`` (float64) and ``txid`` (uint64) have one
    value per entry; ``hashes`` (uint32) has four, the entry's
    :data:`HASHED` fields as :func:`~models.hashing.stable_hash` /
    :func:`~models.hashing.category_hash` (one array instead of four: the
    sequence model gathers them together, and each array costs its own
    header); ``labels`` holds each entry's ``(mcc, country, channel)``
    strings. Indexing gives an :class:`Entry`, slicing a :class:`History`.
    """

    __slots__ = ("amount", "hashes", "labels", "ts", "txid")

    ts: array[int]
    amount: array[float]
    txid: array[int]
    hashes: array[int]
    labels: tuple[Labels, ...]

    def __init__(self, ts: Sequence[int] = (), amount: Sequence[float] = (), txid: Sequence[int] = (),
                 hashes: Sequence[int] = (), labels: Sequence[Labels] = ()) -> None:
        k = len(labels)
        if not len(ts) == len(amount) == len(txid) == k or len(hashes) != _WIDTH * k:
            raise ValueError(f"history columns of lengths {[len(ts), len(amount), len(txid), len(hashes)]} "
                             f"for {k} entries (hashes: {_WIDTH} per entry)")
        self.ts, self.amount, self.txid = array("q", ts), array("d", amount), array("Q", txid)
        self.hashes = array("I", hashes)
        self.labels = tuple(_labels(*x) for x in labels)

    @classmethod
    def _of(cls, ts: array[int], amount: array[float], txid: array[int], hashes: array[int],
            labels: tuple[Labels, ...]) -> History:
        """Construct without the checks and copies (columns this module built)."""
        h = object.__new__(cls)
        h.ts, h.amount, h.txid, h.hashes, h.labels = ts, amount, txid, hashes, labels
        return h

    def hashed(self, field: str) -> array[int]:
        """One of the :data:`HASHED` columns (a copy).

        >>> from stream.records import Transaction
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
            return History._of(self.ts[start:stop], self.amount[start:stop], self.txid[start:stop],
                               self.hashes[_WIDTH * start:_WIDTH * stop], self.labels[start:stop])
        mcc, country, channel = self.labels[index]
        return Entry(self.ts[index], self.amount[index], self.hashes[_WIDTH * range(len(self))[index]], mcc, country,
                     channel, self.txid[index])

    def __iter__(self) -> Iterator[Entry]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return (self.labels == other.labels and self.ts == other.ts and self.amount == other.amount
                and self.txid == other.txid and self.hashes == other.hashes)

    __hash__ = None  # type: ignore[assignment]  # equal by value, like the lists it replaces

    def __repr__(self) -> str:
        return f"History({[tuple(e) for e in self]!r})"


_EMPTY = History()


def new_history() -> History:
    """An empty history (one shared instance: a history is never changed in place)."""
    return _EMPTY


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

    One ``bytes.join`` per column for the whole batch (a Python loop over
    entries cost ~25 µs per transaction).

    >>> from stream.records import Transaction
    >>> h = append(new_history(), Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos"), 32)
    >>> c = gather([h, new_history()], width=2, trailing=1)
    >>> c.ts.tolist(), c.valid.tolist(), c.lengths.tolist()
    ([[0, 1000, 0], [0, 0, 0]], [[False, True, False], [False, False, False]], [1, 0])
    """
    sizes = [len(h) for h in histories]  # once: History.__len__ is a Python call
    if width is None:
        width = max(sizes, default=0)
    b, span = len(histories), width + trailing
    lengths = np.minimum(np.array(sizes, dtype=np.int64), width)
    ts_parts: list[array[int]] = []
    amount_parts: list[array[float]] = []
    hash_parts: list[array[int]] = []
    for h, k, size in zip(histories, lengths.tolist(), sizes, strict=True):
        if k == size:
            ts_parts.append(h.ts)
            amount_parts.append(h.amount)
            hash_parts.append(h.hashes)
        elif k:
            ts_parts.append(h.ts[-k:])
            amount_parts.append(h.amount[-k:])
            hash_parts.append(h.hashes[-_WIDTH * k:])
    total = int(lengths.sum())
    # Flat positions of the entries: row r's k entries end at column width - 1.
    first = np.arange(b, dtype=np.int64) * span + width - lengths
    idx = np.repeat(first - (np.cumsum(lengths) - lengths), lengths) + np.arange(total, dtype=np.int64)
    ts = np.zeros(b * span, dtype=np.int64)
    amount = np.zeros(b * span, dtype=np.float64)
    # uint32, as the history keeps them: the sequence model's window features compare them over
    # [B, n, n] step pairs, in half the memory of int64.
    hashes = np.zeros((b * span, _WIDTH), dtype=np.uint32)
    valid = np.zeros(b * span, dtype=bool)
    if total:
        ts[idx] = np.frombuffer(b"".join(ts_parts), dtype=np.int64)
        amount[idx] = np.frombuffer(b"".join(amount_parts), dtype=np.float64)
        hashes[idx] = np.frombuffer(b"".join(hash_parts), dtype=np.uint32).reshape(total, _WIDTH)
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

    >>> from stream.records import Transaction
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
    cols.hashes[:, -1] = np.array([hashes_of(t) for t in transactions], dtype=np.uint32).reshape(b, _WIDTH)
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


def hashes_of(t: Transaction) -> tuple[int, int, int, int]:
    """The :data:`HASHED` fields of ``t``, as its history entry keeps them."""
    return stable_hash(t.merchant_id), category_hash(t.mcc), category_hash(t.country), category_hash(t.channel)


def position_of(history: History, t: Transaction) -> int | None:
    """Index of ``t`` in ``history`` if it is already there (a redelivery); the last one if twice."""
    return _position(history.txid, txid_hash(t.transaction_id))


def _position(txids: array[int], h: int) -> int | None:
    # A substring search of the column's bytes first (~0.3 µs for 32 entries, where `h in txids`
    # makes a Python int of every entry, ~0.6): a hit may straddle two entries, so it is confirmed.
    if h.to_bytes(8, sys.byteorder) not in txids.tobytes() or h not in txids:  # the usual case: not there
        return None
    return len(txids) - 1 - txids[::-1].index(h)


def prior_history(history: History, t: Transaction) -> History:
    """The part of ``history`` that precedes ``t`` in event time.

    A redelivered transaction (already in the history after an at-least-once
    replay) sees exactly the history it saw the first time, so its score and
    its alert are the same.
    """
    cut, _ = _place(history, t)
    # Immutable, so the usual in-order arrival shares the whole history as its prior.
    return history if cut == len(history) else history[:cut]


def _place(history: History, t: Transaction, h: int | None = None) -> tuple[int, bool]:
    """Where ``t`` (whose :func:`txid_hash` is ``h``) is (a redelivery) or goes in ``history``, and whether it is already there."""
    pos = _position(history.txid, txid_hash(t.transaction_id) if h is None else h)
    if pos is not None:
        return pos, True
    ts = history.ts
    if not ts or ts[-1] <= t.event_time_ms:  # in order: the usual case
        return len(ts), False
    return bisect.bisect_right(ts, t.event_time_ms), False


def append(history: History, t: Transaction, limit: int) -> History:
    """Insert ``t`` in event-time order, skip a duplicate, keep the last ``limit``."""
    return advance(history, t, limit)[1]


def advance(history: History, t: Transaction, limit: int) -> tuple[History, History]:
    """``(prior_history(history, t), append(history, t, limit))`` with one search of ``history``.

    What the score agent does for every transaction: the history ``t`` is
    scored against, and the history kept after it. Ties in event time keep
    arrival order.

    >>> from stream.records import Transaction
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
    size = len(history)
    prior = history if cut == size else history[:cut]  # shared in the usual in-order case (never changed in place)
    if present:
        return prior, history
    drop = max(size + 1 - limit, 0)  # oldest entries beyond the limit (the new one counts)
    label = _labels(t.mcc, t.country, t.channel)
    if cut == size:  # in order, the usual case: copies that drop the oldest, then one append each
        ts, amount, txid = history.ts[drop:], history.amount[drop:], history.txid[drop:]
        ts.append(t.event_time_ms)
        amount.append(t.amount)
        txid.append(h)
        hashes = history.hashes[_WIDTH * drop:]
        hashes.extend(hashes_of(t))
        return prior, History._of(ts, amount, txid, hashes, history.labels[drop:] + (label,))
    ts = _insert(history.ts, (t.event_time_ms,), cut, drop)
    amount = _insert(history.amount, (t.amount,), cut, drop)
    txid = _insert(history.txid, (h,), cut, drop)
    hashes = _insert(history.hashes, hashes_of(t), cut, drop)
    labels = (*history.labels[:cut], label, *history.labels[cut:])[drop:]
    return prior, History._of(ts, amount, txid, hashes, labels)


def _insert(column: array[Any], values: tuple[Any, ...], cut: int, drop: int) -> array[Any]:
    """A copy of ``column`` with one entry's ``values`` at entry ``cut`` and the first ``drop`` entries gone.

    For a late transaction (:func:`advance` appends in-order ones itself).
    """
    width = len(values)
    new = column[:width * cut]
    new.extend(values)
    new.extend(column[width * cut:])
    if drop:
        del new[:width * drop]
    return new


def _little(column: array[Any]) -> array[Any]:
    if _LITTLE:
        return column
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped


def encode(history: History) -> bytes:
    """The changelog record of ``history``.

    A format byte, the entry count (uint16), then little-endian columns:
    event times (int64), amounts (float64), transaction hashes (uint64) and
    merchant hashes (uint32), then the labels as JSON
    (``[["5411","FR","pos"], ...]``). The category hashes are not stored:
    :func:`decode` recomputes them from the labels. About 50 bytes an entry.
    """
    if len(history) > MAX_ENTRIES:
        raise ValueError(f"a history record holds at most {MAX_ENTRIES} entries, got {len(history)}")
    return b"".join((_HEADER.pack(_FORMAT, len(history)), _little(history.ts), _little(history.amount),
                     _little(history.txid), _little(history.hashes[0::_WIDTH]), orjson.dumps(history.labels)))


def decode(raw: bytes) -> History:
    """Inverse of :func:`encode`; also reads the JSON list of entries earlier releases wrote.

    Raises ``ValueError`` with what is wrong for anything else.

    >>> decode(b'[[1000, 20.0, 7, "5411", "FR", "pos", 9]]')[0]
    Entry(ts=1000, amount=20.0, merchant=7, mcc='5411', country='FR', channel='pos', txid=9)
    >>> decode(b"\\x01\\x05\\x00")
    Traceback (most recent call last):
    ...
    ValueError: history record of 3 bytes is shorter than its 5 entries need (145 bytes)
    """
    if raw[:1] == b"[":
        return _from_entries(orjson.loads(raw))
    if len(raw) < _HEADER.size or raw[0] != _FORMAT:
        raise ValueError(f"not a history record: starts with {bytes(raw[:3])!r}")
    _, k = _HEADER.unpack_from(raw)
    end = _HEADER.size + 28 * k
    if len(raw) < end + 2:
        raise ValueError(f"history record of {len(raw)} bytes is shorter than its {k} entries need ({end + 2} bytes)")
    columns = []
    offset = _HEADER.size
    for code, size in (("q", 8), ("d", 8), ("Q", 8), ("I", 4)):
        column = array(code)
        column.frombytes(raw[offset:offset + size * k])
        columns.append(_little(column))
        offset += size * k
    labels = orjson.loads(raw[end:])
    if not isinstance(labels, list) or len(labels) != k or not all(
            isinstance(x, list) and len(x) == 3 and all(isinstance(s, str) for s in x) for x in labels):
        raise ValueError(f"history record's labels are not {k} [mcc, country, channel] string triples")
    ts, amount, txid, merchant = columns
    return _build(ts, amount, txid, merchant, labels)


def _build(ts: array[int], amount: array[float], txid: array[int], merchant: Sequence[int],
           labels: Sequence[Sequence[str]]) -> History:
    """A history from its stored parts: the category hashes come from the labels."""
    shared = tuple(_labels(*x) for x in labels)
    hashes = array("I")
    for m, (mcc, country, channel) in zip(merchant, shared, strict=True):
        hashes.extend((m, category_hash(mcc), category_hash(country), category_hash(channel)))
    return History._of(ts, amount, txid, hashes, shared)


def _from_entries(entries: Any) -> History:
    """A history from earlier releases' JSON: ``[[ts, amount, merchant_hash, mcc, country, channel, txid], ...]``."""
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 7 for e in entries):
        raise ValueError("history JSON is not a list of 7-field entries")
    try:
        return _build(array("q", [int(e[TS]) for e in entries]), array("d", [float(e[AMOUNT]) for e in entries]),
                      array("Q", [int(e[TXID]) for e in entries]), [int(e[MERCHANT]) for e in entries],
                      [(str(e[MCC]), str(e[COUNTRY]), str(e[CHANNEL])) for e in entries])
    except (TypeError, OverflowError) as exc:
        raise ValueError(f"history JSON has an entry of the wrong types: {exc}") from exc
