"""Entity profiles through a broker: the route and entity hops, features from every card, labels known from
their labelled_at, transactions naming no entity, bad records dead-lettered where they arrive."""

from __future__ import annotations

import json
import math

import pytest

from models.profile_fold import PROFILE_FEATURES, fold_entity_features
from stream.contracts.records import format_rfc3339
from stream.kafka.topics import ensure_topics
from tests.support import BASE_MS, consume_all, header, produce, wait_for

pytestmark = pytest.mark.broker


def tx(tx_id: str, card: str, at: int, merchant: str = "") -> dict:
    return {"transaction_id": tx_id, "card_id": card, "timestamp": BASE_MS + at, "amount": 20.0,
            "merchant_id": merchant}


def scored(broker: str, settings, tx_id: str, timeout: float = 90) -> dict:
    records = consume_all(broker, settings.topic_scores, lambda r: any(s["transaction_id"] == tx_id for s in r),
                          timeout=timeout)
    found = [s for s in records if s["transaction_id"] == tx_id]
    assert found, f"{tx_id} was not scored"
    return found[0]


def send(broker: str, settings, row: dict) -> dict:
    produce(broker, settings.topic_transactions, [(row["card_id"].encode(), json.dumps(row).encode())])
    return scored(broker, settings, row["transaction_id"])


def test_a_terminal_profile_reaches_every_card_that_uses_it(settings, worker_factory, broker):
    from stream.tools.broker import free_port

    settings = settings.replace(entities="merchant_id", web_enabled=True, web_port=free_port())
    ensure_topics(settings)
    worker = worker_factory(settings)
    rows = [tx("e1", "card-a", 0, "m1"), tx("e2", "card-b", 60_000, "m1")]
    first, second = (send(broker, settings, row) for row in rows)
    names = [f"merchant_{n}" for n in PROFILE_FEATURES]
    assert set(first["entity_features"]) == set(names), worker.log_tail()
    assert first["entity_features"]["merchant_n_1h"] == 0.0
    assert second["entity_features"]["merchant_n_1h"] == round(math.log1p(1), 6)  # card-a's, at the same terminal
    assert second["entity_features"]["merchant_cards_1d"] == round(math.log1p(1), 6)
    # The latency counts from the transaction's arrival, hops included, and the hops' share is measured.
    hops = worker.get_json("/stats/")["stats"]["hop_ms"]
    assert hops["n"] >= 2 and 0 <= hops["p50"] <= hops["p99"] <= first["latency_ms"] + second["latency_ms"]

    # card-a's transaction is confirmed fraud; transactions at m1 know it from its labelled_at on.
    label = {"transaction_id": "e1", "card_id": "card-a", "label": "fraud", "labelled_at": format_rfc3339(BASE_MS + 90_000)}
    produce(broker, settings.topic_feedback, [(b"card-a", json.dumps(label).encode())])
    later: list[dict] = []

    def known() -> bool:  # the label reaches m1's partition through the route agent: try until a transaction sees it
        row = tx(f"e3-{len(later)}", "card-c", 120_000 + len(later), "m1")
        later.append(row)
        return send(broker, settings, row)["entity_features"]["merchant_fraud_7d"] == round(math.log1p(1), 6)

    assert wait_for(known, timeout=90), worker.log_tail()

    # The whole sequence, folded offline by the training code: the same features, to the sixth decimal.
    history = rows + later
    expected = fold_entity_features([r["merchant_id"] for r in history], [r["card_id"] for r in history],
                                    [r["timestamp"] for r in history], [r["amount"] for r in history],
                                    labels=[(0, BASE_MS + 90_000, True)])
    last = scored(broker, settings, later[-1]["transaction_id"])
    assert last["entity_features"] == {n: round(float(v), 6) for n, v in zip(names, expected[-1], strict=True)}

    no_entity = send(broker, settings, tx("e4", "card-d", 130_000))
    assert no_entity["entity_features"]["merchant_is_new_card"] == 1.0
    assert no_entity["entity_features"]["merchant_n_30d"] == 0.0

    produce(broker, settings.topic_transactions, [(b"card-e", json.dumps({**tx("e5", "card-e", 1), "amount": -1}).encode())])
    dead = consume_all(broker, settings.topic_transactions_dlq, lambda r: len(r) >= 1, timeout=60, decode=False)
    assert [(header(d, "dlq.reason"), header(d, "dlq.source.topic")) for d in dead] == [
        ("invalid_amount", settings.topic_transactions)], "dead-lettered where it arrived, with its own record"


def test_an_entitys_profile_is_served_from_the_worker_that_holds_it(settings, worker_factory, broker):
    """What an analyst reads at 3 a.m.: the terminal's counts, its cards, the labels it knows, the features it gives."""
    from stream.tools.broker import free_port

    settings = settings.replace(entities="merchant_id", web_enabled=True, web_port=free_port(), web_token="s3cret")
    ensure_topics(settings)
    worker = worker_factory(settings)
    for row in [tx("w1", "card-a", 0, "T-17"), tx("w2", "card-b", 60_000, "T-17")]:
        send(broker, settings, row)
    view = worker.get_json("/entities/merchant_id/T-17/")
    assert view["field"] == "merchant_id" and view["value"] == "T-17", worker.log_tail()
    profile = view["profile"]
    assert profile["cards"] == 2 and [r[0] for r in profile["recent"]] == [BASE_MS, BASE_MS + 60_000]
    assert [h[1:] for h in profile["hours"]] == [[2.0, 40_000.0, 2.0]]  # 2 transactions, 40.000 in thousandths, 2 new cards
    assert view["features_after_newest"]["merchant_n_1h"] == pytest.approx(math.log1p(2))
    import urllib.error

    with pytest.raises(urllib.error.HTTPError, match="404"):
        worker.get_json("/entities/merchant_id/never-seen/")
    with pytest.raises(urllib.error.HTTPError, match="401"):  # card data: behind the service token
        worker.settings = settings.replace(web_token="wrong")
        worker.get_json("/entities/merchant_id/T-17/")
