"""Feature semantics: event time only, short histories, redelivery."""

from __future__ import annotations

import time

from models.features import FEATURE_NAMES, append, engineered, prior_history
from stream.records import Transaction

H = 3_600_000
T0 = 1_740_830_400_000


def tx(i: int, at: int, amount: float = 20.0, country: str = "FR", channel: str = "pos", merchant: str = "m") -> Transaction:
    return Transaction(f"t{i}", "c", at, amount, "EUR", merchant, "5411", country, channel)


def build(txs):
    h: list = []
    for t in txs:
        h = append(h, t, limit=32)
    return h


def test_no_history_is_well_defined():
    f = engineered([], tx(0, T0))
    assert set(f) == set(FEATURE_NAMES)
    assert f["n_1h"] == f["is_new_country"] == f["amount_z"] == 0.0
    assert f["log_history_len"] == 0.0


def test_windows_count_by_event_time_not_wall_clock(monkeypatch):
    h = build([tx(1, T0 - 30 * 60_000), tx(2, T0 - 5 * H), tx(3, T0 - 3 * 24 * H)])
    f = engineered(h, tx(4, T0))
    assert (f["n_1h"], f["n_24h"], f["n_7d"]) == (1.0, 2.0, 3.0)
    monkeypatch.setattr(time, "time", lambda: 0.0)  # the wall clock must not matter
    assert engineered(h, tx(4, T0)) == f


def test_only_earlier_events_count_even_out_of_order():
    h = build([tx(1, T0), tx(2, T0 + H), tx(3, T0 - H)])
    assert [e[0] for e in h] == [T0 - H, T0, T0 + H], "history kept in event-time order"
    late = tx(9, T0 + 30 * 60_000)
    prior = prior_history(h, late)
    assert [e[0] for e in prior] == [T0 - H, T0]
    assert engineered(prior, late)["n_1h"] == 1.0


def test_redelivered_transaction_sees_the_same_history():
    txs = [tx(i, T0 + i * H) for i in range(5)]
    h = build(txs)
    assert build(txs + [txs[2]]) == h, "a duplicate is not appended twice"
    assert prior_history(h, txs[2]) == h[:2]


def test_history_is_bounded():
    h: list = []
    for i in range(50):
        h = append(h, tx(i, T0 + i * H), limit=8)
    assert len(h) == 8 and h[0][0] == T0 + 42 * H


def test_novelty_and_amount_features():
    h = build([tx(i, T0 + i * H, amount=20.0 + i) for i in range(6)])
    f = engineered(h, tx(99, T0 + 7 * H, amount=2000.0, country="BR", channel="ecom", merchant="new"))
    assert f["is_new_country"] == f["is_new_channel"] == f["is_new_merchant"] == f["is_foreign"] == 1.0
    assert f["amount_z"] > 5 and f["amount_ratio_max"] > 4
    small = engineered(h, tx(100, T0 + 5 * H + 60_000, amount=1.0))
    assert small["n_small_1h"] == 0.0 and small["log_gap_prev"] < 5
