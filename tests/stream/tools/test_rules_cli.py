"""``fraudstream rules``: refusals before anything is written, and the backtest's figures against a hand count."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pytest

from models.features import engineered
from models.history import History, append, new_history
from replay.generate import GeneratorConfig, generate, write
from stream.contracts.records import Transaction
from stream.tools.cli import main

# A port nothing listens on: a refused rule must never get as far as the broker.
NO_BROKER = ["--bootstrap-servers", "127.0.0.1:9"]


@pytest.mark.parametrize("args,message", [
    (["--expr", "amount >", "--action", "alert", "--reason", "x"], "syntax error at line:column 1:9"),
    (["--expr", "amout > 1.0", "--action", "alert", "--reason", "x"], "unknown variable 'amout'"),
    (["--expr", "amount * 2.0", "--action", "block", "--reason", "x"], "must be a bool"),
    (["--expr", "amount > 1.0", "--action", "alert"], "an alert rule needs a reason"),
    (["--expr", "amount > 1.0", "--action", "tag"], "a tag rule needs a tag"),
])
def test_a_rule_that_does_not_compile_is_refused_at_add_with_the_reason(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", *NO_BROKER, "add", "--id", "r1", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fraudstream rules: rule 'r1': ") and message in err


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = generate(GeneratorConfig(seed=5, n_transactions=6_000, n_cards=200, n_merchants=100, days=6))
    return write(table, tmp_path_factory.mktemp("rules") / "history.csv")


def independent(path: Path, hit_of) -> dict:  # type: ignore[no-untyped-def]
    """The figures recomputed here: rows read as a CSV, each card's features one transaction at a time."""
    import csv

    with path.open() as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["timestamp"]))
    histories: dict[str, History] = defaultdict(new_history)
    hits = fraud_hits = frauds = 0
    fraud_amount = caught = 0.0
    days: dict[str, int] = defaultdict(int)
    for r in rows:
        t = Transaction(r["transaction_id"], r["card_id"], int(r["timestamp"]), float(r["amount"]), r["currency"],
                        r["merchant_id"], r["mcc"], r["country"], r["channel"])
        features = engineered(histories[t.card_id], t)  # the per-transaction reference path, not the batch one
        histories[t.card_id] = append(histories[t.card_id], t, 32)
        fraud = r["is_fraud"] == "1"
        frauds += fraud
        fraud_amount += t.amount * fraud
        if hit_of(t, features):
            hits += 1
            fraud_hits += fraud
            caught += t.amount * fraud
            days[dt.datetime.fromtimestamp(t.event_time_ms / 1000, tz=dt.UTC).date().isoformat()] += 1
    return {"hits": hits, "fraud_hits": fraud_hits, "frauds": frauds, "precision": fraud_hits / hits,
            "recall": fraud_hits / frauds, "fraud_amount": round(fraud_amount, 2),
            "fraud_amount_caught": round(caught, 2), "hits_per_day": dict(sorted(days.items()))}


def test_rules_test_figures_equal_an_independent_count(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expr = "amount > 150.0 && (n_1h >= 1.0 || is_new_merchant == 1.0) && channel != 'atm'"
    assert main(["rules", "test", expr, "--history", str(history), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = independent(history, lambda t, f: t.amount > 150.0 and (f["n_1h"] >= 1.0 or f["is_new_merchant"] == 1.0)
                       and t.channel != "atm")
    assert want["hits"] > 20 and want["fraud_hits"] >= 5  # the rule catches something, not everything
    assert got.pop("hits_per_day") == want.pop("hits_per_day")
    assert {k: got[k] for k in want} == pytest.approx(want)
    assert got["rows"] == 6_000 and got["failures"] == 0 and got["model_alerts"] is None


def test_rules_test_with_scores_gives_the_overlap_with_the_models_alerts(
        history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    with history.open() as f:
        rows = list(csv.DictReader(f))
    # Score records as the engine writes them; the "model" alerts on every third transaction.
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"transaction_id": r["transaction_id"], "score": 0.9 if i % 3 == 0 else 0.1,
                                          "threshold": 0.5, "components": {"online": 0.1}}) + "\n"
                              for i, r in enumerate(rows)))
    assert main(["rules", "test", "amount > 300.0 && score < 0.5", "--history", str(history),
                 "--scores", str(scores), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    hit = [float(r["amount"]) > 300.0 and i % 3 != 0 for i, r in enumerate(rows)]
    alerted = [i % 3 == 0 for i in range(len(rows))]
    assert got["hits"] == sum(hit) > 0 and got["model_alerts"] == sum(alerted)
    assert got["overlap"] == 0  # the rule only hits where the model did not alert
    assert got["fraud_only_rule"] == sum(h and r["is_fraud"] == "1" for h, r in zip(hit, rows, strict=True))


def test_rules_test_refuses_a_rule_reading_scores_without_them(history: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "score > 0.5", "--history", str(history)]) == 2
    assert "reads score, which a history file has not got" in capsys.readouterr().err


def test_rules_test_prints_its_figures_for_a_person(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "amount > 500.0", "--history", str(history)]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "recall" in out and "hits per day:" in out and "fraud amount caught" in out
