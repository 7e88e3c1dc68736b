"""The score agent's two failure paths, through a broker and a real worker whose core fails on planted records.

* A bug (any unexpected exception) dead-letters the micro-batch as ``internal_error`` (nothing lost) and the
  worker goes on scoring.
* ``PartitionsMismatch`` (a misconfiguration) stops the worker before it acks anything of that batch: the
  next worker of the group scores the batch again.
"""

from __future__ import annotations

import json

import pytest

from tests.support import BASE_MS, as_records, consume_all, header, make_traffic, produce, wait_for

pytestmark = pytest.mark.broker

FAULTY = ("tests.stream.runtime.faulty_worker",)


def _planted(tx_id: str, card: str = "card-boom", at: int = 0) -> tuple[bytes, bytes]:
    record = {"transaction_id": tx_id, "card_id": card, "timestamp": BASE_MS + at, "amount": 12.5}
    return card.encode(), json.dumps(record).encode()


def _scored(broker: str, settings, ids: set[str], timeout: float = 90) -> set[str]:
    scores = consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids,
                         timeout=timeout)
    return {s["transaction_id"] for s in scores}


def _faulty_worker_scoring(settings, worker_factory, broker, seed: int):
    """A faulty worker, seen scoring ordinary traffic before anything is planted."""
    worker = worker_factory(settings, name="faulty", command=FAULTY)
    before = make_traffic(n_cards=10, per_card=5, seed=seed)
    produce(broker, settings.topic_transactions, as_records(before))
    ids = {r["transaction_id"] for r in before}
    assert _scored(broker, settings, ids, timeout=180) >= ids, worker.log_tail()
    return worker


def test_a_bug_dead_letters_its_batch_as_internal_error_and_scoring_goes_on(settings, worker_factory, broker):
    worker = _faulty_worker_scoring(settings, worker_factory, broker, seed=21)

    produce(broker, settings.topic_transactions, [_planted("boom-bug-1")])
    dead = consume_all(broker, settings.topic_transactions_dlq, lambda r: len(r) >= 1, timeout=60, decode=False)
    planted = [d for d in dead if b"boom-bug-1" in (d.value or b"")]
    assert len(planted) == 1, worker.log_tail()
    assert header(planted[0], "dlq.reason") == "internal_error"
    assert "planted bug in the scoring core" in header(planted[0], "dlq.detail")
    assert planted[0].value == _planted("boom-bug-1")[1], "the DLQ keeps the record's bytes unchanged"
    assert all(header(d, "dlq.reason") == "internal_error" for d in dead)

    after = [{**r, "transaction_id": f"after-{r['transaction_id']}", "card_id": f"after-{r['card_id']}"}
             for r in make_traffic(n_cards=10, per_card=5, seed=22)]
    produce(broker, settings.topic_transactions, as_records(after))
    ids = {r["transaction_id"] for r in after}
    assert _scored(broker, settings, ids) >= ids, "the worker stopped scoring after the bug"
    assert worker.alive()


def test_partitions_mismatch_stops_the_worker_before_it_acks_its_batch(settings, worker_factory, broker):
    faulty = _faulty_worker_scoring(settings, worker_factory, broker, seed=23)

    produce(broker, settings.topic_transactions, [_planted("boom-mismatch-1")])
    assert wait_for(lambda: not faulty.alive(), timeout=90), "the worker went on after PartitionsMismatch"
    assert "planted: transactions and feedback partition counts differ" in faulty.log_tail(200)

    # The batch was never acked: the group's next worker (a sound one) gets it again and scores it.
    worker_factory(settings, name="sound")
    assert "boom-mismatch-1" in _scored(broker, settings, {"boom-mismatch-1"}), "the unacked batch was lost"
    dead = consume_all(broker, settings.topic_transactions_dlq, lambda r: False, timeout=2, decode=False)
    assert not [d for d in dead if b"boom-mismatch" in (d.value or b"")], "a misconfiguration is not bad input"
