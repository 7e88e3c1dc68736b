"""Column mapping: any layout onto the transactions contract, bad rows reported with row numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from replay.mapping import MappingError, load_mapping, map_rows, parse_pairs, resolve_mapping, write_rejects
from replay.plan import LabelPolicy, plan
from replay.source import SourceData, open_source
from stream.contracts.records import InvalidRecord, Limits, parse_transaction
from stream.contracts.settings import Settings

LIMITS = Limits.from_settings(Settings())
T0_S = 1_740_830_400  # 2025-03-01T12:00:00Z


def mapped(table: pa.Table, pairs: list[str], unit: str = "ms"):
    data = SourceData(table, np.arange(1, table.num_rows + 1))
    return map_rows(data, resolve_mapping(parse_pairs(pairs), table.column_names), unit=unit, limits=LIMITS)


OTHER_LAYOUT = ["transaction_id=txn_ref", "card_id=pan_token", "timestamp=event_ts", "amount=amt",
                "currency=ccy", "mcc=category", "label=fraud_flag"]


def test_other_column_names_and_epoch_seconds_map_onto_the_contract() -> None:
    table = pa.table({
        "txn_ref": ["a1", "a2"], "pan_token": ["p9", "p8"], "event_ts": [T0_S, T0_S + 90],
        "amt": [12.5, 7.0], "ccy": ["EUR", "SEK"], "category": [742, 5411], "fraud_flag": [True, False],
        "ignored": ["x", "y"],
    })
    rows, rejects = mapped(table, OTHER_LAYOUT, unit="s")
    assert rejects == []
    assert rows.transaction_id.to_pylist() == ["a1", "a2"]
    assert rows.card_id.to_pylist() == ["p9", "p8"]
    assert rows.time_ms.tolist() == [T0_S * 1000, (T0_S + 90) * 1000]
    assert rows.amount.tolist() == [12.5, 7.0]
    assert rows.optional["mcc"].to_pylist() == ["0742", "5411"]  # integer column: leading zero restored
    assert rows.optional["currency"].to_pylist() == ["EUR", "SEK"]
    assert set(rows.optional) == {"currency", "mcc"}  # unmapped optional fields are left to the engine
    assert rows.label.tolist() == [1, 0]


def test_bad_rows_are_reported_with_row_number_and_reason_and_good_rows_still_map() -> None:
    table = pa.table({
        "txn_ref": ["g1", "b2", "b3", "b4", "b5", "b6", "", "g8", "b9"],
        "pan_token": ["p1", "", "p3", "p4", "p5", "p6", "p7", "p8", "p9"],
        "event_ts": [str(T0_S), str(T0_S), str(T0_S), "yesterday", str(T0_S), str(T0_S), str(T0_S),
                     "2025-03-01T13:00:00+01:00", str(T0_S)],
        "amt": ["12.50", "1", "abc", "3", "-0.5", "4", "5", " 6 ", "-2"],
        "ccy": ["EUR"] * 9,
        "category": ["5411"] * 9,
        "fraud_flag": ["fraud", "legit", "1", "0", "TRUE", "maybe", "false", "Legit", "0"],
    })
    rows, rejects = mapped(table, OTHER_LAYOUT, unit="s")
    assert rows.transaction_id.to_pylist() == ["g1", "g8"]
    assert rows.time_ms.tolist() == [T0_S * 1000, T0_S * 1000]  # 13:00+01:00 is 12:00Z
    assert rows.amount.tolist() == [12.5, 6.0]
    assert rows.row_number.tolist() == [1, 8]
    assert [(r.row, r.field, r.reason) for r in rejects] == [
        (2, "card_id", "missing_value"),
        (3, "amount", "invalid_amount"),
        (4, "timestamp", "invalid_timestamp"),
        (5, "amount", "invalid_amount"),
        (6, "label", "invalid_label"),
        (7, "transaction_id", "missing_value"),
        (9, "amount", "invalid_amount"),
    ]
    by_row = {r.row: r for r in rejects}
    assert "'abc'" in by_row[3].detail and ">= 0, got '-0.5'" in by_row[5].detail and "'maybe'" in by_row[6].detail
    assert "'yesterday'" in by_row[4].detail
    assert str(by_row[2]) == "row 2 card_id: missing_value: column 'pan_token' has no value"


def test_seconds_read_as_milliseconds_are_out_of_range_with_a_hint() -> None:
    table = pa.table({"transaction_id": ["t1"], "card_id": ["c"], "timestamp": [T0_S], "amount": [1.0]})
    rows, rejects = mapped(table, [])
    assert len(rows) == 0
    assert rejects[0].reason == "timestamp_out_of_range" and "--timestamp-unit s" in rejects[0].detail


def test_future_and_duplicate_and_too_long_values_are_rejected() -> None:
    table = pa.table({
        "transaction_id": ["t1", "t2", "t1", "t4"], "card_id": ["c", "c", "c", "c" * 129],
        "timestamp": [T0_S * 1000, (T0_S + 10**9) * 1000, T0_S * 1000, T0_S * 1000], "amount": [1.0] * 4,
    })
    _, rejects = mapped(table, [])
    assert [(r.row, r.reason) for r in rejects] == [
        (2, "timestamp_out_of_range"), (3, "duplicate_id"), (4, "invalid_value")]
    assert "already on row 1" in rejects[1].detail


def test_what_replay_sends_is_what_the_engine_accepts_and_limits_agree() -> None:
    """Values at the contract's bounds: mapping and stream.contracts.records.parse_transaction decide alike."""
    ids = ["x" * 128, "y" * 129, "z1", "z2", "z3", "z4"]
    amounts = [1e9, 1.0, 1e9 + 1, 0.01, 5.0, 5.0]
    stamps = [T0_S * 1000, T0_S * 1000, T0_S * 1000, T0_S * 1000, 946_684_800_000 - 1, 946_684_800_000]
    table = pa.table({"transaction_id": ids, "card_id": ["c"] * 6, "timestamp": stamps, "amount": amounts,
                      "merchant_id": ["m", "", "m", None, "m", "m"]})
    rows, rejects = mapped(table, [])
    rejected = {r.row for r in rejects}
    assert rejected == {2, 3, 5}
    for n, (i, a, t) in enumerate(zip(ids, amounts, stamps, strict=True), start=1):
        raw = json.dumps({"transaction_id": i, "card_id": "c", "timestamp": t, "amount": a}).encode()
        try:
            parse_transaction(raw, LIMITS)
            engine_accepts = True
        except InvalidRecord:
            engine_accepts = False
        assert engine_accepts == (n not in rejected), n
    for event in plan(rows, LabelPolicy()).events():
        parsed = parse_transaction(json.dumps(event.value).encode(), LIMITS)
        assert parsed.transaction_id == event.value["transaction_id"]
    sent = [e.value for e in plan(rows, LabelPolicy()).events()]
    assert "merchant_id" not in sent[2]  # null: field left out, the engine's default applies


def test_mapping_files_json_and_lines(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"transaction_id": "ref", "label": null}')
    (tmp_path / "m.txt").write_text("# bank export\ntransaction_id = ref\n\nlabel=   # no labels\n")
    assert load_mapping(tmp_path / "m.json") == load_mapping(tmp_path / "m.txt") == {"transaction_id": "ref", "label": ""}
    (tmp_path / "bad.txt").write_text("transaction_id=ref\ncolour=red\n")
    with pytest.raises(MappingError, match=r"bad.txt:2: unknown field 'colour'"):
        load_mapping(tmp_path / "bad.txt")


def test_resolve_errors_name_the_field_and_the_columns() -> None:
    with pytest.raises(MappingError, match=r"amount=amt: the file has no column 'amt' \(columns: t, card_id, ts\)"):
        resolve_mapping({"amount": "amt", "transaction_id": "t", "timestamp": "ts"}, ["t", "card_id", "ts"])
    with pytest.raises(MappingError, match="required field 'card_id' has no column: it is mapped to nothing"):
        resolve_mapping({"card_id": ""}, ["transaction_id", "card_id", "timestamp", "amount"])
    cols = ["transaction_id", "card_id", "timestamp", "amount", "is_fraud"]
    assert "label" in resolve_mapping({}, cols) and "label" not in resolve_mapping({"label": ""}, cols)


def test_unusable_column_type_is_a_mapping_error() -> None:
    table = pa.table({"transaction_id": ["t"], "card_id": ["c"], "timestamp": [T0_S * 1000], "amount": [True]})
    with pytest.raises(MappingError, match="amount: column 'amount' has type bool"):
        mapped(table, [])


def test_parquet_timestamp_type_and_rfc3339_strings(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    stamps = pa.array([T0_S * 1000, T0_S * 1000 + 1500], pa.timestamp("ms", tz="UTC"))
    pq.write_table(pa.table({"transaction_id": ["a", "b"], "card_id": ["c", "c"], "timestamp": stamps,
                             "amount": ["1", "2.5"]}), tmp_path / "t.parquet")
    source = open_source(tmp_path / "t.parquet")
    rows, rejects = map_rows(source.read(source.columns), resolve_mapping({}, source.columns), limits=LIMITS)
    assert rejects == [] and rows.time_ms.tolist() == [T0_S * 1000, T0_S * 1000 + 1500]


def test_write_rejects_csv(tmp_path: Path) -> None:
    table = pa.table({"transaction_id": ["t1", "t2"], "card_id": ["c", "c"],
                      "timestamp": [T0_S * 1000] * 2, "amount": ["1", "x,y"]})
    _, rejects = mapped(table, [])
    assert write_rejects(tmp_path / "r.csv", rejects) == 1
    assert (tmp_path / "r.csv").read_text().splitlines() == [
        "row,field,reason,detail", "2,amount,invalid_amount,\"amount 'x,y' is not a finite number\""]
