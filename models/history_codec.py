"""A card's history as its changelog record, and back: what the ``history`` table's codec writes and reads.

The record is a format byte (2), the entry count (uint16), the history's
``rows`` as they are (:mod:`models.history` keeps them packed so that
encoding is one ``join``), then the ``(mcc, country, channel)`` labels as
JSON. The category hashes are not stored: :func:`decode` recomputes them
from the labels, which keeps the record small and lets the hash function
change without a migration.

:func:`decode` also reads what earlier releases wrote (format 1: the same
values as columns; before it, a JSON list of entries), so an upgraded worker
recovers an old changelog. An older release cannot read the new records:
roll back with the changelog of that release, or rebuild it by replaying.

Example:
    >>> from models.history import append, new_history
    >>> from stream.contracts.records import Transaction
    >>> h = append(new_history(), Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos"), 32)
    >>> raw = encode(h)
    >>> raw[:3], len(raw)
    (b'\\x02\\x01\\x00', 52)
    >>> decode(raw) == h
    True
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from models.history import (
    _HASHES,
    _ROW,
    _ROW_BYTES,
    _ROW_DTYPE,
    AMOUNT,
    CHANNEL,
    COUNTRY,
    MCC,
    MERCHANT,
    TS,
    TXID,
    History,
    _label,
    _rows_of,
)
from stream.contracts.settings import MAX_HISTORY_ENTRIES

__all__ = ["MAX_ENTRIES", "decode", "encode"]

_FORMAT, _COLUMNS_FORMAT = 2, 1  # first byte of an encoded history: rows (now), columns (format 1)
_HEADER = struct.Struct("<BH")  # format, number of entries
#: Most entries an encoded history holds (its count is 16 bits; ``FRAUDSTREAM_HISTORY_LENGTH`` is held to it).
MAX_ENTRIES = MAX_HISTORY_ENTRIES


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
