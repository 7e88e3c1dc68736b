"""Sources: CSV, Parquet and JSON Lines give the same rows; unreadable rows are reported."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from replay.generate import GeneratorConfig, generate
from replay.mapping import map_rows, resolve_mapping
from replay.source import SourceError, open_source
from stream.contracts.records import Limits
from stream.contracts.settings import Settings

LIMITS = Limits.from_settings(Settings())


def write_all(table: pa.Table, d: Path) -> list[Path]:
    pa_csv.write_csv(table, d / "t.csv")
    pq.write_table(table, d / "t.parquet")
    with open(d / "t.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in table.to_pylist())
    with gzip.open(d / "t.csv.gz", "wb") as g:
        g.write((d / "t.csv").read_bytes())
    return [d / "t.csv", d / "t.parquet", d / "t.jsonl", d / "t.csv.gz"]


def load(path: Path):
    source = open_source(path)
    mapping = resolve_mapping({}, source.columns)
    return map_rows(source.read(sorted(set(mapping.values()))), mapping, limits=LIMITS, now_ms=2_000_000_000_000)


def test_csv_parquet_and_jsonl_read_the_same_rows(tmp_path: Path) -> None:
    table = generate(GeneratorConfig(seed=3, n_transactions=500, n_cards=60, n_merchants=50))
    # a leading-zero mcc and an id that looks like a number must survive every format
    table = table.set_column(6, "mcc", pa.array(["0742"] + table["mcc"].to_pylist()[1:]))
    table = table.set_column(1, "card_id", pa.array(["000123"] + table["card_id"].to_pylist()[1:]))
    results = [load(p) for p in write_all(table, tmp_path)]
    first, _ = results[0]
    assert len(first) == 500 and first.optional["mcc"][0].as_py() == "0742"
    assert first.card_id[0].as_py() == "000123"
    for rows, rejects in results:
        assert rejects == []
        assert rows.transaction_id.equals(first.transaction_id) and rows.card_id.equals(first.card_id)
        assert np.array_equal(rows.time_ms, first.time_ms) and np.array_equal(rows.amount, first.amount)
        assert np.array_equal(rows.label, first.label)
        assert all(rows.optional[k].equals(first.optional[k]) for k in first.optional)
        assert rows.scenario.equals(first.scenario)


def test_malformed_csv_rows_are_rejects_with_their_data_row_number(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("transaction_id,card_id,timestamp,amount\n"
                    "t1,c1,1740830400000,5\n"
                    "t2,c1\n"
                    "\"t,3\",c1,1740830400000,6\n"
                    "t4,c1,1740830400000,7,extra\n"
                    "t5,c1,1740830400000,8\n")
    rows, rejects = load(path)
    assert rows.transaction_id.to_pylist() == ["t1", "t,3", "t5"]
    assert rows.row_number.tolist() == [1, 3, 5]
    assert [(r.row, r.reason) for r in rejects] == [(2, "malformed_row"), (4, "malformed_row")]
    assert "expected 4 cells, got 2" in rejects[0].detail


def test_jsonl_bad_lines_mixed_types_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"transaction_id": "t1", "card_id": 17, "timestamp": "2025-03-01T12:00:00Z", "amount": "5.00", "is_fraud": true}\n'
        "not json\n"
        "\n"
        '{"transaction_id": 2, "card_id": "c", "timestamp": 1740830400000, "amount": 6, "is_fraud": "legit"}\n'
        "[1, 2]\n"
        '{"transaction_id": "t3", "card_id": "c", "timestamp": 1740830400000, "is_fraud": 0}\n')
    rows, rejects = load(path)
    assert rows.transaction_id.to_pylist() == ["t1", "2"] and rows.card_id.to_pylist() == ["17", "c"]
    assert rows.label.tolist() == [1, 0] and rows.amount.tolist() == [5.0, 6.0]
    assert [(r.row, r.reason) for r in rejects] == [(2, "malformed_row"), (5, "malformed_row"), (6, "missing_value")]


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot tell the format"):
        open_source(tmp_path / "t.xlsx")
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "t.csv")
    (tmp_path / "t.txt").write_text("a,b\n1,2\n")
    assert open_source(tmp_path / "t.txt", "csv").columns == ["a", "b"]
