"""The experiment's offline parts: the honest split, the join of engine scores, a baselines-only run end to end.

The streamed part (sequence model, two engines, the broker) is the same replay and worker the broker tests
cover; it is too heavy for a unit test and runs with ``fraudstream experiment``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from replay.experiment import ExperimentConfig, cli, engine_scores, split
from replay.generate import SCENARIOS

DAY = 86_400_000


def test_training_takes_only_labels_known_at_the_cutoff() -> None:
    cfg = ExperimentConfig(days=20, test_days=5, label_delay_days=7)
    start = cfg.generator().start_ms
    cutoff = start + 15 * DAY
    times = [start, cutoff - 7 * DAY, cutoff - 7 * DAY + 1, cutoff - 1, cutoff, start + 20 * DAY - 1]
    rows = split(pa.table({"timestamp": times}), cfg)
    assert rows.cutoff_ms == cutoff
    # The label of cutoff - 7 days arrives exactly at the cutoff: known. A millisecond later: not yet.
    assert rows.train.tolist() == [True, True, False, False, False, False]
    assert rows.test.tolist() == [False, False, False, False, True, True]


def test_a_config_without_training_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="test_days must be within"):
        ExperimentConfig(days=10, test_days=10)
    with pytest.raises(ValueError, match="no label would be known when the test period starts"):
        ExperimentConfig(days=20, test_days=13, label_delay_days=7)
    assert ExperimentConfig(days=20, test_days=12, label_delay_days=7).test_days == 12


def test_engine_scores_join_by_transaction_first_delivery_wins() -> None:
    records = [
        {"transaction_id": "t2", "score": 0.4, "components": {"sequence": 0.1, "online": 0.4}},
        {"transaction_id": "t1", "score": 0.9, "components": {"online": 0.9}},
        {"transaction_id": "t2", "score": 0.8, "components": {"sequence": 0.7}},  # redelivered, later
    ]
    fused = engine_scores(records, ["t1", "t2", "t3"])
    assert fused[:2].tolist() == [0.9, 0.4] and math.isnan(fused[2])
    sequence = engine_scores(records, ["t1", "t2"], component="sequence")
    assert math.isnan(sequence[0]) and sequence[1] == 0.1


def test_a_baselines_only_run_prints_every_scenario_and_writes_results(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--rows", "12000", "--cards", "400", "--merchants", "400", "--days", "40", "--test-days", "12",
            "--gbt-rounds", "60", "--no-engines", "--out-dir", str(tmp_path)]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text() in printed
    board = results["scoreboard"]
    assert set(board) - {"overall"} <= set(SCENARIOS) and "compromised_terminal" in board
    for group, models in board.items():
        assert set(models) == {"baseline_lr", "baseline_gbt"}, group
        assert f"| {group} | baseline_gbt |" in printed
    overall = board["overall"]["baseline_gbt"]
    assert overall["n"] == results["test_period"]["rows"] and overall["n_fraud"] == results["test_period"]["frauds"]
    assert overall["roc_auc"] > 0.7  # far above chance
    assert overall["average_precision"] > 5 * overall["n_fraud"] / overall["n"]  # far above the fraud rate
    assert results["bars"] == dict.fromkeys(results["bars"])  # no engine, nothing to judge
    assert results["config"]["engines"] is False
    assert results["test_period"]["from_ms"] == ExperimentConfig(days=40, test_days=12).generator().start_ms + 28 * DAY
