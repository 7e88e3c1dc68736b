"""What evaluation reads: score records deduplicated (the first delivery wins), and label files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from replay.generate import write
from replay.inputs import Label, dedupe, load_labels
from tests.replay.test_evaluate import score


def test_dedupe_keeps_the_first_record() -> None:
    records = [score("t1", "a", 0, 0.2), score("t1", "a", 0, 0.9), score("t2", "b", 0, 0.4)]
    assert [r["score"] for r in dedupe(records)] == [0.2, 0.4]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_labels_reads_generated_files(tmp_path: Path, suffix: str) -> None:
    table = pa.table({"transaction_id": ["t1", "t2"], "card_id": ["a", "b"],
                      "is_fraud": pa.array([0, 1], pa.int8()), "scenario": ["", "card_testing"]})
    labels = load_labels(write(table, tmp_path / f"labels{suffix}"))
    assert labels == {"t1": Label(0, ""), "t2": Label(1, "card_testing")}


def test_load_labels_without_scenario_column(tmp_path: Path) -> None:
    path = write(pa.table({"transaction_id": ["t1"], "is_fraud": [1]}), tmp_path / "l.csv")
    assert load_labels(path) == {"t1": Label(1, "")}
    with pytest.raises(ValueError, match="is_fraud"):
        load_labels(write(pa.table({"transaction_id": ["t1"]}), tmp_path / "bad.csv"))
