"""Loading scores and labels, their join and evaluate(), checked against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.curves import compute_curves
from replay.evaluate import cli, evaluate
from replay.generate import write
from replay.inputs import Label, load_scores_jsonl

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


# --- duplicates count once (reading them: tests/replay/test_inputs.py) -----


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
    as_ints = evaluate(scores, {"t1": 1, "t2": 0})
    for result in (as_tuples, as_ints):  # one fraud scored .9 and alerted, one legit scored .1
        o = result["overall"]
        assert (o["n"], o["n_fraud"], o["alerts"], o["roc_auc"], o["precision_at_threshold"]) == (2, 1, 1, 1.0, 1.0)
    assert list(as_tuples["per_scenario"]) == ["legit", "large_amount"]
    assert list(as_ints["per_scenario"]) == ["legit", "fraud"]  # a fraud label naming no scenario


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
    # By hand, t4 (card a, the day after its fraud) left out: t1 .9 F, t2 .2, t3 .6 on day 0; t5 .8 F, t6 .1,
    # t7 .3 F on day 1. Alerts (score >= .5): t1, t3, t5, of which t1 and t5 are fraud.
    assert report["params"] == {"k": 1, "alert_rate": 0.01, "exclude_known_compromised": True, "component": None}
    assert report["coverage"] == {"scores": 7, "labels": 8, "joined": 7, "unlabelled_scores": 0,
                                  "unscored_labels": 1, "excluded_known_compromised": 1}
    o = report["overall"]
    assert (o["n"], o["n_fraud"], o["alerts"]) == (6, 3, 3)
    assert o["roc_auc"] == pytest.approx(8 / 9)  # frauds .9 .8 .3 vs legit .2 .6 .1: 3 + 3 + 2 of 9 pairs
    assert o["precision_at_threshold"] == pytest.approx(2 / 3) and o["recall_at_threshold"] == pytest.approx(2 / 3)
    assert o["card_precision_at_k"] == 1.0  # day 0: card a (.9) fraud; day 1: card d (.8) fraud
    assert [(d["day"], d["n"], d["n_fraud"], d["roc_auc"]) for d in report["per_day"]] == [
        ("2025-01-01", 3, 1, 1.0), ("2025-01-02", 3, 2, 1.0)]
    assert report["per_scenario"] == {
        "legit": {"n": 3, "detected_share_at_threshold": 1 / 3, "mean_score": pytest.approx(0.3)},
        "account_takeover": {"n": 1, "detected_share_at_threshold": 1.0, "mean_score": 0.8},
        "card_testing": {"n": 2, "detected_share_at_threshold": 0.5, "mean_score": pytest.approx(0.6)},
    }
    assert (tmp_path / "out" / "report.html").exists()


def test_cli_needs_one_score_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(["--labels", str(tmp_path / "l.csv")])
    assert exited.value.code == 2
    assert "give exactly one of --scores or --bootstrap-servers" in capsys.readouterr().err


# --- evaluate() against a second implementation of its definitions, on generated data ------------


def reference_figures(scores: list[dict[str, Any]], labels: dict[str, int], exclude: bool) -> dict[str, Any]:
    """The documented figures written out plainly: first record wins, joined on labels, optionally the
    rows of a card on the days after its first fraud day dropped; AUC by counting pairs (ties half)."""
    first: dict[str, dict[str, Any]] = {}
    for r in scores:
        first.setdefault(r["transaction_id"], r)
    rows = [(r, labels[t]) for t, r in first.items() if t in labels]
    never = 10**9  # the first fraud day of a card without fraud
    first_fraud_day: dict[str, int] = {}
    for r, y in rows:
        day = r["event_time"] // DAY
        if y:
            first_fraud_day[r["card_id"]] = min(first_fraud_day.get(r["card_id"], day), day)
    dropped = [(r, y) for r, y in rows if r["event_time"] // DAY > first_fraud_day.get(r["card_id"], never)]
    kept = [(r, y) for r, y in rows if not (exclude and any(r is d for d, _ in dropped))]

    def auc(part: list[tuple[dict[str, Any], int]]) -> float | None:
        pos = [r["score"] for r, y in part if y]
        neg = [r["score"] for r, y in part if not y]
        if not pos or not neg:
            return None
        return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))

    alerts = [y for r, y in kept if r["decision"] == "alert"]
    days = sorted({r["event_time"] // DAY for r, _ in kept})
    return {
        "n": len(kept), "n_fraud": sum(y for _, y in kept), "alerts": len(alerts),
        "precision_at_threshold": sum(alerts) / len(alerts) if alerts else None,
        "roc_auc": auc(kept),
        "per_day": [(sum(1 for r, _ in kept if r["event_time"] // DAY == d),
                     auc([(r, y) for r, y in kept if r["event_time"] // DAY == d])) for d in days],
        "excluded": len(dropped) if exclude else 0,
        "unlabelled": len(first) - len(rows),
    }


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.tuples(st.integers(0, 14), st.sampled_from("abcd"), st.integers(0, 2),
                               st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])), min_size=1, max_size=30),
    fraud=st.sets(st.integers(0, 14)),
    unlabelled=st.sets(st.integers(0, 14), max_size=3),
    exclude=st.booleans(),
)
def test_evaluate_matches_the_definitions_on_generated_scores(
        records: list[tuple[int, str, int, float]], fraud: set[int], unlabelled: set[int], exclude: bool) -> None:
    # A transaction id keeps its card and day (redeliveries repeat the record); its score may differ.
    first_seen: dict[int, tuple[str, int]] = {}
    scores = []
    for tx, card, day, s in records:
        card, day = first_seen.setdefault(tx, (card, day))
        scores.append(score(f"t{tx}", card, day, s))
    labels = {f"t{tx}": int(tx in fraud) for tx in range(15) if tx not in unlabelled}
    want = reference_figures(scores, labels, exclude)
    result = evaluate(scores, labels, exclude_known_compromised=exclude)
    o = result["overall"]
    assert (o["n"], o["n_fraud"], o["alerts"]) == (want["n"], want["n_fraud"], want["alerts"])
    assert o["roc_auc"] == pytest.approx(want["roc_auc"])
    assert o["precision_at_threshold"] == pytest.approx(want["precision_at_threshold"])
    assert [(d["n"], d["roc_auc"]) for d in result["per_day"]] == [
        (n, pytest.approx(a)) for n, a in want["per_day"]]
    assert result["coverage"]["excluded_known_compromised"] == want["excluded"]
    assert result["coverage"]["unlabelled_scores"] == want["unlabelled"]
    # Delivery order does not matter once the first delivery of each transaction stays first.
    firsts = {r["transaction_id"]: r for r in reversed(scores)}  # the first record of each id
    reordered = list(reversed(list(firsts.values()))) + scores
    assert evaluate(reordered, labels, exclude_known_compromised=exclude)["overall"] == o
