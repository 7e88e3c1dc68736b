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
(the score agent does it for every transaction; the four ``array`` columns
of the previous release took four copies and four appends), a redelivery
is one ``bytes`` search, the changelog record *is* ``rows`` plus the labels
(:func:`encode`), and the sequence model's inputs are gathered with two
``bytes.join`` per micro-batch and NumPy views (:func:`gather`). With 4,000
cards of 27 entries a card's history takes 1.7 kB of Python heap (2.1 kB as
columns, 5.4 kB as the list of entries earlier releases kept; ``tracemalloc``).

:func:`decode` also reads what earlier releases wrote (format 1: the same
values as columns; before it, a JSON list of entries), so an upgraded worker
recovers an old changelog. An older release cannot read the new records:
roll back with the changelog of that release, or rebuild it by replaying.

Every time-based rule uses event time, never the wall clock, and a
redelivered transaction sees exactly the history it saw the first time.

Example:
    >>> from stream.contracts.records import Transaction
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
from stream.contracts.records import Transaction
from stream.contracts.settings import MAX_HISTORY_ENTRIES

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
_ROW = struct.Struct("<qdQI")  # event time, amount, transaction hash, merchant hash
# The HASHED fields. The merchant's is in both rows: the changelog record is the first (no
# category hashes: decode recomputes them), and gather scatters whole rows of the second.
_HASHES = struct.Struct("<IIII")
_ROW_BYTES, _HASH_BYTES = _ROW.size, _HASHES.size
_HASH_UNIT = np.dtype(f"V{_HASH_BYTES}")  # a hash row as one opaque unit (copied, never read)
_TXID_AT = struct.calcsize("<qd")  # offset of the transaction hash in a row
_TS = struct.Struct("<q")
_TXID = struct.Struct("<Q")
# The same rows as a NumPy record (packed, like the struct): what gather and the old format convert through.
_ROW_DTYPE = np.dtype([("ts", "<i8"), ("amount", "<f8"), ("txid", "<u8"), ("merchant", "<u4")])
if _ROW_DTYPE.itemsize != _ROW_BYTES:
    raise ImportError("models.history: the row record and the row struct disagree")
# (mcc, country, channel) triples are few: every entry points at one shared tuple, and their hashes
# are computed once per triple.
_LABELS: dict[Labels, tuple[Labels, tuple[int, int, int]]] = {}
_FORMAT, _COLUMNS_FORMAT = 2, 1  # first byte of an encoded history: rows (now), columns (format 1)
_HEADER = struct.Struct("<BH")  # format, number of entries
#: Most entries an encoded history holds (its count is 16 bits; ``FRAUDSTREAM_HISTORY_LENGTH`` is held to it).
MAX_ENTRIES = MAX_HISTORY_ENTRIES
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
    whole batch (a Python loop over entries cost ~25 µs per transaction).

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


def position_of(history: History, t: Transaction) -> int | None:
    """Index of ``t`` in ``history`` if it is already there (a redelivery); the last one if twice."""
    return _position(history.rows, txid_hash(t.transaction_id))


def _position(rows: bytes, h: int) -> int | None:
    # One search of the rows' bytes from the end (~0.1 µs for 32 entries); a match counts only where a
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


def encode(history: History) -> bytes:
    """The changelog record of ``history``.

    A format byte (2), the entry count (uint16), the rows (28 bytes each,
    little-endian: event time int64, amount float64, transaction hash uint64,
    merchant hash uint32), then the labels as JSON
    (``[["5411","FR","pos"], ...]``). The category hashes are not stored:
    :func:`decode` recomputes them from the labels. About 50 bytes an entry.
    """
    k = len(history.labels)
    if k > MAX_ENTRIES:
        raise ValueError(f"a history record holds at most {MAX_ENTRIES} entries, got {k}")
    return b"".join((_HEADER.pack(_FORMAT, k), history.rows, orjson.dumps(history.labels)))


def decode(raw: bytes) -> History:
    """Inverse of :func:`encode`; also reads what earlier releases wrote (columns, format 1; a JSON list of entries).

    Raises ``ValueError`` with what is wrong for anything else.

    >>> decode(b'[[1000, 20.0, 7, "5411", "FR", "pos", 9]]')[0]
    Entry(ts=1000, amount=20.0, merchant=7, mcc='5411', country='FR', channel='pos', txid=9)
    >>> decode(b"\\x02\\x05\\x00")
    Traceback (most recent call last):
    ...
    ValueError: history record of 3 bytes is shorter than its 5 entries need (145 bytes)
    """
    if raw[:1] == b"[":
        return _from_entries(orjson.loads(raw))
    if len(raw) < _HEADER.size or raw[0] not in (_FORMAT, _COLUMNS_FORMAT):
        raise ValueError(f"not a history record: starts with {bytes(raw[:3])!r}")
    fmt, k = _HEADER.unpack_from(raw)
    end = _HEADER.size + _ROW_BYTES * k
    if len(raw) < end + 2:
        raise ValueError(f"history record of {len(raw)} bytes is shorter than its {k} entries need ({end + 2} bytes)")
    if fmt == _FORMAT:
        rows = bytes(raw[_HEADER.size:end])
    else:  # format 1: the same values, column after column
        columns = []
        offset = _HEADER.size
        for code, size in (("<i8", 8), ("<f8", 8), ("<u8", 8), ("<u4", 4)):
            columns.append(np.frombuffer(raw, dtype=code, count=k, offset=offset))
            offset += size * k
        rows = _rows_of(*columns)
    labels = orjson.loads(raw[end:])
    if not isinstance(labels, list) or len(labels) != k or not all(
            isinstance(x, list) and len(x) == 3 and all(isinstance(s, str) for s in x) for x in labels):
        raise ValueError(f"history record's labels are not {k} [mcc, country, channel] string triples")
    return _build(rows, labels)


def _build(rows: bytes, labels: Sequence[Sequence[str]]) -> History:
    """A history from its stored parts: the category hashes come from the labels."""
    shared = [_label(*x) for x in labels]
    merchants = np.frombuffer(rows, dtype=_ROW_DTYPE)["merchant"].tolist()
    hash_rows = b"".join([_HASHES.pack(m, *hashes) for m, (_, hashes) in zip(merchants, shared, strict=True)])
    return History._of(rows, hash_rows, tuple([label for label, _ in shared]))


def _from_entries(entries: Any) -> History:
    """A history from earlier releases' JSON: ``[[ts, amount, merchant_hash, mcc, country, channel, txid], ...]``."""
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 7 for e in entries):
        raise ValueError("history JSON is not a list of 7-field entries")
    try:
        rows = b"".join([_ROW.pack(int(e[TS]), float(e[AMOUNT]), int(e[TXID]), int(e[MERCHANT])) for e in entries])
        return _build(rows, [(str(e[MCC]), str(e[COUNTRY]), str(e[CHANNEL])) for e in entries])
    except (TypeError, OverflowError, struct.error) as exc:
        raise ValueError(f"history JSON has an entry of the wrong types: {exc}") from exc
