"""Map a file's columns onto the transactions contract, row by row, with reasons.

A mapping names, for each contract field, the file column that holds it:
``{"transaction_id": "txn_ref", "timestamp": "event_ts"}``. Fields not named
map to a column of the same name when the file has one; ``label`` defaults to
``is_fraud`` and ``scenario`` to ``scenario``; mapping a field to ``""``
leaves it out (``label=`` replays without labels). A mapping comes from
``--map FIELD=COLUMN`` flags or a file (a JSON object, or ``FIELD=COLUMN``
lines with ``#`` comments); flags win.

:func:`map_rows` converts column-wise (numpy and Arrow, so a million rows take
seconds) and applies the rules of :func:`stream.contracts.records.parse_transaction`:
ids of 1-128 characters, amount finite, > 0 and <= 1e9, event time within the
engine's ``Limits``, optional strings of at most 128 characters. A row that
breaks one is a :class:`~replay.source.Reject` with its row number, the field
and why (the first problem found, in contract field order); the other rows go
on. Timestamps may be epoch numbers (``unit`` ``ms`` or ``s``), digit
strings, RFC 3339 strings or Parquet timestamps. Labels may be 1/0,
true/false or fraud/legit, any case.

Example:
    >>> from replay.source import SourceData
    >>> table = pa.table({"ref": ["a1", "a2", "a3"], "acct": ["c1", "", "c1"],
    ...                   "ts": [1740830400, 1740830460, 1740830520],
    ...                   "amt": ["12.50", "3", "-1"], "fraud": ["legit", "fraud", "yes"]})
    >>> data = SourceData(table, np.array([1, 2, 3]))
    >>> mapping = resolve_mapping(parse_pairs(["transaction_id=ref", "card_id=acct",
    ...     "timestamp=ts", "amount=amt", "label=fraud"]), table.column_names)
    >>> rows, rejects = map_rows(data, mapping, unit="s", limits=Limits(65536, 0, 86_400_000))
    >>> rows.transaction_id.to_pylist(), rows.time_ms.tolist(), rows.amount.tolist(), rows.label.tolist()
    (['a1'], [1740830400000], [12.5], [0])
    >>> for r in rejects: print(r)
    row 2 card_id: missing_value: column 'acct' has no value
    row 3 amount: invalid_amount: amount must be >= 0, got '-1'
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from replay.source import Reject, SourceData
from stream.contracts.records import Limits, format_rfc3339, parse_rfc3339_ms

__all__ = [
    "FIELDS", "OPTIONAL", "REQUIRED", "MappingError", "Rows",
    "load_mapping", "map_rows", "parse_pairs", "resolve_mapping", "write_rejects",
]

REQUIRED = ("transaction_id", "card_id", "timestamp", "amount")
OPTIONAL = ("currency", "merchant_id", "mcc", "country", "channel", "device_id", "ip", "account_id")
#: Every field a mapping may name, in the order rows are checked.
FIELDS = (*REQUIRED, *OPTIONAL, "label", "scenario")
_DEFAULT_COLUMN = {"label": "is_fraud"}
# The contract's bounds (stream.contracts.records keeps them private; tests check parity).
_MAX_LEN = 128
_MAX_AMOUNT = 1e9
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LABELS = {"1": 1, "0": 0, "true": 1, "false": 0, "fraud": 1, "legit": 0}
# Bytes of a transaction record besides its string values (names, quotes, number
# fields); with the values it bounds the record size the engine checks.
_RECORD_OVERHEAD = 200


class MappingError(ValueError):
    """The mapping cannot apply to the file at all (unknown field, absent column, unusable type)."""


@dataclass(frozen=True)
class Rows:
    """The rows that map, in file order, as columns.

    ``optional`` holds the mapped optional fields (null = leave the field out,
    the engine applies its default); ``label`` is 1/0 per row, or ``None``
    when the file has no label column.
    """

    row_number: npt.NDArray[np.int64]
    transaction_id: pa.Array
    card_id: pa.Array
    time_ms: npt.NDArray[np.int64]
    amount: npt.NDArray[np.float64]
    optional: dict[str, pa.Array]
    label: npt.NDArray[np.int8] | None
    scenario: pa.Array | None

    def __len__(self) -> int:
        return len(self.time_ms)


def parse_pairs(pairs: Iterable[str], origin: str = "--map") -> dict[str, str]:
    """``FIELD=COLUMN`` strings to a mapping.

    >>> parse_pairs(["card_id=pan_hash", "label="])
    {'card_id': 'pan_hash', 'label': ''}
    >>> parse_pairs(["amount"])
    Traceback (most recent call last):
    ...
    replay.mapping.MappingError: --map 'amount': expected FIELD=COLUMN
    """
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep:
            raise MappingError(f"{origin} {pair!r}: expected FIELD=COLUMN")
        mapping[_field(name.strip(), origin)] = column.strip()
    return mapping


def load_mapping(path: str | Path) -> dict[str, str]:
    """A mapping file: a JSON object, or ``FIELD=COLUMN`` lines (``#`` starts a comment)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingError(f"{path}: not valid JSON: {exc}") from None
        if not all(isinstance(v, str | None) for v in obj.values()):
            raise MappingError(f"{path}: every value must be a column name (string) or null")
        return {_field(k, str(path)): v or "" for k, v in obj.items()}
    lines = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), 1)]
    return {k: v for n, line in lines if line for k, v in parse_pairs([line], f"{path}:{n}").items()}


def resolve_mapping(mapping: Mapping[str, str], columns: Sequence[str]) -> dict[str, str]:
    """Field -> column for every field that maps; raise :class:`MappingError` when one cannot.

    >>> resolve_mapping({"card_id": "pan"}, ["transaction_id", "pan", "timestamp", "amount", "mcc"])
    {'transaction_id': 'transaction_id', 'card_id': 'pan', 'timestamp': 'timestamp', 'amount': 'amount', 'mcc': 'mcc'}
    >>> resolve_mapping({}, ["id", "card_id", "timestamp", "amount"])
    Traceback (most recent call last):
    ...
    replay.mapping.MappingError: required field 'transaction_id' has no column: the file has none named 'transaction_id'; add --map transaction_id=COLUMN (columns: id, card_id, timestamp, amount)
    """
    present = set(columns)
    listing = ", ".join(columns)
    resolved: dict[str, str] = {}
    for name in FIELDS:
        column = mapping.get(name, _DEFAULT_COLUMN.get(name, name))
        if column in present:
            resolved[name] = column
        elif name in mapping and column:
            raise MappingError(f"{name}={column}: the file has no column {column!r} (columns: {listing})")
        elif name in REQUIRED:
            why = "it is mapped to nothing" if name in mapping else f"the file has none named {column!r}"
            raise MappingError(f"required field {name!r} has no column: {why}; "
                               f"add --map {name}=COLUMN (columns: {listing})")
    return resolved


def map_rows(data: SourceData, mapping: Mapping[str, str], *, unit: str = "ms",
             limits: Limits, now_ms: int | None = None) -> tuple[Rows, list[Reject]]:
    """Convert and check every row; return the good ones and a reject per bad one.

    ``now_ms`` is the wall clock for the future-skew check (a resume passes the
    first run's, so the same rows pass both times).
    """
    if unit not in ("ms", "s"):
        raise MappingError(f"timestamp unit must be ms or s, got {unit!r}")
    check = _Checker(np.asarray(data.row_number), mapping)
    col = {name: data.table.column(column).combine_chunks() for name, column in mapping.items()}
    ids = {name: check.text(col[name], name, required=True) for name in ("transaction_id", "card_id")}
    now = int(time.time() * 1000) if now_ms is None else now_ms
    times = check.timestamp(col["timestamp"], 1000 if unit == "s" else 1, limits, now)
    amount = check.amount(col["amount"])
    optional = {n: check.text(col[n], n, required=False) for n in OPTIONAL if n in col}
    label = check.label(col["label"]) if "label" in col else None
    scenario = pc.fill_null(check.text(col["scenario"], "scenario", False), "") if "scenario" in col else None
    size = sum((pc.fill_null(pc.binary_length(a), 0).to_numpy(zero_copy_only=False)
                for a in (*ids.values(), *optional.values())), np.full(len(times), _RECORD_OVERHEAD))
    check.add(size > limits.max_bytes, "", "oversized",
              lambda i: f"record of about {size[i]} bytes exceeds the {limits.max_bytes}-byte limit")
    check.duplicates(ids["transaction_id"])
    good = ~check.bad
    keep = pa.array(good)

    def kept(a: pa.Array) -> pa.Array:
        return a if not check.bad.any() else a.filter(keep)  # no copy of a clean file

    rows = Rows(
        row_number=np.asarray(data.row_number)[good], transaction_id=kept(ids["transaction_id"]),
        card_id=kept(ids["card_id"]), time_ms=times[good], amount=amount[good],
        optional={n: kept(a) for n, a in optional.items()},
        label=None if label is None else label[good], scenario=None if scenario is None else kept(scenario),
    )
    rejects = [Reject(int(data.row_number[i]), f, reason, detail) for i, f, reason, detail in check.found]
    return rows, sorted([*data.rejects, *rejects], key=lambda r: r.row)


def write_rejects(path: str | Path, rejects: Iterable[Reject]) -> int:
    """Write ``row,field,reason,detail`` CSV; return the number written."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["row", "field", "reason", "detail"])
        n = 0
        for r in rejects:
            out.writerow([r.row, r.field, r.reason, r.detail])
            n += 1
    return n


def _field(name: str, origin: str) -> str:
    if name not in FIELDS:
        raise MappingError(f"{origin}: unknown field {name!r}; fields: {', '.join(FIELDS)}")
    return name


class _Checker:
    """Converts columns and keeps the first problem of each row."""

    def __init__(self, row_number: npt.NDArray[np.int64], mapping: Mapping[str, str]) -> None:
        self.row_number = row_number
        self.bad = np.zeros(len(row_number), dtype=bool)
        self.found: list[tuple[int, str, str, str]] = []
        self.mapping = mapping

    def add(self, mask: npt.NDArray[np.bool_], name: str, reason: str, detail: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask & ~self.bad):
            self.found.append((int(i), name, reason, detail(int(i))))
        self.bad |= mask

    def _missing(self, arr: pa.Array, name: str) -> None:
        empty = pc.is_null(arr)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            empty = pc.or_kleene(empty, pc.equal(pc.utf8_trim_whitespace(arr), ""))
        self.add(_np(empty), name, "missing_value", lambda _: f"column {self.mapping[name]!r} has no value")

    def _type_error(self, arr: pa.Array, name: str, expected: str) -> MappingError:
        return MappingError(f"{name}: column {self.mapping[name]!r} has type {arr.type}; expected {expected}")

    def text(self, arr: pa.Array, name: str, required: bool) -> pa.Array:
        if pa.types.is_integer(arr.type):
            arr = pc.cast(arr, pa.string())
            if name == "mcc":  # a number column lost the leading zeros of 4-digit codes
                arr = pc.utf8_lpad(arr, 4, "0")
        elif not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            raise self._type_error(arr, name, "strings or integers")
        if required:
            self._missing(arr, name)
        length = _np(pc.fill_null(pc.utf8_length(arr), 0))
        self.add(length > _MAX_LEN, name, "invalid_value",
                 lambda i: f"{name} is {length[i]} characters, more than {_MAX_LEN}")
        return pc.cast(arr, pa.string())

    def timestamp(self, arr: pa.Array, scale: int, limits: Limits, now_ms: int) -> npt.NDArray[np.int64]:
        self._missing(arr, "timestamp")
        n = len(arr)
        if pa.types.is_timestamp(arr.type):
            value = _np(pc.cast(pc.cast(arr, pa.timestamp("ms", arr.type.tz)), pa.int64()), 0).astype(float)
        elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            value = _np(pc.cast(arr, pa.float64()), 0.0) * scale
        elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            try:  # fast path: a CSV column of epoch numbers
                value = _np(pc.cast(pc.utf8_trim_whitespace(arr), pa.float64()), 0.0) * scale
            except pa.ArrowInvalid:
                value = np.zeros(n)
                for i, text in enumerate(arr.to_pylist()):
                    if text and text.strip():
                        value[i] = _time_value(text.strip(), scale)
        else:
            raise self._type_error(arr, "timestamp", "epoch numbers, RFC 3339 strings or timestamps")
        raw = lambda i: arr[i].as_py()  # read only for the rows reported
        self.add(~np.isfinite(value), "timestamp", "invalid_timestamp",
                 lambda i: f"{raw(i)!r} is neither epoch {'seconds' if scale == 1000 else 'milliseconds'} nor RFC 3339")
        value = np.nan_to_num(value, nan=0.0, posinf=0.0, neginf=0.0)
        hint = " (epoch seconds? use --timestamp-unit s)" if scale == 1 else ""
        self.add(value < limits.min_time_ms, "timestamp", "timestamp_out_of_range",
                 lambda i: f"{raw(i)!r} is before {format_rfc3339(limits.min_time_ms)}"
                           f"{hint if 0 < value[i] < 1e11 else ''}")
        horizon = now_ms + limits.max_future_skew_ms
        self.add(value > horizon, "timestamp", "timestamp_out_of_range",
                 lambda i: f"{raw(i)!r} is after {format_rfc3339(horizon)} (now + allowed skew)")
        return np.where(self.bad, 0, np.round(value)).astype(np.int64)

    def amount(self, arr: pa.Array) -> npt.NDArray[np.float64]:
        self._missing(arr, "amount")
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
            value = _np(pc.cast(arr, pa.float64()), 0.0)
        elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            trimmed = pc.utf8_trim_whitespace(arr)
            try:  # fast path: the whole column is numbers
                value = _np(pc.cast(trimmed, pa.float64()), 0.0)
            except pa.ArrowInvalid:
                value = np.array([float(t) if t and _NUMBER.fullmatch(t) else (0.0 if not t else math.nan)
                                  for t in trimmed.to_pylist()])
        else:
            raise self._type_error(arr, "amount", "numbers or decimal strings")
        raw = lambda i: arr[i].as_py()
        self.add(~np.isfinite(value), "amount", "invalid_amount", lambda i: f"amount {raw(i)!r} is not a finite number")
        self.add(value < 0, "amount", "invalid_amount", lambda i: f"amount must be >= 0, got {raw(i)!r}")
        self.add(value > _MAX_AMOUNT, "amount", "invalid_amount", lambda i: f"amount {raw(i)!r} exceeds {_MAX_AMOUNT:.0e}")
        return value

    def label(self, arr: pa.Array) -> npt.NDArray[np.int8]:
        self._missing(arr, "label")
        if pa.types.is_boolean(arr.type) or pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
            value = _np(pc.cast(arr, pa.float64()), 0.0)
        elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            words = pc.utf8_lower(pc.utf8_trim_whitespace(arr)).to_pylist()
            value = np.array([_LABELS.get(w, -1) if w else 0 for w in words], dtype=float)
        else:
            raise self._type_error(arr, "label", "1/0, true/false or fraud/legit")
        self.add((value != 0) & (value != 1), "label", "invalid_label",
                 lambda i: f"{arr[i].as_py()!r} is not 1/0, true/false or fraud/legit")
        return (value == 1).astype(np.int8)

    def duplicates(self, ids: pa.Array) -> None:
        codes = _np(pc.fill_null(ids.dictionary_encode().indices, -1), -1)
        good = np.flatnonzero(~self.bad)
        _, first = np.unique(codes[good], return_index=True)
        repeat = np.ones(len(codes), dtype=bool)
        repeat[good[first]] = False
        repeat[self.bad] = False
        first_row = {int(codes[good[j]]): int(self.row_number[good[j]]) for j in first}
        self.add(repeat, "transaction_id", "duplicate_id",
                 lambda i: f"transaction_id {ids[i].as_py()!r} is already on row {first_row[int(codes[i])]}")


def _time_value(text: str, scale: int) -> float:
    """Epoch ms from a digit string (times ``scale``) or RFC 3339; NaN if neither."""
    if _NUMBER.fullmatch(text):
        return float(text) * scale
    try:
        return float(parse_rfc3339_ms(text))
    except (ValueError, OverflowError):
        return math.nan


def _np(arr: pa.Array, fill: object = None) -> np.ndarray:
    if fill is not None:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False)
