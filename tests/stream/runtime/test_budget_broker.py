"""The alert budget through a real broker: one controller publishes, two workers score with what it published."""

from __future__ import annotations

import re
import urllib.request

import pytest

from models.snapshot import unseal_record
from stream.kafka.topics import ensure_topics
from stream.tools.broker import free_port
from tests.support import Trickle, as_records, consume_all, make_traffic, produce, scores_of, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def threshold_gauge(worker) -> float | None:
    url = f"http://{worker.settings.web_host}:{worker.settings.web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    found = re.search(r"^fraudstream_alert_threshold (\S+)$", text, flags=re.MULTILINE)
    return float(found.group(1)) if found else None


def test_two_workers_score_with_the_threshold_the_one_controller_published(
        settings, worker_factory, broker, tmp_path) -> None:
    # A share of 30 % warms up after 67 scores; an untrained learner gives every transaction the same low score,
    # so the controller's first move is to the floor: a value no worker has unless it read it from the topic.
    settings = settings.replace(alert_budget="30%", alert_threshold_floor=0.2, entities="")
    ensure_topics(settings)
    workers = [worker_factory(settings.replace(web_enabled=True, web_port=free_port(), data_dir=str(tmp_path / n)),
                              name=n) for n in ("a", "b")]
    rows = make_traffic(n_cards=40, per_card=6, seed=5)  # over both partitions, hours of event time
    before, after = rows[:120], rows[120:]
    with Trickle(broker, settings.topic_transactions, rows[0]["timestamp"]):  # early: event time moves with the rows
        first = {}
        for at in range(0, len(before), 20):  # in steps, so that the controller's event-time clock moves
            produce(broker, settings.topic_transactions, as_records(before[at:at + 20]))
            first |= scores_of(broker, settings, before[at:at + 20], timeout=90)
        assert {s["threshold"] for s in first.values()} <= {0.5, 0.2}  # the fixed one until the first publication
        raw = consume_all(broker, settings.threshold_topic, lambda r: len(r) > 0, timeout=60, decode=False)
        published = [unseal_record(r.value, settings.signing_key(), "threshold") for r in raw]  # signed
        assert published and published[0]["threshold"] == 0.2 and published[0]["budget"] == "30%"
        assert wait_for(lambda: all(threshold_gauge(w) == 0.2 for w in workers), timeout=30), \
            [w.log_tail() for w in workers]
        # Whoever can write the topic but lacks the signing key cannot silence the alerts.
        produce(broker, settings.threshold_topic, [(b"threshold", b'{"threshold": 0.999}')], partition=0)
        assert wait_for(lambda: len([r for r in consume_all(broker, settings.topic_ops, lambda r: False, timeout=1)
                                     if r.get("type") == "threshold_refused"]) >= 2, timeout=30)
        assert all(threshold_gauge(w) == 0.2 for w in workers)
        produce(broker, settings.topic_transactions, as_records(after))
        second = scores_of(broker, settings, after, timeout=90)
    assert {s["threshold"] for s in second.values()} == {0.2}
    assert all(s["decision"] == "pass" for s in second.values())
    moves = [r for r in consume_all(broker, settings.topic_ops, lambda r: False, timeout=2)
             if r.get("type") == "alert_threshold_moved"]
    assert moves and moves[0]["old"] == 0.5 and moves[0]["new"] == 0.2
    assert all(w.alive() for w in workers)
