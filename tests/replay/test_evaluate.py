"""Detection metrics and the score/label join, checked against hand-computed values."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from replay.evaluate import (
    Label,
    average_precision,
    card_precision_at_k,
    cli,
    compute_curves,
    dedupe,
    evaluate,
    known_compromised,
    latency_percentiles,
    load_labels,
    load_scores_jsonl,
    precision_recall_curve,
    recall_at_alert_rate,
    roc_auc,
)
from replay.generate import write

DAY = 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def score(tx: str, card: str, day: int, s: float, *, alert: bool | None = None,
          latency: float = 5.0, **components: float) -> dict[str, Any]:
    return {
        "transaction_id": tx, "card_id": card, "event_time": T0 + day * DAY + 1000, "score": s,
        "components": components, "model_versions": {"online": "v1"},
        "decision": "alert" if (s >= 0.5 if alert is None else alert) else "pass", "threshold": 0.5,
        "received_at": 0, "scored_at": 0, "latency_ms": latency, "processing_ms": 1.0,
    }


# --- ranking metrics --------------------------------------------------------


def test_auc_and_ap_on_the_textbook_case() -> None:
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(y, s) == 0.75
    assert average_precision(y, s) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_ties_count_half_in_auc_and_group_in_ap() -> None:
    # Pairs (pos, neg): .5~.5 tie -> 1/2, .5>.2, .9>.5, .9>.2 -> 3.5 of 4.
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
    # All tied: one threshold alerting on everything, precision 2/3 at recall 1.
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)
    assert roc_auc([1, 0, 1], [0.5, 0.5, 0.5]) == 0.5


def brute_auc(y: list[int], s: list[float]) -> float:
    pairs = [(a, b) for a, b in itertools.product(range(len(y)), repeat=2) if y[a] == 1 and y[b] == 0]
    return sum(1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0 for a, b in pairs) / len(pairs)


def brute_ap(y: list[int], s: list[float]) -> float:
    ap, last_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        alerted = [yi for yi, si in zip(y, s, strict=True) if si >= t]
        recall = sum(alerted) / sum(y)
        ap += (recall - last_recall) * sum(alerted) / len(alerted)
        last_recall = recall
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_brute_force_with_many_ties(seed: int) -> None:
    rng = random.Random(seed)
    y = [int(rng.random() < 0.3) for _ in range(58)] + [0, 1]  # both classes guaranteed
    s = [rng.randint(0, 6) / 6 for _ in y]
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s))
    assert average_precision(y, s) == pytest.approx(brute_ap(y, s))


def test_precision_recall_curve_by_hand() -> None:
    precision, recall, thresholds = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert thresholds.tolist() == [0.8, 0.4, 0.35, 0.1]
    assert recall.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])


def test_card_precision_at_k_by_hand() -> None:
    cards = ["a", "a", "b", "c", "d", "d"]
    y = [0, 1, 0, 0, 1, 0]
    s = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3]
    # Card maxima: a .9 (fraud), b .8, c .7, d .3 (fraud).
    assert card_precision_at_k(cards, y, s, k=1) == 1.0
    assert card_precision_at_k(cards, y, s, k=2) == 0.5
    assert card_precision_at_k(cards, y, s, k=3) == pytest.approx(1 / 3)
    assert card_precision_at_k(cards, y, s, k=4) == 0.5
    assert card_precision_at_k(cards, y, s, k=10) == 0.2  # Handbook: divided by k, not by the 4 cards
    assert card_precision_at_k([], [], [], k=3) is None


def test_card_precision_ties_go_to_the_smaller_card_id() -> None:
    assert card_precision_at_k(["b", "a"], [1, 0], [0.5, 0.5], k=1) == 0.0
    assert card_precision_at_k(["a", "b"], [1, 0], [0.5, 0.5], k=1) == 1.0


def test_recall_at_alert_rate_by_hand() -> None:
    y = np.zeros(200, dtype=int)
    s = np.linspace(0.0, 0.5, 200)
    y[[10, 150, 199]] = 1
    s[10] = 0.99  # fraud ranked first
    # 1 % of 200 rows = 2 alerts: rows 10 and 199 -> 2 of 3 frauds.
    assert recall_at_alert_rate(y, s, 0.01) == pytest.approx(2 / 3)
    assert recall_at_alert_rate(y, s, 0.005) == pytest.approx(1 / 3)
    assert recall_at_alert_rate(y, s, 1.0) == 1.0


def test_one_class_gives_none() -> None:
    assert roc_auc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert average_precision([0, 0], [0.1, 0.2]) is None
    assert recall_at_alert_rate([0, 0], [0.1, 0.2]) is None
    assert roc_auc([], []) is None
    assert latency_percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_latency_percentiles_ignore_missing_values() -> None:
    assert latency_percentiles([1.0, float("nan"), 3.0]) == {"p50": 2.0, "p95": 2.9, "p99": 2.98}


# --- loading and the join ---------------------------------------------------


def test_dedupe_keeps_the_first_record() -> None:
    records = [score("t1", "a", 0, 0.2), score("t1", "a", 0, 0.9), score("t2", "b", 0, 0.4)]
    assert [r["score"] for r in dedupe(records)] == [0.2, 0.4]


def test_duplicate_scores_count_once(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    records = [score("t1", "a", 0, 0.9), score("t2", "b", 0, 0.1), score("t1", "a", 0, 0.1)]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    loaded = load_scores_jsonl(path)
    assert [(r["transaction_id"], r["score"]) for r in loaded] == [("t1", 0.9), ("t2", 0.1)]
    result = evaluate(records, {"t1": 1, "t2": 0})
    assert result["overall"]["n"] == 2
    assert result["overall"]["roc_auc"] == 1.0
    assert result["coverage"]["scores"] == 2


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


# --- evaluate ---------------------------------------------------------------


@pytest.fixture
def two_days() -> tuple[list[dict[str, Any]], dict[str, Label]]:
    scores = [
        score("t1", "a", 0, 0.9, online=0.2),
        score("t2", "b", 0, 0.2, online=0.9),
        score("t3", "c", 0, 0.6, online=0.1),
        score("t4", "a", 1, 0.7, online=0.3),  # card a: fraud on day 0 -> known compromised on day 1
        score("t5", "d", 1, 0.8, online=0.8),
        score("t6", "e", 1, 0.1, online=0.05),
        score("t7", "f", 1, 0.3),  # no online component
    ]
    labels = {"t1": Label(1, "card_testing"), "t2": Label(0), "t3": Label(0), "t4": Label(0),
              "t5": Label(1, "account_takeover"), "t6": Label(0), "t7": Label(1, "card_testing"),
              "t8": Label(0)}
    return scores, labels


def test_evaluate_overall_and_per_day_by_hand(two_days: tuple[list[dict[str, Any]], dict[str, Label]]) -> None:
    scores, labels = two_days
    result = evaluate(scores, labels, k=1, alert_rate=0.25)
    o = result["overall"]
    assert (o["n"], o["n_fraud"], o["alerts"]) == (7, 3, 4)
    # Frauds .9 .8 .3 vs legit .2 .6 .7 .1: 4 + 4 + 2 = 10 of 12 pairs.
    assert o["roc_auc"] == pytest.approx(10 / 12)
    # 2 alerts of 7 (ceil 1.75): .9 and .8, both fraud.
    assert o["recall_at_alert_rate"] == pytest.approx(2 / 3)
    assert o["precision_at_threshold"] == 0.5
    assert o["threshold"] == 0.5
    day0, day1 = result["per_day"]
    assert (day0["day"], day0["n"], day0["n_fraud"], day0["alerts"]) == ("2025-01-01", 3, 1, 2)
    assert day0["roc_auc"] == 1.0
    assert day0["card_precision_at_k"] == 1.0  # top card a (.9) is fraud
    assert day1["card_precision_at_k"] == 1.0  # top card d (.8) is fraud
    assert day1["roc_auc"] == 0.75  # frauds .8 .3 vs legit .7 .1: 2 + 1 of 4 pairs
    assert o["card_precision_at_k"] == 1.0  # mean of the daily values
    assert result["coverage"]["unscored_labels"] == 1


def test_per_scenario_detection(two_days: tuple[list[dict[str, Any]], dict[str, Label]]) -> None:
    scores, labels = two_days
    per_scenario = evaluate(scores, labels)["per_scenario"]
    assert list(per_scenario) == ["legit", "account_takeover", "card_testing"]
    assert per_scenario["card_testing"] == {"n": 2, "detected_share_at_threshold": 0.5, "mean_score": 0.6}
    assert per_scenario["legit"]["detected_share_at_threshold"] == 0.5  # t3 and t4 alerted


def test_exclude_known_compromised_by_hand(two_days: tuple[list[dict[str, Any]], dict[str, Label]]) -> None:
    scores, labels = two_days
    result = evaluate(scores, labels, k=1, exclude_known_compromised=True)
    assert result["coverage"]["excluded_known_compromised"] == 1
    assert result["overall"]["n"] == 6
    day1 = result["per_day"][1]
    assert day1["n"] == 3  # t4 of card a dropped
    # Day 1 without t4: frauds .8 .3 vs legit .1 -> AUC 1.
    assert day1["roc_auc"] == 1.0


def test_known_compromised_marks_later_days_only() -> None:
    mask = known_compromised(["a", "a", "a", "b", "b"], [0, 0, 3, 1, 2], [0, 1, 0, 0, 0])
    assert mask.tolist() == [False, False, True, False, False]


def test_components_are_scored_on_their_own(two_days: tuple[list[dict[str, Any]], dict[str, Label]]) -> None:
    scores, labels = two_days
    result = evaluate(scores, labels)
    online = result["components"]["online"]["overall"]
    assert online["n"] == 6  # t7 has no online component
    # Frauds .2 .8 vs legit .9 .1 .3 .05: 2 + 3 of 8 pairs.
    assert online["roc_auc"] == 5 / 8
    only = evaluate(scores, labels, component="online")["components"]
    assert list(only) == ["online"]


def test_one_class_results_are_valid_json() -> None:
    scores = [score(f"t{i}", f"c{i}", i % 2, i / 10) for i in range(6)]
    result = evaluate(scores, {f"t{i}": 0 for i in range(6)})
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text)["overall"]["roc_auc"] is None
    assert result["overall"]["average_precision"] is None
    assert result["per_scenario"] == {"legit": {"n": 6, "detected_share_at_threshold": 1 / 6, "mean_score": 0.25}}


def test_result_does_not_depend_on_delivery_order(
        two_days: tuple[list[dict[str, Any]], dict[str, Label]]) -> None:
    scores, labels = two_days
    shuffled = scores[::-1]
    assert evaluate(shuffled, labels, k=2) == evaluate(scores, labels, k=2)


def test_labels_may_be_plain_ints_or_tuples() -> None:
    scores = [score("t1", "a", 0, 0.9), score("t2", "b", 0, 0.1)]
    as_tuples = evaluate(scores, {"t1": (1, "large_amount"), "t2": (0, "")})
    assert evaluate(scores, {"t1": 1, "t2": 0})["overall"] == as_tuples["overall"]
    assert "large_amount" in as_tuples["per_scenario"]


def test_curves_are_json_and_cover_each_scenario(
        two_days: tuple[list[dict[str, Any]], dict[str, Label]]) -> None:
    scores, labels = two_days
    curves = json.loads(json.dumps(compute_curves(scores, labels, bins=4), allow_nan=False))
    assert curves["pr"]["recall"][-1] == 1.0
    assert set(curves["score_hist"]["counts"]) == {"legit", "account_takeover", "card_testing"}
    assert curves["score_hist"]["counts"]["card_testing"] == [0, 1, 0, 1]  # .3 and .9 on quarter bins
    assert sum(curves["latency_hist"]["counts"]) == 7
    assert set(curves["components_pr"]) == {"online"}


def test_cli_prints_headline_and_writes_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        two_days: tuple[list[dict[str, Any]], dict[str, Label]]) -> None:
    scores, labels = two_days
    scores_path = tmp_path / "scores.jsonl"
    scores_path.write_text("".join(json.dumps(r) + "\n" for r in scores))
    ids = list(labels)
    labels_path = write(pa.table({"transaction_id": ids, "is_fraud": [labels[t].is_fraud for t in ids],
                                  "scenario": [labels[t].scenario for t in ids]}), tmp_path / "labels.csv")
    code = cli(["--scores", str(scores_path), "--labels", str(labels_path), "--k", "1",
                "--exclude-known-compromised", "--out-dir", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "ROC AUC" in out and "card precision@1" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report == evaluate(scores, load_labels(labels_path), k=1, exclude_known_compromised=True)
    assert (tmp_path / "out" / "report.html").exists()


def test_cli_needs_one_score_source(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli(["--labels", str(tmp_path / "l.csv")])
