"""``fraudstream alerts``: the table row, and tailing a real topic without a group."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from kafka import KafkaProducer

from stream.contracts.codec import dumps as encode  # what the score agent emits
from stream.contracts.settings import Settings
from stream.core.outputs import alert_id
from stream.tools.tail import REASON_WIDTH, cli, format_alert_row, header_row, tail
from tests.support import BASE_MS, produce

ALERT_SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "alerts.json").read_text())


def _alert(i: int, **changes: Any) -> dict[str, Any]:
    """A schema-valid alert record, as the engine writes it."""
    tx_id = f"t-tail-{i}"
    record = {
        "alert_id": alert_id(tx_id),
        "transaction_id": tx_id,
        "card_id": f"card-{i}",
        "transaction": {
            "transaction_id": tx_id,
            "card_id": f"card-{i}",
            "timestamp": "2025-03-01T12:00:00.000Z",
            "amount": 1249.5 + i,
            "currency": "EUR",
            "merchant_id": "shady-1",
            "mcc": "5732",
            "country": "BR",
            "channel": "ecom",
        },
        "score": 0.97,
        "components": {"online": 0.97},
        "model_versions": {"online": "online-0001"},
        "threshold": 0.5,
        "reasons": [
            {"code": "is_new_country", "text": "first transaction in BR for this card", "weight": 1.4},
            {"code": "amount_ratio_max", "text": "amount 1249.50 EUR is 10.0x the largest", "weight": 0.9},
        ],
        "event_time": BASE_MS + i,
        "scored_at": BASE_MS + i + 40,
    }
    record.update(changes)
    Draft202012Validator(ALERT_SCHEMA).validate(record)
    return record


# --------------------------------------------------------------------------- the row


def test_row_shows_time_card_amount_place_score_and_top_reason() -> None:
    row = format_alert_row(_alert(0))
    assert row.startswith("2025-03-01 12:00:00  card-0 ")
    assert "1249.50 EUR" in row and "BR/ecom" in row and "0.970" in row
    assert row.endswith("first transaction in BR for this card")


def test_row_columns_line_up_with_the_header() -> None:
    header = header_row()
    for alert in (_alert(0), _alert(1, card_id="c", score=0.5), _alert(2, score=1)):
        row = format_alert_row(alert)
        # SCORE is right-aligned under its title; REASON starts where its title does.
        score_end = header.index("SCORE") + len("SCORE")
        assert row[score_end - 5:score_end] == f"{alert['score']:.3f}"
        assert row[header.index("REASON"):].startswith("first transaction")
        assert row[header.index("AMOUNT") + len("AMOUNT") - 3:header.index("AMOUNT") + len("AMOUNT")] == "EUR"


def test_long_values_are_cut_and_rows_stay_one_line() -> None:
    reason = "a reason that goes on\nand on " * 10
    row = format_alert_row(_alert(3, card_id="x" * 40, reasons=[{"code": "c", "text": reason, "weight": 1.0}]))
    assert "\n" not in row
    assert "x" * 15 + "…" in row and "x" * 16 not in row
    assert row.endswith("…")
    assert len(row) == len(header_row()) - len("REASON") + REASON_WIDTH
    narrow = format_alert_row(_alert(3, reasons=[{"code": "c", "text": reason, "weight": 1.0}]), reason_width=12)
    assert narrow.endswith("a reason th…")


def test_top_reason_is_the_heaviest() -> None:
    reasons = [{"code": "a", "text": "light", "weight": 0.1}, {"code": "b", "text": "heavy", "weight": 3.0},
               {"code": "c", "text": "also heavy", "weight": 3.0}]
    assert format_alert_row(_alert(4, reasons=reasons)).endswith("heavy")
    assert format_alert_row(_alert(4, reasons=[])).endswith("-")


def test_odd_records_do_not_break_the_row() -> None:
    assert format_alert_row({}).split() == ["?", "?", "?", "?/?", "?", "-"]
    odd = {"card_id": 12, "score": "high", "event_time": "yesterday", "transaction": "not an object",
           "reasons": ["not an object", {"code": "only_code", "weight": "heavy"}]}
    assert format_alert_row(odd).split() == ["?", "12", "?", "?/?", "?", "only_code"]
    decimal = _alert(5)
    decimal["transaction"] = {**decimal["transaction"], "amount": "12.5"}
    assert "12.50 EUR" in format_alert_row(decimal)


# --------------------------------------------------------------------------- through a broker


def _produce_alerts(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    produce(settings.bootstrap_servers, settings.topic_alerts, [(a["card_id"].encode(), encode(a)) for a in alerts])


@pytest.mark.broker
def test_cli_prints_alerts_as_json_lines(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = [_alert(10), _alert(11)]
    _produce_alerts(settings, alerts)
    code = cli(["--bootstrap-servers", settings.bootstrap_servers, "--topic", settings.topic_alerts,
                "--from-beginning", "--json", "--max", "2", "--timeout", "20"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(lines, key=lambda a: a["alert_id"]) == sorted(alerts, key=lambda a: a["alert_id"])


@pytest.mark.broker
def test_tail_starts_at_the_end_and_skips_what_is_not_an_alert(settings: Settings) -> None:
    _produce_alerts(settings, [_alert(20)])  # before the tail starts: not shown
    out, err = io.StringIO(), io.StringIO()
    stop, done = threading.Event(), threading.Event()
    result: list[int] = []

    def run() -> None:
        result.append(tail(settings.bootstrap_servers, settings.topic_alerts, max_alerts=1, timeout_s=60, out=out,
                           err=err, stop=stop))
        done.set()

    runner = threading.Thread(target=run)
    runner.start()
    # The tail finds the end offsets on its first poll, which nothing outside it can see: rather than guess
    # when that was, send a round each 0.2 s until the tail has shown its one alert. A round is a record that
    # is not JSON, then an alert, of one fresh card (21, 22, ...): one partition, in that order, and one
    # produce request (the linger outlasts the two sends; flush sends them), so the tail sees all of a round
    # or none of it.
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=60_000)
    rounds = 0
    try:
        while not done.wait(0.2) and rounds < 300:
            card = f"card-{21 + rounds}".encode()
            producer.send(settings.topic_alerts, key=card, value=b"{not json")
            producer.send(settings.topic_alerts, key=card, value=encode(_alert(21 + rounds)))
            producer.flush()
            rounds += 1
    finally:
        stop.set()
        runner.join(timeout=30)
        producer.close()
    assert result == [0], err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == header_row()
    assert len(lines) == 2, out.getvalue()
    shown = int(lines[1].split()[2].removeprefix("card-"))
    assert 21 <= shown < 21 + rounds, out.getvalue()  # one sent after the tail started, never card-20
    assert "not a JSON object" in err.getvalue()


@pytest.mark.broker
def test_max_not_reached_before_the_timeout_is_status_1(settings: Settings) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = tail(settings.bootstrap_servers, settings.topic_alerts, from_beginning=True, as_json=True,
                max_alerts=1, timeout_s=2, out=out, err=err)
    # It returned by itself (a tail that ignored --timeout would hang here) with the not-reached status.
    assert code == 1 and out.getvalue() == ""
    assert "tailing" in err.getvalue()


def test_unreachable_broker_is_status_2() -> None:
    from stream.tools.broker import free_port

    err = io.StringIO()
    code = tail(f"127.0.0.1:{free_port()}", "alerts", timeout_s=1, out=io.StringIO(), err=err)
    assert code == 2 and "cannot reach Kafka" in err.getvalue()
