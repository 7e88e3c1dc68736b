"""The experiment's scoreboard: figures per scenario against all legitimate rows, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from replay.scoreboard import Rows, bars, format_scoreboard, scoreboard

# Four legitimate rows, two frauds of scenario "a", one of "b"; one day, one card each.
Y = [0, 0, 0, 0, 1, 1, 1]
SCENARIO = ["", "", "", "", "a", "a", "b"]
S = [0.1, 0.2, 0.3, 0.6, 0.7, 0.25, 0.05]
ROWS = Rows(y=np.array(Y), scenario=np.array(SCENARIO), card=np.array([f"c{i}" for i in range(7)]),
            day=np.zeros(7, dtype=int))


def test_each_scenario_is_ranked_against_every_legitimate_row_and_no_other_fraud() -> None:
    board = scoreboard(ROWS, {"m": np.array(S)}, k=2)
    assert list(board) == ["overall", "a", "b"]
    # a: 0.7 beats all 4 legit, 0.25 beats 2 of 4 -> (4 + 2) / 8. b's 0.05 does not take part.
    assert board["a"]["m"]["roc_auc"] == 6 / 8
    assert board["a"]["m"]["n"] == 6 and board["a"]["m"]["n_fraud"] == 2
    # a, ranked: 0.7 (fraud), 0.6, 0.3, 0.25 (fraud): precision 1 at recall 1/2, 2/4 at recall 1.
    assert board["a"]["m"]["average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert board["b"]["m"]["roc_auc"] == 0.0
    # Overall: pairs won 4 + 2 + 0 of 12.
    assert board["overall"]["m"]["roc_auc"] == 6 / 12
    # Card precision@2 of the single day: the two best cards are 0.7 (fraud) and 0.6 (legit).
    assert board["overall"]["m"]["card_precision_at_k"] == 0.5
    assert board["a"]["m"]["card_precision_at_k"] == 0.5


def test_card_precision_is_the_mean_of_the_days() -> None:
    rows = Rows(y=np.array([1, 0, 0, 1]), scenario=np.array(["a", "", "", "a"]), card=np.array(["x", "y", "x", "y"]),
                day=np.array([0, 0, 1, 1]))
    board = scoreboard(rows, {"m": np.array([0.9, 0.1, 0.8, 0.2])}, k=1)
    # Day 0: x (fraud) first; day 1: x (legit that day) first -> (1 + 0) / 2.
    assert board["overall"]["m"]["card_precision_at_k"] == 0.5


def test_rows_without_a_score_are_left_out_and_counted() -> None:
    s = np.array(S)
    s[[0, 5]] = np.nan  # a legit row and a fraud of a
    board = scoreboard(ROWS, {"m": s}, k=2)
    assert board["a"]["m"]["n"] == 4 and board["a"]["m"]["missing"] == 2
    assert board["a"]["m"]["roc_auc"] == 1.0  # 0.7 above the three legit rows left
    assert board["overall"]["m"]["missing"] == 2


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="scores of m: 3 values for 7 rows"):
        scoreboard(ROWS, {"m": np.zeros(3)})
    with pytest.raises(ValueError, match="must be equally long"):
        scoreboard(Rows(y=np.zeros(2), scenario=np.array([""]), card=np.array(["a", "b"]), day=np.zeros(2)), {})


def board_of(terminal_auc: float, fused: float, gbt: float, sequence: float, online: float) -> dict:
    return {"overall": {"fused": {"average_precision": fused}, "baseline_gbt": {"average_precision": gbt},
                        "sequence": {"average_precision": sequence}, "online": {"average_precision": online}},
            "compromised_terminal": {"fused": {"roc_auc": terminal_auc}}}


def test_bars_are_at_least_not_more_than() -> None:
    assert bars(board_of(0.85, 0.4, 0.4, 0.4, 0.4)) == {
        "compromised_terminal_auc": True, "fused_ap_vs_baseline": True, "fused_ap_vs_components": True}
    assert bars(board_of(0.849, 0.39, 0.4, 0.3, 0.41)) == {
        "compromised_terminal_auc": False, "fused_ap_vs_baseline": False, "fused_ap_vs_components": False}
    assert bars({"overall": {"baseline_gbt": {"average_precision": 0.3}}}) == {
        "compromised_terminal_auc": None, "fused_ap_vs_baseline": None, "fused_ap_vs_components": None}


def test_the_table_has_a_line_per_scenario_and_model() -> None:
    text = format_scoreboard(scoreboard(ROWS, {"m": np.array(S), "n": np.array(S)[::-1].copy()}, k=2), k=2)
    lines = text.splitlines()
    assert lines[0] == "| fraud | model | frauds | ROC AUC | average precision | card precision@2 |"
    assert len(lines) == 2 + 3 * 2
    assert "| a | m | 2 | 0.750 | 0.750 | 0.500 |" in lines
