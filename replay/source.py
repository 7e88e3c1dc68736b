"""Read a CSV, Parquet or JSON Lines file into columns, with 1-based row numbers.

The replay maps *any* layout onto the transactions contract, so this module
does not interpret values: CSV cells stay strings (a reader that guessed types
would turn ``mcc`` 0742 into 742 and ids like ``00017`` into numbers); Parquet
keeps its own types; JSON Lines values keep their JSON types where a column is
uniform and become strings where it is mixed.

Rows that cannot be read at all (a CSV row with the wrong number of cells, a
JSON line that is not an object) are returned as :class:`Reject` s, never
dropped silently. Row numbers count data rows from 1: in CSV the header is not
a row; in JSON Lines the row number is the line number (blank lines are
skipped but still counted, so the number is what an editor shows).

Example:
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> path = os.path.join(d, "t.csv")
    >>> _ = open(path, "w").write("id,mcc\\nt1,0742\\nt2\\nt3,5411\\n")
    >>> src = open_source(path)
    >>> src.format, src.columns
    ('csv', ['id', 'mcc'])
    >>> data = src.read(["mcc"])
    >>> data.table.column("mcc").to_pylist(), data.row_number.tolist()
    (['0742', '5411'], [1, 3])
    >>> data.rejects
    [Reject(row=2, field='', reason='malformed_row', detail="expected 2 cells, got 1: 't2'")]
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

__all__ = ["FORMATS", "Reject", "Source", "SourceData", "SourceError", "file_digest", "guess_format", "open_source"]

#: Formats and the file suffixes that select them (``.gz`` is allowed after CSV and JSON Lines).
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "parquet": (".parquet", ".pq"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
}


class SourceError(ValueError):
    """The file cannot be read as a table at all (unknown format, unreadable, no columns)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A data row that was not replayed: 1-based ``row``, the ``field`` at fault, why.

    ``reason`` is a stable code (``malformed_row``, ``missing_value``,
    ``invalid_value``, ``invalid_amount``, ``invalid_timestamp``,
    ``timestamp_out_of_range``, ``invalid_label``, ``duplicate_id``,
    ``oversized``); ``detail`` says what was found.
    """

    row: int
    field: str
    reason: str
    detail: str

    def __str__(self) -> str:
        where = f" {self.field}" if self.field else ""
        return f"row {self.row}{where}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class SourceData:
    """The columns that were asked for, the row number of each table row, unreadable rows."""

    table: pa.Table
    row_number: npt.NDArray[np.int64]
    rejects: list[Reject] = field(default_factory=list)


def guess_format(path: str | Path) -> str:
    """The format its suffix implies (``.gz`` looked through).

    >>> guess_format("a/b.CSV.gz"), guess_format("x.parquet"), guess_format("e.ndjson")
    ('csv', 'parquet', 'jsonl')
    >>> guess_format("x.xlsx")
    Traceback (most recent call last):
    ...
    replay.source.SourceError: x.xlsx: cannot tell the format from suffix '.xlsx'; use --format csv|parquet|jsonl
    """
    name = Path(path).name.lower()
    stem = name.removesuffix(".gz")
    for fmt, suffixes in FORMATS.items():
        if stem.endswith(suffixes):
            return fmt
    raise SourceError(f"{path}: cannot tell the format from suffix {Path(stem).suffix!r}; "
                      "use --format csv|parquet|jsonl")


def file_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes (what a resume checks it is replaying the same data).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     file_digest(f.name)[:12]
    'e3b0c44298fc'
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Source:
    """One input file; :attr:`columns` before :meth:`read` so a mapping can be resolved."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self._jsonl: tuple[dict[str, list[Any]], list[int], list[Reject]] | None = None
        self.columns = self._columns()

    def _columns(self) -> list[str]:
        try:
            if self.format == "csv":
                return list(pa_csv.open_csv(self.path, parse_options=_csv_parse(lambda _: "skip")).schema.names)
            if self.format == "parquet":
                return list(pq.read_schema(self.path).names)
            return list(self._read_jsonl()[0])
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"{self.path}: cannot read as {self.format}: {exc}") from None

    def read(self, columns: Sequence[str]) -> SourceData:
        """Read ``columns`` (names from :attr:`columns`) for every readable row."""
        try:
            if self.format == "csv":
                return self._read_csv(list(columns))
            if self.format == "parquet":
                table = pq.read_table(self.path, columns=list(columns))
                return SourceData(table, np.arange(1, table.num_rows + 1, dtype=np.int64))
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"{self.path}: cannot read as {self.format}: {exc}") from None
        values, lines, rejects = self._read_jsonl()
        table = pa.table({name: _json_column(values[name]) for name in columns})
        return SourceData(table, np.asarray(lines, dtype=np.int64), list(rejects))

    def _read_csv(self, columns: list[str]) -> SourceData:
        bad: list[Any] = []

        def on_bad_row(row: Any) -> str:
            bad.append(row)
            return "skip"

        def read(threads: bool) -> pa.Table:
            bad.clear()
            return pa_csv.read_csv(
                self.path,
                read_options=pa_csv.ReadOptions(use_threads=threads),
                parse_options=_csv_parse(on_bad_row),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in columns}, include_columns=columns,
                    strings_can_be_null=False),
            )

        table = read(True)
        if bad:
            # Only the single-threaded reader knows where a bad row is; pay for
            # it only when the file has one.
            table = read(False)
        # Arrow numbers rows from 1 with the header as row 1.
        bad_rows = [int(b.number) - 1 for b in bad]
        rejects = [Reject(n, "", "malformed_row",
                          f"expected {b.expected_columns} cells, got {b.actual_columns}: {b.text[:80]!r}")
                   for n, b in zip(bad_rows, bad, strict=True)]
        keep = np.ones(table.num_rows + len(bad_rows) + 1, dtype=bool)
        keep[0] = False
        keep[bad_rows] = False
        return SourceData(table, np.flatnonzero(keep).astype(np.int64), rejects)

    def _read_jsonl(self) -> tuple[dict[str, list[Any]], list[int], list[Reject]]:
        if self._jsonl is None:
            with _open_text(self.path) as f:
                self._jsonl = _parse_jsonl(f)
        return self._jsonl


def open_source(path: str | Path, fmt: str | None = None) -> Source:
    """Open ``path`` as ``fmt`` (default: from the suffix, see :func:`guess_format`)."""
    path = Path(path)
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    return Source(path, fmt)


def _csv_parse(handler: Any) -> pa_csv.ParseOptions:
    return pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=handler)


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _parse_jsonl(lines: IO[str]) -> tuple[dict[str, list[Any]], list[int], list[Reject]]:
    """Columns (``None`` where a line lacks a key), line numbers of the rows, bad lines."""
    columns: dict[str, list[Any]] = {}
    numbers: list[int] = []
    rejects: list[Reject] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            rejects.append(Reject(number, "", "malformed_row", f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(obj, dict):
            rejects.append(Reject(number, "", "malformed_row", f"expected a JSON object, got {type(obj).__name__}"))
            continue
        n = len(numbers)
        for key, value in obj.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = [None] * n
            column.append(value)
        numbers.append(number)
        for column in columns.values():  # keys this line lacks
            if len(column) == n:
                column.append(None)
    if not columns and not rejects:
        raise SourceError("no JSON objects in the file")
    return columns, numbers, rejects


def _json_column(values: list[Any]) -> pa.Array:
    """An Arrow array of JSON values: typed when uniform, else strings (objects as JSON text).

    >>> _json_column([1, 2, None]).type, _json_column([1, "x", True]).to_pylist()
    (DataType(int64), ['1', 'x', 'true'])
    """
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())
