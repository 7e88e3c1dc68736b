"""Labels on the feedback topic move the online learner; bad labels are dead-lettered."""

from __future__ import annotations

import base64
import json
from statistics import mean

import pytest
from kafka import KafkaProducer

from stream.core.packing import unpack_inputs
from stream.tools.broker import free_port
from tests.support import as_records, consume_all, header, make_traffic, produce, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _scores(broker, settings, rows):
    ids = {r["transaction_id"] for r in rows}
    got = consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids, timeout=90)
    return {s["transaction_id"]: s for s in got if s["transaction_id"] in ids}


def _label(row, label=None, **extra):
    value = {"transaction_id": row["transaction_id"], "card_id": row["card_id"],
             "label": label or ("fraud" if row["is_fraud"] else "legit"), "source": "chargeback", **extra}
    return row["card_id"].encode(), json.dumps(value).encode()


def _original_label(example: dict) -> dict:
    """The label record a labelled example carries (``orig``'s value: ``v`` now, ``value`` in the first format)."""
    orig = example["orig"]
    return json.loads(base64.b64decode(orig["v"] if "v" in orig else orig["value"]))


def test_labels_teach_the_online_learner(settings, worker_factory, broker):
    settings = settings.replace(web_enabled=True, web_port=free_port())
    worker = worker_factory(settings)
    before_rows = make_traffic(n_cards=150, per_card=12, fraud_every=4, seed=5)
    produce(broker, settings.topic_transactions, as_records(before_rows))
    before = _scores(broker, settings, before_rows)

    labels = [_label(r) for r in before_rows]
    unknown = (b"card-0", json.dumps({"transaction_id": "never-seen", "card_id": "card-0", "label": "fraud"}).encode())
    mismatch = _label(before_rows[0], card_id="card-somebody-else")
    mismatch = (before_rows[0]["card_id"].encode(), mismatch[1])
    bad_label = (b"card-0", json.dumps({"transaction_id": before_rows[0]["transaction_id"], "card_id": "card-0", "label": "maybe"}).encode())
    produce(broker, settings.topic_feedback, [*labels, unknown, mismatch, bad_label])

    def learned() -> bool:
        try:
            return worker.get_json("/stats/")["stats"]["labels_learned"] >= len(labels)
        except OSError:
            return False

    assert wait_for(learned, timeout=60), worker.log_tail()

    def installed() -> bool:
        return worker.get_json("/stats/")["model_versions"]["online"].startswith(f"online-{len(labels)}@s")

    assert wait_for(installed, timeout=30), "the worker scores with the snapshot that holds every label"

    # Each label reached the learner with the inputs kept at scoring time, as the features changelog
    # holds them (packed: a worker that recovers the table joins with the same values; the packing's
    # exactness is pack_inputs' doctest).
    ids = {r["transaction_id"].encode() for r in before_rows}
    kept = consume_all(broker, f"{settings.app_id}-features-changelog",
                       lambda r: {m.key for m in r if m.value is not None} >= ids, decode=False)
    packed = {m.key.decode(): json.loads(m.value)["x"] for m in kept if m.value is not None}
    examples = consume_all(broker, settings.labelled_topic, lambda r: len(r) >= len(labels))
    assert len(examples) == len(labels)
    for example in examples:
        txid = _original_label(example)["transaction_id"]
        assert isinstance(packed[txid], str) and example["x"] == unpack_inputs(packed[txid])

    # Same kind of traffic on other cards, later in event time.
    after_rows = [dict(r, transaction_id="after-" + r["transaction_id"], card_id="after-" + r["card_id"],
                       timestamp=r["timestamp"] + 30 * 86_400_000)
                  for r in make_traffic(n_cards=150, per_card=12, fraud_every=4, seed=6)]
    produce(broker, settings.topic_transactions, as_records(after_rows))
    after = _scores(broker, settings, after_rows)

    def online(scores, rows, fraud):
        return mean(scores[r["transaction_id"]]["components"]["online"] for r in rows if r["is_fraud"] == fraud)

    assert online(after, after_rows, 1) > online(before, before_rows, 1) + 0.3, "fraud scores rise after fraud labels"
    assert online(after, after_rows, 0) < online(after, after_rows, 1) - 0.3, "legit stays well below fraud"
    assert online(after, after_rows, 0) < 0.2

    dead = consume_all(broker, settings.topic_feedback_dlq, lambda r: len(r) >= 3, timeout=30, decode=False)
    reasons = {d.value: header(d, "dlq.reason") for d in dead}
    assert reasons == {unknown[1]: "unknown_transaction", mismatch[1]: "card_mismatch", bad_label[1]: "invalid_value"}
    assert all(header(d, "dlq.source.topic") == settings.topic_feedback for d in dead)
    assert worker.alive()


def test_label_before_its_transaction_is_joined_when_the_transaction_comes(settings, worker_factory, broker):
    """Kafka does not order two topics: a label may be consumed before its transaction is scored."""
    settings = settings.replace(web_enabled=True, web_port=free_port())
    worker = worker_factory(settings)
    rows = make_traffic(n_cards=40, per_card=6, fraud_every=3, seed=8)
    from stream.contracts.records import format_rfc3339

    early = [_label(r, labelled_at=format_rfc3339(r["timestamp"] + 7 * 86_400_000)) for r in rows]
    produce(broker, settings.topic_feedback, early)

    def pending() -> int:
        try:
            return worker.get_json("/stats/")["stats"]["labels_pending"]
        except OSError:
            return -1

    assert wait_for(lambda: pending() == len(rows), timeout=60), worker.log_tail()
    # The transactions, then traffic well past the labels' time on every partition.
    later = [dict(r, transaction_id="z-" + r["transaction_id"], timestamp=r["timestamp"] + 30 * 86_400_000)
             for r in rows]
    produce(broker, settings.topic_transactions, as_records(rows + later))
    _scores(broker, settings, rows + later)
    assert wait_for(lambda: worker.get_json("/stats/")["stats"]["labels_forwarded"] == len(rows), timeout=30)
    assert pending() == 0
    assert "feedback" not in json.dumps(worker.get_json("/stats/")["stats"]["dlq"])


def test_unreadable_stored_inputs_cost_only_their_label(settings, worker_factory, broker):
    """A damaged ``features`` entry (here recovered from its changelog) dead-letters its label, nothing else."""
    settings = settings.replace(web_enabled=True, web_port=free_port())
    rows = make_traffic(n_cards=10, per_card=3, fraud_every=3, seed=9)
    first = worker_factory(settings, name="first")
    produce(broker, settings.topic_transactions, as_records(rows))
    _scores(broker, settings, rows)
    assert first.stop() == 0, first.log_tail()

    damaged, good = rows[0], rows[1]
    key = damaged["transaction_id"].encode()
    changelog = f"{settings.app_id}-features-changelog"
    stored = next(m for m in consume_all(broker, changelog, lambda r: any(m.key == key for m in r), decode=False)
                  if m.key == key)
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send(changelog, key=key, value=json.dumps({**json.loads(stored.value), "x": "AAAA"}).encode(),
                  partition=stored.partition)  # the card's partition, where the table entry lives
    producer.flush()
    producer.close()

    second = worker_factory(settings, name="second")
    produce(broker, settings.topic_feedback, [_label(damaged), _label(good)])
    dead = consume_all(broker, settings.topic_feedback_dlq, lambda r: len(r) >= 1, timeout=60, decode=False)
    assert [(d.value, header(d, "dlq.reason")) for d in dead] == [(_label(damaged)[1], "corrupt_inputs")]

    def forwarded() -> int:
        try:
            return second.get_json("/stats/")["stats"]["labels_forwarded"]
        except OSError:
            return -1

    assert wait_for(lambda: forwarded() == 1, timeout=30), second.log_tail()
    assert second.alive()


def test_the_same_label_twice_is_learned_once(settings, worker_factory, broker):
    """README: "The same label twice is learned once; a different label for the same transaction ... is learned
    as a correction." Observed on the worker's counters, the labelled-examples topic and the installed model."""
    settings = settings.replace(web_enabled=True, web_port=free_port())
    worker = worker_factory(settings)
    rows = make_traffic(n_cards=15, per_card=2, seed=10)  # 30 transactions, all legit
    produce(broker, settings.topic_transactions, as_records(rows))
    _scores(broker, settings, rows)

    def stats() -> dict:
        try:
            return worker.get_json("/stats/")["stats"]
        except OSError:
            return {}

    labels = [_label(r) for r in rows]
    produce(broker, settings.topic_feedback, labels)
    assert wait_for(lambda: stats().get("labels_learned") == len(rows), timeout=60), worker.log_tail()

    correction = _label(rows[0], label="fraud")  # the analyst said legit, the chargeback says fraud
    produce(broker, settings.topic_feedback, [*labels, correction])
    n = len(rows)
    assert wait_for(lambda: stats().get("labels_forwarded", 0) + stats().get("labels_duplicate", 0) >= 2 * n + 1,
                    timeout=60), worker.log_tail()
    final = stats()
    assert (final["labels_forwarded"], final["labels_duplicate"]) == (n + 1, n)
    assert wait_for(lambda: stats().get("labels_learned") == n + 1, timeout=30), worker.log_tail()
    examples = consume_all(broker, settings.labelled_topic, lambda r: len(r) >= n + 1, timeout=30)
    sent = sorted((_original_label(e)["transaction_id"], e["y"]) for e in examples)
    assert sent == sorted([(r["transaction_id"], 0) for r in rows] + [(rows[0]["transaction_id"], 1)])
    assert wait_for(lambda: worker.get_json("/stats/")["model_versions"]["online"].startswith(f"online-{n + 1}@s"),
                    timeout=30), "the installed model holds each label once, and the correction"
    assert stats()["labels_learned"] == n + 1 and worker.alive()


def test_the_retention_and_the_join_grace_are_the_settings(settings, worker_factory, broker):
    """FRAUDSTREAM_FEATURE_RETENTION_S bounds how late a label may come; FRAUDSTREAM_FEEDBACK_JOIN_GRACE_S how long
    a label waits for a transaction that never comes (both in event time)."""
    settings = settings.replace(feature_retention_s=3600.0, feedback_join_grace_s=600.0, web_enabled=True,
                                web_port=free_port())
    worker = worker_factory(settings)
    from stream.contracts.records import format_rfc3339

    t0 = make_traffic(n_cards=1, per_card=1, seed=30)[0]["timestamp"]
    card = "card-ret"

    def tx(tx_id: str, at_ms: int) -> dict:
        return {"transaction_id": tx_id, "card_id": card, "timestamp": t0 + at_ms, "amount": 25.0, "is_fraud": 0}

    scored = [tx("late-labelled", 0), tx("in-time", 60_000)]
    produce(broker, settings.topic_transactions, as_records(scored))
    _scores(broker, settings, scored)
    labels = [
        _label(scored[0], "fraud", labelled_at=format_rfc3339(t0 + 3_600_001)),  # 1 ms past the retention
        _label(scored[1], "fraud", labelled_at=format_rfc3339(t0 + 60_000 + 3_600_000)),  # at it exactly
        _label(tx("never-scored", 120_000), "fraud", labelled_at=format_rfc3339(t0 + 120_000)),
    ]
    produce(broker, settings.topic_feedback, labels)

    dead = consume_all(broker, settings.topic_feedback_dlq, lambda r: len(r) >= 1, timeout=60, decode=False)
    assert [(json.loads(d.value)["transaction_id"], header(d, "dlq.reason")) for d in dead] == [
        ("late-labelled", "expired_transaction")]
    assert wait_for(lambda: worker.get_json("/stats/")["stats"]["labels_forwarded"] == 1, timeout=30)

    # The unknown label waits while its partition's transactions stay within the grace past its time...
    within = [tx("within-grace", 120_000 + 590_000)]
    produce(broker, settings.topic_transactions, as_records(within))
    _scores(broker, settings, within)
    assert worker.get_json("/stats/")["stats"]["labels_pending"] == 1
    # ...and is dead-lettered once they pass it.
    past = [tx("past-grace", 120_000 + 610_000)]
    produce(broker, settings.topic_transactions, as_records(past))
    dead = consume_all(broker, settings.topic_feedback_dlq, lambda r: len(r) >= 2, timeout=60, decode=False)
    assert [(json.loads(d.value)["transaction_id"], header(d, "dlq.reason")) for d in dead][1:] == [
        ("never-scored", "unknown_transaction")]
    assert worker.get_json("/stats/")["stats"]["labels_pending"] == 0
