"""Feature semantics: event time only, short histories, redelivery."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from models.features import FEATURE_NAMES, engineered, engineered_batch
from models.history import append, new_history, prior_history
from models.history_windows import scored_windows
from stream.contracts.records import Transaction

H = 3_600_000
T0 = 1_740_830_400_000


def tx(i: int, at: int, amount: float = 20.0, country: str = "FR", channel: str = "pos", merchant: str = "m") -> Transaction:
    return Transaction(f"t{i}", "c", at, amount, "EUR", merchant, "5411", country, channel)


def build(txs):
    h = new_history()
    for t in txs:
        h = append(h, t, limit=32)
    return h


def test_no_history_is_well_defined():
    f = engineered(new_history(), tx(0, T0))
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
    h = new_history()
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


def _reference_engineered(history, t):
    """The features by their definitions, one entry at a time (what the columnar engineered() must equal)."""
    from collections import Counter
    from math import cos, log, log1p, pi, sin, sqrt

    from models.hashing import stable_hash
    from models.history import AMOUNT, CHANNEL, COUNTRY, MCC, MERCHANT, TS
    day = 24 * H
    now, n = t.event_time_ms, len(history)
    ages = [now - e[TS] for e in history]
    total_24h = 0.0
    for e, age in zip(history, ages):
        if age <= day:
            total_24h += e[AMOUNT]
    logs = [log1p(e[AMOUNT]) for e in history]
    z = 0.0
    if n >= 2:
        mean = sum(logs) / n
        z = (log1p(t.amount) - mean) / max(sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1)), 0.25)
    home = Counter(e[COUNTRY] for e in history).most_common(1)[0][0] if n else None
    hour = (now % day) / H
    return {
        "log_amount": log1p(t.amount), "amount_z": z,
        "amount_ratio_max": log(max(t.amount, 0.01) / max(max(e[AMOUNT] for e in history), 0.01)) if n else 0.0,
        "n_1h": float(sum(a <= H for a in ages)), "n_24h": float(sum(a <= day for a in ages)),
        "n_7d": float(sum(a <= 7 * day for a in ages)), "log_sum_24h": log1p(total_24h),
        "log_gap_prev": log1p(max(now - history[-1][TS], 0) / 1000.0 if n else 30 * 86_400.0),
        "n_small_1h": float(sum(a <= H and e[AMOUNT] < 5.0 for e, a in zip(history, ages))),
        "is_new_merchant": float(n > 0 and all(e[MERCHANT] != stable_hash(t.merchant_id) for e in history)),
        "is_new_mcc": float(n > 0 and all(e[MCC] != t.mcc for e in history)),
        "is_new_country": float(n > 0 and all(e[COUNTRY] != t.country for e in history)),
        "is_new_channel": float(n > 0 and all(e[CHANNEL] != t.channel for e in history)),
        "is_foreign": float(n > 0 and home != t.country), "log_history_len": log1p(n),
        "hour_sin": sin(2 * pi * hour / 24), "hour_cos": cos(2 * pi * hour / 24),
        "is_ecom": float(t.channel == "ecom"),
    }


def random_cases(count: int, seed: int = 7):
    """(prior history, transaction) pairs with ties, window edges, repeats and empty histories."""
    import random

    rng = random.Random(seed)
    for _ in range(count):
        txs, at = [], T0
        for i in range(rng.randrange(0, 40)):
            at += rng.choice([0, 1_000, 59 * 60_000, H, 5 * H, 23 * H, 24 * H, 3 * 24 * H])  # ties and window edges
            txs.append(tx(i, at, amount=rng.choice([0.5, 4.99, 5.0, 20.0, rng.lognormvariate(3, 1)]),
                          country=rng.choice(["FR", "FR", "DE", "BR"]), channel=rng.choice(["pos", "ecom"]),
                          merchant=f"m{rng.randrange(6)}"))
        t = tx(999, at + rng.choice([0, 1, H, 24 * H, 7 * 24 * H]), amount=rng.choice([1.0, 80.0]),
               country=rng.choice(["FR", "BR"]), merchant=f"m{rng.randrange(8)}")
        yield prior_history(build(txs), t), t


def test_engineered_equals_the_per_entry_definitions():
    for case, (prior, t) in enumerate(random_cases(300)):
        got, want = engineered(prior, t), _reference_engineered(prior, t)
        assert list(got) == list(FEATURE_NAMES)
        # Counts and flags exactly; logs and cycles to the last bits (NumPy's log1p and sin
        # may round differently from the math module's by an ulp).
        for name in FEATURE_NAMES:
            assert math.isclose(got[name], want[name], rel_tol=1e-12, abs_tol=1e-12), (case, name, got[name], want[name])
            if name.startswith(("n_", "is_")):
                assert got[name] == want[name], (case, name)


def test_a_row_does_not_depend_on_its_batch():
    """What replay relies on: live traffic and a replay batch differently, the features must not care."""
    cases = list(random_cases(200, seed=11))
    batch = engineered_batch([h for h, _ in cases], [t for _, t in cases])
    assert batch.shape == (200, len(FEATURE_NAMES))
    for i, (prior, t) in enumerate(cases):
        assert np.array_equal(batch[i], engineered_batch([prior], [t])[0]), i
    assert engineered_batch([], []).shape == (0, len(FEATURE_NAMES))


def test_a_batch_needs_one_history_per_transaction():
    with pytest.raises(ValueError, match="1 histories for 2 transactions"):
        engineered_batch([new_history()], [tx(0, T0), tx(1, T0)])


def test_shared_windows_give_the_same_features():
    """The score agent gathers a batch once for features and sequence model: same features as gathered here."""
    cases = list(random_cases(120, seed=12))
    priors, transactions = [h for h, _ in cases], [t for _, t in cases]
    alone = engineered_batch(priors, transactions)
    for width in (None, 40):  # the longest history, or wider
        windows = scored_windows(priors, transactions, width)
        assert np.array_equal(engineered_batch(priors, transactions, windows), alone)
    windows = scored_windows(priors, transactions)
    for other_priors, other_transactions in ((priors[::-1], transactions), (priors, transactions[::-1])):
        with pytest.raises(ValueError, match="entry counts or transaction times differ"):
            engineered_batch(other_priors, other_transactions, windows)
    with pytest.raises(ValueError, match="read-only"):  # shared by the batch's items: nobody writes to them
        windows.ts[0, 0] = 1


def test_engineered_batch_equals_the_earlier_numpy_code_bit_for_bit():
    """The compiled per-history loop gives the whole-array NumPy code's values exactly (tests/models/features_reference)."""
    from tests.models.features_reference import reference_engineered_batch
    from tests.models.test_steps import as_transaction, labelled_table, serve

    for seed in (7, 8, 9):
        cases = list(random_cases(400, seed=seed))
        priors, transactions = [h for h, _ in cases], [t for _, t in cases]
        foreign = FEATURE_NAMES.index("is_foreign")
        got = engineered_batch(priors, transactions)
        assert np.array_equal(got, reference_engineered_batch(priors, transactions))
        assert 0 < got[:, foreign].sum() < len(cases)  # both sides of the most-common-country rule
    items = serve([as_transaction(r) for r in labelled_table(seed=9).to_pylist()], limit=32)
    priors, transactions = [i.history for i in items], [i.transaction for i in items]
    assert max(len(h) for h in priors) == 32
    assert np.array_equal(engineered_batch(priors, transactions), reference_engineered_batch(priors, transactions))


def test_zero_amount_checks_are_features_not_errors() -> None:
    """Zero-amount authorisations (card verification, card testing) give finite features, counted as small."""
    from models.history import append, new_history
    from stream.contracts.records import Transaction

    h = new_history()
    for i in range(3):
        h = append(h, Transaction(f"z{i}", "c", T0 + i * 60_000, 0.0, "EUR", "m1"), 16)
    f = engineered(h, Transaction("z9", "c", T0 + 5 * 60_000, 0.0, "EUR", "m1"))
    assert all(np.isfinite(v) for v in f.values()), f
    assert f["n_small_1h"] == 3 and f["amount_ratio_max"] == 0.0 and f["log_amount"] == 0.0
    big = engineered(h, Transaction("z10", "c", T0 + 6 * 60_000, 50.0, "EUR", "m1"))
    assert big["amount_ratio_max"] == pytest.approx(np.log(50.0 / 0.01))  # against a one-cent floor
