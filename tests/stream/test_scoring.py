"""Every transaction gets exactly one score, and the expected alerts appear."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from models.features import engineered
from models.history import History, append, new_history, prior_history
from models.online import OnlineLearner
from stream.outputs import alert_id
from stream.records import Limits, parse_transaction
from stream.settings import Settings
from tests.support import as_records, consume_all, make_traffic, produce

pytestmark = pytest.mark.broker


def _pretrained(rows: list[dict], path: Path) -> None:
    """Train the online learner offline with the engine's own feature code."""
    limits = Limits.from_settings(Settings())
    learner = OnlineLearner()
    histories: dict[str, History] = {}
    for _ in range(3):
        histories.clear()
        for r in rows:
            t = parse_transaction(json.dumps(r).encode(), limits)
            h = histories.get(t.card_id, new_history())
            x = engineered(prior_history(h, t), t)
            x["sequence_logit"] = 0.0
            learner.learn(x, r["is_fraud"])
            histories[t.card_id] = append(h, t, 32)
    learner.save(path)


def test_every_transaction_scored_once_and_fraud_alerts(settings, worker_factory, broker, tmp_path):
    train = make_traffic(n_cards=100, per_card=30, fraud_every=7, seed=1)
    model_path = tmp_path / "online.pkl"
    _pretrained(train, model_path)
    live = make_traffic(n_cards=300, per_card=10, fraud_every=6, seed=2)  # 3,000 transactions
    settings = settings.replace(online_model_path=str(model_path), alert_threshold=0.5)
    worker = worker_factory(settings)
    produce(broker, settings.topic_transactions, as_records(live))

    ids = {r["transaction_id"] for r in live}
    scores = consume_all(broker, settings.topic_scores, lambda recs: {s["transaction_id"] for s in recs} >= ids,
                         timeout=120)
    assert worker.alive(), worker.log_tail()
    counts = Counter(s["transaction_id"] for s in scores)
    assert set(counts) == ids, f"missing {len(ids - set(counts))} scores\n{worker.log_tail()}"
    assert max(counts.values()) == 1, "a transaction was scored twice without a restart"
    # Keyed by card, in the partition Kafka's default partitioner (murmur2) gives the key, as a
    # consumer locating a card's scores expects (the outbox computes it per micro-batch).
    raw = consume_all(broker, settings.topic_scores, lambda recs: len(recs) >= len(ids), timeout=30, decode=False)
    partitions = list(range(settings.topic_partitions))
    assert raw and all(m.key == json.loads(m.value)["card_id"].encode() for m in raw)
    assert all(m.partition == DefaultPartitioner()(m.key, partitions, partitions) for m in raw)

    by_id = {s["transaction_id"]: s for s in scores}
    expected_alerts = {t for t, s in by_id.items() if s["score"] >= settings.alert_threshold}
    alerts = consume_all(broker, settings.topic_alerts, lambda recs: len(recs) >= len(expected_alerts), timeout=30)
    assert {a["transaction_id"] for a in alerts} == expected_alerts
    for a in alerts:
        assert a["alert_id"] == alert_id(a["transaction_id"])
        assert a["reasons"], "an alert must say why"
        assert by_id[a["transaction_id"]]["decision"] == "alert"

    fraud = {r["transaction_id"] for r in live if r["is_fraud"]}
    assert len(expected_alerts & fraud) >= 0.9 * len(fraud), "the pre-trained learner should catch the injected fraud"
    assert len(expected_alerts - fraud) <= 0.01 * len(ids - fraud)
    s = by_id[next(iter(fraud))]
    assert 0.0 <= s["score"] <= 1.0 and s["components"]["online"] == s["score"]
    assert s["model_versions"]["online"].startswith("online-")
    assert s["latency_ms"] >= 0 and s["event_time"] == next(r["timestamp"] for r in live if r["transaction_id"] == s["transaction_id"])
