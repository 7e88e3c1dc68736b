"""Several workers, one app id: crashes and rebalances lose nothing and split no card."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest

from models.history import History, append, new_history
from stream.broker import free_port
from stream.outputs import alert_id
from stream.records import Limits, parse_transaction
from stream.settings import Settings
from tests.support import Trickle, as_records, consume_all, make_traffic, produce, wait_for

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


def histories_via(worker, cards):
    def fetch(card):
        for _ in range(50):  # a rebalance may still be settling: the router answers 503 meanwhile
            try:
                return worker.get_json(f"/cards/{card}/history/")["raw"]
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"no history for {card}")
    return {c: fetch(c) for c in cards}


@pytest.fixture
def settings4(broker, tmp_path):
    from stream.topics import ensure_topics
    from tests.support import fast_settings

    s = fast_settings(broker, tmp_path / "data", topic_partitions=4, history_length=16)
    ensure_topics(s)
    return s


def test_kill_9_mid_stream_loses_nothing(settings4, worker_factory, broker, tmp_path):
    rows = make_traffic(n_cards=120, per_card=20, fraud_every=5, seed=11)  # 2,400 transactions
    chunks = [rows[i::3] for i in range(3)]
    chunks = [sorted(c, key=lambda r: r["timestamp"]) for c in chunks]
    a = worker_factory(worker_settings(settings4, tmp_path / "a"), name="a")
    b = worker_factory(worker_settings(settings4, tmp_path / "b"), name="b")
    produce(broker, settings4.topic_transactions, as_records(chunks[0]))
    wait_all_scored(broker, settings4, chunks[0], timeout=90)
    produce(broker, settings4.topic_transactions, as_records(chunks[1][:400]))
    time.sleep(0.3)
    a.kill()  # mid-stream, no flush, no commit
    produce(broker, settings4.topic_transactions, as_records(chunks[1][400:]))
    a2 = worker_factory(a.settings, name="a-restarted")
    produce(broker, settings4.topic_transactions, as_records(chunks[2]))

    _scores, missing = wait_all_scored(broker, settings4, rows)
    assert not missing, where_missing(missing, rows, chunks)
    alerts = consume_all(broker, settings4.topic_alerts, lambda r: False, timeout=3)
    by_tx = defaultdict(set)
    for al in alerts:
        by_tx[al["transaction_id"]].add(al["alert_id"])
    assert all(ids == {alert_id(tx)} for tx, ids in by_tx.items()), "a duplicate alert keeps its alert_id"

    cards = sorted({r["card_id"] for r in rows})
    assert histories_via(b, cards) == expected_histories(rows, 16)
    assert a2.alive() and b.alive()


def test_worker_added_then_removed_mid_stream(settings4, worker_factory, broker, tmp_path):
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
