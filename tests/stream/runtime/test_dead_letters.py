"""Bad input goes to the DLQ with its reason; the worker keeps scoring the good."""

from __future__ import annotations

import json

import pytest

from tests.support import BASE_MS, as_records, consume_all, header, make_traffic, produce

pytestmark = pytest.mark.broker


def _tx(i: int, **changes: object) -> dict:
    base = {"transaction_id": f"bad-{i}", "card_id": "card-x", "timestamp": BASE_MS + i, "amount": 10.0}
    base.update(changes)
    return base


BAD: list[tuple[str, bytes, bytes | None]] = [
    ("malformed_json", b"card-x", b'{"transaction_id": "x", '),
    ("malformed_json", b"card-x", b"\xff\xfe not utf-8"),
    ("not_an_object", b"card-x", b"[1, 2, 3]"),
    ("missing_field", b"card-x", json.dumps({"transaction_id": "m1", "timestamp": BASE_MS, "amount": 1}).encode()),
    ("missing_field", b"card-x", json.dumps(_tx(1, amount=None)).encode()),
    ("invalid_type", b"card-x", json.dumps(_tx(2, amount={"value": 3})).encode()),
    ("invalid_type", b"card-x", json.dumps(_tx(3, card_id=["card-x"])).encode()),
    # NaN and Infinity are not JSON; as decimal strings they are JSON but not amounts.
    ("malformed_json", b"card-x", b'{"transaction_id": "n", "card_id": "card-x", "timestamp": 1740830400000, "amount": NaN}'),
    ("malformed_json", b"card-x", b'{"transaction_id": "i", "card_id": "card-x", "timestamp": 1740830400000, "amount": Infinity}'),
    ("invalid_amount", b"card-x", json.dumps(_tx(12, amount="NaN")).encode()),
    ("invalid_amount", b"card-x", json.dumps(_tx(4, amount=-12.5)).encode()),
    ("invalid_amount", b"card-x", json.dumps(_tx(5, amount=-0.01)).encode()),
    ("invalid_amount", b"card-x", json.dumps(_tx(6, amount="12,50")).encode()),
    ("timestamp_out_of_range", b"card-x", json.dumps(_tx(7, timestamp=1_740_830_400)).encode()),  # seconds, not ms
    ("timestamp_out_of_range", b"card-x", json.dumps(_tx(8, timestamp="2999-01-01T00:00:00Z")).encode()),
    ("invalid_timestamp", b"card-x", json.dumps(_tx(9, timestamp="last tuesday")).encode()),
    ("oversized", b"card-x", json.dumps(_tx(10, note="x" * 70_000)).encode()),
    ("key_mismatch", b"someone-else", json.dumps(_tx(11)).encode()),
    ("malformed_json", b"card-x", None),
]


def test_bad_records_dead_lettered_good_ones_scored(settings, worker_factory, broker):
    good = make_traffic(n_cards=20, per_card=10, seed=3)
    records: list[tuple[bytes | None, bytes | None]] = []
    good_records = as_records(good)
    # Interleave: a bad record after every few good ones.
    for i, rec in enumerate(good_records):
        records.append(rec)
        if i % 10 == 0 and i // 10 < len(BAD):
            _, key, value = BAD[i // 10]
            records.append((key, value))
    assert sum(1 for k, v in records if (k, v) not in set(good_records)) == len(BAD)
    worker = worker_factory(settings)
    produce(broker, settings.topic_transactions, records)

    dead = consume_all(broker, settings.topic_transactions_dlq, lambda r: len(r) >= len(BAD), timeout=90, decode=False)
    ids = {r["transaction_id"] for r in good}
    scores = consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids, timeout=60)
    assert worker.alive(), worker.log_tail()
    assert {s["transaction_id"] for s in scores} == ids, "every good record around the bad ones is scored"

    assert len(dead) == len(BAD), worker.log_tail()
    by_value = {(d.key, d.value): d for d in dead}
    for reason, key, value in BAD:
        d = by_value.get((key, value))
        assert d is not None, f"{reason} record missing from the DLQ (or its bytes changed)"
        assert header(d, "dlq.reason") == reason, header(d, "dlq.detail")
        assert header(d, "dlq.detail")
        assert header(d, "dlq.source.topic") == settings.topic_transactions
        assert int(header(d, "dlq.source.partition")) in range(settings.topic_partitions)
        assert int(header(d, "dlq.source.offset")) >= 0
    _, key, value = next(b for b in BAD if b[0] == "timestamp_out_of_range")  # the epoch-seconds one
    detail = header(by_value[key, value], "dlq.detail")
    assert "epoch seconds instead of milliseconds" in detail
