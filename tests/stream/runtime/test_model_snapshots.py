"""One shared online model: signed snapshots, refusal of forgeries, new workers, rollback, caps."""

from __future__ import annotations

import json

import pytest

from models.online import OnlineLearner
from models.snapshot import seal
from stream.tools.broker import free_port
from tests.support import as_records, consume_all, header, make_traffic, produce, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _labels(rows, flip=False, source="chargeback"):
    out = []
    for r in rows:
        fraud = bool(r["is_fraud"]) != flip
        out.append((r["card_id"].encode(), json.dumps({"transaction_id": r["transaction_id"], "card_id": r["card_id"],
                                                        "label": "fraud" if fraud else "legit",
                                                        "source": source}).encode()))
    return out


def _stats(worker):
    try:
        return worker.get_json("/stats/")
    except OSError:
        return {"stats": {}, "model_versions": {}}


def _scored(broker, settings, rows):
    ids = {r["transaction_id"] for r in rows}
    consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids, timeout=90)


def test_forged_snapshot_refused_and_new_worker_starts_from_latest(settings, worker_factory, broker, tmp_path):
    # Hourly refit periods: the traffic's frauds come in its last hours, and trees are fitted at a period's end.
    settings = settings.replace(web_enabled=True, web_port=free_port(), trees_refit_s=3600.0)
    first = worker_factory(settings, name="first")
    rows = make_traffic(n_cards=60, per_card=10, fraud_every=4, seed=21)
    produce(broker, settings.topic_transactions, as_records(rows))
    _scored(broker, settings, rows)
    produce(broker, settings.topic_feedback, _labels(rows))
    # Every label learned, and the trees the trainer fits on them installed (the last legitimate snapshot).
    assert wait_for(lambda: _stats(first)["model_versions"].get("online", "").startswith(f"online-{len(rows)}@s")
                    and "trees" in _stats(first)["model_versions"], timeout=60), first.log_tail()
    version = _stats(first)["model_versions"]["online"]

    # Someone with write access to the model topic tries to plant a model.
    evil = OnlineLearner()
    forged = [
        seal(evil, b"not-the-real-key-0123456789", {"seq": 10_000}),  # signed with another key
        b"\x80\x04\x95" + b"cos\nsystem\n(S'echo pwned'\ntR." ,        # a bare pickle, unsigned
    ]
    for blob in forged:  # one produce request each: the embedded broker hides the tail of a multi-record
        produce(broker, settings.models_topic, [(b"online", blob)])  # batch from a consumer positioned inside it
    assert wait_for(lambda: _stats(first)["stats"].get("snapshots_rejected", 0) >= 2, timeout=30), first.log_tail()
    assert _stats(first)["model_versions"]["online"] == version, "the worker keeps the model it trusts"
    assert "REFUSED model snapshot" in first.log_path.read_text()
    ops = consume_all(broker, settings.topic_ops, lambda r: sum(o["type"] == "snapshot_refused" for o in r) >= 2,
                      timeout=20)
    assert sum(o["type"] == "snapshot_refused" for o in ops) >= 2

    assert first.stop() == 0
    second = worker_factory(settings.replace(web_port=free_port()), name="second")
    assert wait_for(lambda: _stats(second)["model_versions"].get("online") == version, timeout=60), \
        "a new worker starts from the latest good snapshot, skipping forgeries"
    assert wait_for(lambda: _stats(second)["stats"].get("snapshots_rejected", 0) >= 2, timeout=20)
    assert _stats(second)["model_versions"]["online"] == version


def test_poisoned_labels_roll_back_and_capped_source(settings, worker_factory, broker):
    # The guard watches the online learner's own predictions; per-card state only (no terminal profiles, whose
    # inputs and trees refit as the flipped labels arrive) keeps what it sees the same from run to run.
    settings = settings.replace(web_enabled=True, web_port=free_port(), quality_window=300, drift_min_labels=150,
                                feedback_source_cap_per_hour=400, entities="")
    worker = worker_factory(settings)
    good = make_traffic(n_cards=150, per_card=10, fraud_every=3, seed=22)
    produce(broker, settings.topic_transactions, as_records(good))
    _scored(broker, settings, good)
    produce(broker, settings.topic_feedback, _labels(good))
    assert wait_for(lambda: _stats(worker)["stats"].get("labels_learned", 0) >= len(good) - 10, timeout=60), \
        worker.log_tail()

    bad = [dict(r, transaction_id="p-" + r["transaction_id"], card_id="p-" + r["card_id"],
                timestamp=r["timestamp"] + 60 * 86_400_000) for r in make_traffic(150, 10, 3, seed=23)]
    produce(broker, settings.topic_transactions, as_records(bad))
    _scored(broker, settings, bad)
    produce(broker, settings.topic_feedback, _labels(bad, flip=True, source="chargeback"))
    assert wait_for(lambda: _stats(worker)["stats"].get("rollbacks", 0) >= 1, timeout=60), worker.log_tail()
    ops = consume_all(broker, settings.topic_ops, lambda r: any(o["type"] == "online_model_rollback" for o in r),
                      timeout=20)
    rollback = next(o for o in ops if o["type"] == "online_model_rollback")
    assert rollback["guard"]["rolling_auc"] < rollback["guard"]["baseline_auc"]

    # A flood from one source beyond its cap goes to the DLQ, not into the model.
    flood = [dict(r, transaction_id="f-" + r["transaction_id"], card_id="f-" + r["card_id"],
                  timestamp=r["timestamp"] + 90 * 86_400_000) for r in make_traffic(100, 5, 0, seed=24)]
    for r in flood:
        r["timestamp"] = flood[0]["timestamp"]  # all in one event hour
    produce(broker, settings.topic_transactions, as_records(flood))
    _scored(broker, settings, flood)
    produce(broker, settings.topic_feedback, _labels(flood, source="web-portal"))
    dead = consume_all(broker, settings.topic_feedback_dlq,
                       lambda r: sum(header(d, "dlq.reason") == "source_rate_limited" for d in r) >= 100,
                       timeout=60, decode=False)
    capped = [d for d in dead if header(d, "dlq.reason") == "source_rate_limited"]
    assert len(capped) == len(flood) - 400
    assert json.loads(capped[0].value)["source"] == "web-portal", "the original label bytes are dead-lettered"
