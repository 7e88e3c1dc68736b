"""Training path: the sequence model's windows for every row of a labelled table.

The worker builds a card's history by :func:`models.history.append` in
arrival order and scores each transaction against
:func:`models.history.prior_history`. Replaying a file in timestamp order
(ties in file order), that history is exactly the card's earlier
transactions in ``(timestamp, file order)``, duplicates skipped, last
``history_length`` kept; the window is the last ``n - 1`` of them plus the
transaction itself. :class:`StepDataset` reproduces this with numpy: sort
rows by card, then for a row at sorted position ``p`` the window is
positions ``p-n+1 .. p`` of its card. Features then go through the same
:func:`models.steps.window_features` as serving. Assumes ``n - 1`` is at
most the worker's ``history_length``.

A duplicated ``transaction_id`` keeps its first row only: the worker scores
a redelivery against the history the first delivery saw (exactly the same
window while ``n`` is at most ``history_length``).

Example:
    >>> import pyarrow as pa
    >>> table = pa.table({"transaction_id": ["a", "b", "c", "b"], "card_id": ["x", "x", "y", "x"],
    ...                   "timestamp": [1000, 2000, 1500, 2000], "amount": [5.0, 7.0, 9.0, 7.0],
    ...                   "is_fraud": [0, 1, 0, 1]})
    >>> ds = StepDataset(normalise(table), StepSpec(n=3))
    >>> len(ds), ds.labels.tolist(), ds.tensors(np.arange(3))["mask"].int().tolist()
    (3, [0, 0, 1], [[1, 1, 0], [1, 1, 0], [1, 0, 0]])
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch

from models.hashing import category_hash, stable_hash
from models.steps import StepSpec, as_tensors, window_features

__all__ = ["CONTRACT_COLUMNS", "LABEL", "StepDataset", "file_sha256", "normalise", "read_table", "table_sha256"]

#: Transaction contract columns (``timestamp`` as epoch milliseconds).
CONTRACT_COLUMNS: tuple[str, ...] = (
    "transaction_id", "card_id", "timestamp", "amount", "currency", "merchant_id", "mcc", "country", "channel",
)
LABEL = "is_fraud"
# Same defaults as stream.contracts.records.parse_transaction for optional fields.
_DEFAULTS = {"currency": "XXX", "merchant_id": "", "mcc": "0000", "country": "ZZ", "channel": "unknown"}
_REQUIRED = ("transaction_id", "card_id", "timestamp", "amount")


def read_table(path: str | Path, columns: Mapping[str, str] | None = None) -> pa.Table:
    """Read CSV or Parquet; ``columns`` maps contract names to the file's names.

    String columns stay strings in CSV (an MCC like ``0742`` keeps its zero).
    """
    path = Path(path)
    mapping = dict(columns or {})
    suffix = path.suffix.lower()
    if suffix == ".csv":
        text_cols = [mapping.get(c, c) for c in CONTRACT_COLUMNS if c not in ("timestamp", "amount")]
        options = pa_csv.ConvertOptions(column_types={c: pa.string() for c in text_cols})
        table = pa_csv.read_csv(path, convert_options=options)
    elif suffix == ".parquet":
        table = pq.read_table(path)
    else:
        raise ValueError(f"{path}: unknown suffix {suffix!r}; use .csv or .parquet")
    return normalise(table, mapping)


def normalise(table: pa.Table, columns: Mapping[str, str] | None = None) -> pa.Table:
    """Contract names and types: rename, fill optional columns, timestamp to int64 ms."""
    mapping = dict(columns or {})
    out: dict[str, pa.ChunkedArray | pa.Array] = {}
    names = set(table.column_names)
    for name in (*CONTRACT_COLUMNS, LABEL):
        source = mapping.get(name, name)
        if source not in names:
            if name in _REQUIRED:
                raise ValueError(f"column {source!r} (for {name}) not found; have {sorted(names)}")
            if name in _DEFAULTS:
                out[name] = pa.array([_DEFAULTS[name]] * table.num_rows, pa.string())
            continue
        col = table[source]
        if name == "timestamp":
            col = _epoch_ms(col)
        elif name == "amount":
            col = col.cast(pa.float64())
        elif name == LABEL:
            col = col.cast(pa.int8())
        else:
            col = col.cast(pa.string())
            if name in _DEFAULTS:
                col = col.fill_null(_DEFAULTS[name])
        out[name] = col
    return pa.table(out)


def _epoch_ms(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_integer(col.type):
        return col.cast(pa.int64())
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            col = pc.cast(col, pa.timestamp("ms", tz="UTC"))
        except pa.ArrowInvalid:  # no offset in the text: naive means UTC, as in stream.contracts.records
            col = pc.cast(col, pa.timestamp("ms"))
    if pa.types.is_timestamp(col.type):
        return col.cast(pa.timestamp("ms", tz=col.type.tz)).cast(pa.int64())
    raise ValueError(f"timestamp column has type {col.type}; expected epoch ms, timestamp or RFC 3339 text")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (the training-data hash recorded in a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_sha256(table: pa.Table) -> str:
    """sha256 of a table's contents (Arrow IPC stream), for data not read from a file."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _codes(col: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], list[str]]:
    encoded = pc.dictionary_encode(col).combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _hashes(col: pa.ChunkedArray, merchant: bool) -> npt.NDArray[np.uint32]:
    codes, values = _codes(col)
    fn = stable_hash if merchant else category_hash  # merchants are many: no point caching them
    return np.asarray([fn(v) for v in values], dtype=np.uint32)[codes]  # CRC-32, as the history keeps them


class StepDataset:
    """Windows of every distinct transaction of a :func:`normalise`-d table.

    Rows are numbered in replay order (timestamp, then file order);
    ``source_rows[i]`` is row ``i``'s index in the input table.
    """

    def __init__(self, table: pa.Table, spec: StepSpec) -> None:
        self.spec = spec
        txid, _ = _codes(table["transaction_id"])
        first = np.unique(txid, return_index=True)[1]  # first delivery of each transaction id
        ts_all = table["timestamp"].to_numpy().astype(np.int64)
        keep = np.sort(first)
        self.source_rows = keep[np.argsort(ts_all[keep], kind="stable")]
        rows = pa.array(self.source_rows)
        sub = table.take(rows)
        self.ts = ts_all[self.source_rows]
        self.labels: npt.NDArray[np.int8] | None = (
            sub[LABEL].to_numpy().astype(np.int8) if LABEL in sub.column_names else None
        )
        card, _ = _codes(sub["card_id"])
        order = np.lexsort((np.arange(len(card)), card))  # by card, replay order within a card
        self._pos = np.empty(len(card), dtype=np.int64)
        self._pos[order] = np.arange(len(card))
        sorted_card = card[order]
        starts = np.flatnonzero(np.r_[True, sorted_card[1:] != sorted_card[:-1]])
        group = np.cumsum(np.r_[True, sorted_card[1:] != sorted_card[:-1]]) - 1
        self._start = np.empty(len(card), dtype=np.int64)
        self._start[order] = starts[group]
        self._ts = self.ts[order]
        self._amount = sub["amount"].to_numpy().astype(np.float64)[order]
        #: The rows' entity features (:meth:`with_entity_features`), or None: the model reads none.
        self.entity: npt.NDArray[np.float32] | None = None
        self.entity_names: tuple[str, ...] = ()
        self._sub = sub
        self._hashes = np.stack(
            [_hashes(sub["merchant_id"], True), _hashes(sub["mcc"], False),
             _hashes(sub["country"], False), _hashes(sub["channel"], False)], axis=1,
        )[order]

    def __len__(self) -> int:
        return len(self.ts)

    def arrays(
        self, rows: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """``(numeric, categorical, mask)`` for ``rows`` (replay-order indices)."""
        n = self.spec.n
        pos = self._pos[rows]
        idx = pos[:, None] - (n - 1) + np.arange(n)
        mask = idx < self._start[rows][:, None]
        idx = np.where(mask, pos[:, None], idx)  # padded steps read the row itself; zeroed later
        numeric, categorical = window_features(self._ts[idx], self._amount[idx], self._hashes[idx], mask, self.spec)
        return numeric, categorical, mask

    def tensors(self, rows: npt.NDArray[np.int64]) -> dict[str, torch.Tensor]:
        """Same dict as :func:`models.steps.step_tensors` for ``rows``, with ``entity`` as
        :func:`models.steps.entity_tensor` gives it when the dataset has entity features."""
        rows = np.asarray(rows, dtype=np.int64)
        x = as_tensors(*self.arrays(rows))
        if self.entity is not None:
            x["entity"] = torch.from_numpy(self.entity[rows])
        return x

    def with_entity_features(self, label_delay_ms: int) -> None:
        """Give every row its terminal's features (``merchant_id``) as the engine computes them.

        The same fold as the engine's entity stage (:func:`models.profile_fold.fold_entity_features`), in event
        time, each label counting on the terminal from ``timestamp + label_delay_ms`` (its ``labelled_at``), so a
        row never sees a label that had not arrived when it happened. Rows without a label column: none count.

        >>> import pyarrow as pa
        >>> t = pa.table({"transaction_id": ["a", "b"], "card_id": ["x", "y"], "timestamp": [0, 60_000],
        ...               "amount": [5.0, 7.0], "merchant_id": ["m", "m"], "is_fraud": [1, 0]})
        >>> ds = StepDataset(normalise(t), StepSpec(n=3)); ds.with_entity_features(label_delay_ms=1_000)
        >>> ds.entity_names[9], ds.entity[:, 9].tolist()  # merchant_fraud_30d: b sees a's label (known at 1 s)
        ('merchant_fraud_30d', [0.0, 0.6931471824645996])
        """
        from models.profile_features import entity_feature_names
        from models.profile_fold import fold_entity_features

        sub = self._sub
        merchants = [m or "" for m in sub["merchant_id"].to_pylist()]
        labels = [] if self.labels is None else [
            (i, int(t) + label_delay_ms, bool(f)) for i, (t, f) in enumerate(zip(self.ts, self.labels, strict=True))]
        folded = fold_entity_features(merchants, sub["card_id"].to_pylist(), self.ts.tolist(),
                                      sub["amount"].to_pylist(), labels)
        self.entity = folded.astype(np.float32)
        self.entity_names = entity_feature_names("merchant_id")
