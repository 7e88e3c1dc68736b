"""Per-card history survives a worker restart (changelog recovery)."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer

from stream.tools.broker import free_port
from tests.support import as_records, consume_all, make_traffic, produce, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _histories(worker, cards):
    return {c: worker.get_json(f"/cards/{c}/history/")["raw"] for c in cards}


def _ready(worker, card) -> bool:
    try:
        return bool(worker.get_json(f"/cards/{card}/history/")["raw"])
    except OSError:
        return False


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_history_after_restart_equals_history_before(settings, worker_factory, broker, store):
    # memory://: rebuilt from the changelog alone. rocksdb://: the production
    # store, reopened from disk and brought up to date from the changelog.
    settings = settings.replace(web_enabled=True, web_port=free_port(), history_length=8, store=store)
    rows = make_traffic(n_cards=40, per_card=12, fraud_every=5, seed=4)  # > history_length per card
    cards = sorted({r["card_id"] for r in rows})
    first = worker_factory(settings, name="first")
    produce(broker, settings.topic_transactions, as_records(rows))
    ids = {r["transaction_id"] for r in rows}
    consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids, timeout=90)
    before = _histories(first, cards)
    assert all(len(h) == 8 for h in before.values()), "history is bounded to history_length"
    assert first.stop() == 0, first.log_tail()
    # A card whose last changelog record an earlier release wrote (a JSON list of entries).
    legacy = [[1_740_830_400_000, 12.5, 3_187_588_786, "5411", "FR", "pos", 11], [1_740_830_460_000, 99.0, 7, "0742",
              "DE", "ecom", 2**64 - 1]]
    producer = KafkaProducer(bootstrap_servers=broker)  # keyed: the default partitioner, as Faust's table router
    producer.send(f"{settings.app_id}-history-changelog", key=b"card-legacy", value=json.dumps(legacy).encode())
    producer.flush()
    producer.close()

    second = worker_factory(settings, name="second")  # fresh process: memory store, rebuilt from the changelog
    assert wait_for(lambda: _ready(second, cards[0]), timeout=60), second.log_tail()
    after = _histories(second, cards)
    assert after == before
    assert _histories(second, ["card-legacy"]) == {"card-legacy": legacy}

    # And it keeps building on the recovered history rather than starting over.
    more = [dict(r, transaction_id=r["transaction_id"] + "-late", timestamp=r["timestamp"] + 90 * 86_400_000)
            for r in rows if r["transaction_id"].endswith("-11")]
    produce(broker, settings.topic_transactions, as_records(more))
    late = {r["transaction_id"] for r in more}
    consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= late, timeout=60)
    final = _histories(second, cards)
    for c in cards:
        assert final[c][:-1] == before[c][1:], "one new entry appended, oldest dropped"
