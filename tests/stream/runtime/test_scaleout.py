"""Several workers, one app id: crashes and rebalances lose nothing and split no card."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest

from models.history import History, append, new_history
from stream.contracts.records import Limits, parse_transaction
from stream.contracts.settings import Settings
from stream.core.outputs import alert_id
from stream.kafka.topics import ensure_topics
from stream.tools.broker import free_port
from tests.support import Trickle, as_records, consume_all, make_traffic, produce, read_to_end, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

LIMITS = Limits.from_settings(Settings())


def expected_histories(rows, limit):
    """What every card's history must be: the offline fold of its transactions."""
    out: dict[str, History] = defaultdict(new_history)
    for r in sorted(rows, key=lambda r: r["timestamp"]):
        t = parse_transaction(json.dumps(r).encode(), LIMITS)
        out[t.card_id] = append(out[t.card_id], t, limit)
    return {card: [list(e) for e in history] for card, history in out.items()}  # as the web view's "raw"


def worker_settings(settings, data_dir):
    return settings.replace(web_enabled=True, web_port=free_port(), data_dir=str(data_dir), topic_partitions=4)


def wait_all_scored(broker, settings, rows, timeout=180):
    ids = {r["transaction_id"] for r in rows}
    with Trickle(broker, settings.topic_transactions, max(r["timestamp"] for r in rows)):
        scores = consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids,
                             timeout=timeout)
    missing = ids - {s["transaction_id"] for s in scores}
    return scores, missing


def where_missing(missing, rows, chunks, partitions=4):
    """Which partitions and which produced chunk the unscored transactions belong to."""
    from collections import Counter

    from kafka.partitioner.default import murmur2

    card = {r["transaction_id"]: r["card_id"] for r in rows}
    chunk_of = {r["transaction_id"]: i for i, c in enumerate(chunks) for r in c}
    where = Counter((murmur2(card[t].encode()) & 0x7FFFFFFF) % partitions for t in missing)
    return f"{len(missing)} never scored; by partition {dict(where)}; by chunk {dict(Counter(chunk_of[t] for t in missing))}"


def view_via(worker, path):
    for _ in range(50):  # a rebalance may still be settling: the router answers 503 meanwhile
        try:
            return worker.get_json(path)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no answer from {path}")


def histories_via(worker, cards):
    return {c: view_via(worker, f"/cards/{c}/history/")["raw"] for c in cards}


def expected_profiles(rows, entity_field, labels=()):
    """What every entity's profile must hold: the offline fold of its transactions (any order, any positions),
    then of ``labels`` ``(row, labelled_at_ms)`` (fraud), as JSON gives them back."""
    from models.profile import EntityProfile, readable

    out: dict[str, EntityProfile] = defaultdict(EntityProfile)
    for r in sorted(rows, key=lambda r: r["timestamp"]):
        out[r[entity_field]].observe(r["timestamp"], r["amount"], card=r["card_id"])
    for r, labelled_at in labels:
        out[r[entity_field]].label(r["transaction_id"], r["timestamp"], labelled_at_ms=labelled_at, fraud=True)
    return json.loads(json.dumps({value: readable(profile) for value, profile in out.items()}))


@pytest.fixture
def settings4(broker, tmp_path):
    from stream.kafka.topics import ensure_topics
    from tests.support import fast_settings

    s = fast_settings(broker, tmp_path / "data", topic_partitions=4, history_length=16)
    ensure_topics(s)
    return s


def pretrained_model(path, seed=1):
    """An online learner trained offline on labelled traffic of the same kind, so some transactions alert."""
    from models.features import engineered
    from models.history import prior_history
    from models.online import OnlineLearner

    learner = OnlineLearner()
    histories: dict[str, History] = {}
    for r in make_traffic(n_cards=60, per_card=25, fraud_every=5, seed=seed):
        t = parse_transaction(json.dumps(r).encode(), LIMITS)
        h = histories.get(t.card_id, new_history())
        learner.learn({**engineered(prior_history(h, t), t), "sequence_logit": 0.0}, r["is_fraud"])
        histories[t.card_id] = append(h, t, 16)
    learner.save(path)
    return path


@pytest.mark.parametrize("entities", ["", "merchant_id"], ids=["cards", "entities"])
def test_kill_9_mid_stream_loses_nothing(settings4, worker_factory, broker, tmp_path, monkeypatch, entities):
    rows = make_traffic(n_cards=120, per_card=20, fraud_every=5, seed=11)  # 2,400 transactions, 360 fraud
    # Three consecutive stretches of event time: each card's transactions arrive in event-time order. (A
    # transaction redelivered after a late one of its card, earlier in event time, was scored the first time
    # without it: the second score differs. The engine keeps its promise only for in-order cards.)
    chunks = [rows[:800], rows[800:1600], rows[1600:]]
    settings4 = settings4.replace(online_model_path=str(pretrained_model(tmp_path / "online.pkl")),
                                  alert_threshold=0.5, entities=entities)
    ensure_topics(settings4)
    # Worker a never commits on its own (Faust reads BROKER_COMMIT_INTERVAL from the environment; a inherits
    # ours): whatever it scored is uncommitted when it is killed, so its partitions' transactions are all
    # delivered again to the survivors, and the comparison of redeliveries below always has material.
    monkeypatch.setenv("BROKER_COMMIT_INTERVAL", "3600")
    a = worker_factory(worker_settings(settings4, tmp_path / "a"), name="a")
    monkeypatch.delenv("BROKER_COMMIT_INTERVAL")
    b = worker_factory(worker_settings(settings4, tmp_path / "b"), name="b")
    produce(broker, settings4.topic_transactions, as_records(chunks[0]))
    wait_all_scored(broker, settings4, chunks[0], timeout=90)
    produce(broker, settings4.topic_transactions, as_records(chunks[1][:400]))
    in_flight = {r["transaction_id"] for r in chunks[1][:400]}
    assert wait_for(lambda: len({s["transaction_id"] for s in consume_all(
        broker, settings4.topic_scores, lambda r: False, timeout=0.5)} & in_flight) >= 100, timeout=60)
    a.kill()  # mid-stream, no flush, no commit
    produce(broker, settings4.topic_transactions, as_records(chunks[1][400:]))
    a2 = worker_factory(a.settings, name="a-restarted")
    produce(broker, settings4.topic_transactions, as_records(chunks[2]))

    _scores, missing = wait_all_scored(broker, settings4, rows)
    assert not missing, where_missing(missing, rows, chunks)

    # Every delivery of a transaction's score, in the order the scores partition holds them (one card, one
    # partition): a redelivered transaction sees the history it saw the first time, so the same score.
    ids = {r["transaction_id"] for r in rows}
    deliveries = defaultdict(list)
    for s in read_to_end(broker, settings4.topic_scores):
        if s["transaction_id"] in ids:
            deliveries[s["transaction_id"]].append(s)
    same = ("score", "decision", "components", "model_versions", "threshold", "event_time")
    duplicates = 0
    for tx, ss in deliveries.items():
        first = {k: ss[0][k] for k in same}
        for again in ss[1:]:
            assert {k: again[k] for k in same} == first, f"{tx} scored differently when redelivered: {ss}"
            duplicates += 1
    assert duplicates > 0, "no transaction was scored twice: the kill did not land mid-stream, nothing was checked"
    alerted = {tx for tx, ss in deliveries.items() if ss[0]["decision"] == "alert"}
    fraud = {r["transaction_id"] for r in rows if r["is_fraud"]}
    assert len(alerted) >= 200 and len(alerted & fraud) >= 0.6 * len(fraud), "the model must make alerts happen"

    # A micro-batch's alerts may be acknowledged after its scores: wait until the alerts cover every transaction
    # decided 'alert' (if the engine lost one, this times out and the comparison below names it).
    consume_all(broker, settings4.topic_alerts,
                lambda r: alerted <= {al["transaction_id"] for al in r}, timeout=60)
    alerts = defaultdict(list)
    for al in read_to_end(broker, settings4.topic_alerts):
        if al["transaction_id"] in ids:  # not the Trickle's
            alerts[al["transaction_id"]].append(al)
    assert set(alerts) == alerted, "an alert for every transaction decided 'alert', and only for those"
    duplicate_alerts = 0
    for tx, als in alerts.items():
        assert all(al["alert_id"] == alert_id(tx) for al in als), "an alert's id is its transaction's, always"
        assert all(al["score"] == deliveries[tx][0]["score"] for al in als)
        assert len(als) <= len(deliveries[tx]), "an alert at most once per scoring"
        duplicate_alerts += len(als) - 1
    assert duplicate_alerts > 0, "no alert was raised twice: the alert_id check compared nothing"
    print(f"{duplicates} scores and {duplicate_alerts} alerts delivered again; {len(alerted)} alerted")

    cards = sorted({r["card_id"] for r in rows})
    assert histories_via(b, cards) == expected_histories(rows, 16)
    if entities:  # each terminal's profile, recovered and moved between workers, counted each transaction once
        expected = expected_profiles(rows, "merchant_id")
        got = {m: view_via(b, f"/entities/merchant_id/{m}/")["profile"] for m in expected}
        assert got == expected, "an entity's profile differs from the fold of its transactions"
    assert a2.alive() and b.alive()


@pytest.mark.parametrize("entities", ["", "merchant_id"], ids=["cards", "entities"])
def test_worker_added_then_removed_mid_stream(settings4, worker_factory, broker, tmp_path, entities):
    settings4 = settings4.replace(entities=entities)
    ensure_topics(settings4)
    rows = make_traffic(n_cards=100, per_card=18, fraud_every=6, seed=12)
    chunks = [sorted(rows[i::3], key=lambda r: r["timestamp"]) for i in range(3)]
    first = worker_factory(worker_settings(settings4, tmp_path / "first"), name="first")
    produce(broker, settings4.topic_transactions, as_records(chunks[0]))
    second = worker_factory(worker_settings(settings4, tmp_path / "second"), name="second")
    produce(broker, settings4.topic_transactions, as_records(chunks[1]))
    wait_all_scored(broker, settings4, chunks[0] + chunks[1], timeout=120)
    assert wait_for(lambda: b"Worker]: Ready" in second.log_path.read_bytes(), timeout=60)
    assert first.stop() == 0, first.log_tail()
    produce(broker, settings4.topic_transactions, as_records(chunks[2]))

    _scores, missing = wait_all_scored(broker, settings4, rows)
    assert not missing, f"{where_missing(missing, rows, chunks)}\n{second.log_tail()}"
    cards = sorted({r["card_id"] for r in rows})
    assert histories_via(second, cards) == expected_histories(rows, 16), "no card's history split between workers"
    if not entities:
        return
    # The fraud is confirmed a day after each transaction: every terminal's profile, moved to the second
    # worker with its partitions, holds exactly its transactions and the labels of its transactions.
    labels = [(r, r["timestamp"] + 86_400_000) for r in rows if r["is_fraud"]]
    produce(broker, settings4.topic_feedback, [(r["card_id"].encode(), json.dumps(
        {"transaction_id": r["transaction_id"], "card_id": r["card_id"], "label": "fraud",
         "labelled_at": at}).encode()) for r, at in labels])
    expected = expected_profiles(rows, "merchant_id", labels)
    labelled = {m for m, p in expected.items() if p["labels"]}

    def profiles():
        return {m: view_via(second, f"/entities/merchant_id/{m}/")["profile"] for m in expected}

    assert wait_for(lambda: all(profiles()[m]["labels"] for m in labelled), timeout=90), second.log_tail()
    assert profiles() == expected, "an entity's profile differs from the fold of its transactions and labels"
