"""The batch baseline sees the features the stream computes, and learns from them."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from models.features import FEATURE_NAMES, engineered
from models.history import append, new_history, prior_history
from replay import baseline
from replay.generate import GeneratorConfig, generate
from replay.metrics import roc_auc
from stream.records import Transaction


def table() -> pa.Table:
    return generate(GeneratorConfig(seed=4, n_transactions=3_000, n_cards=80, n_merchants=60, days=6,
                                    fraud_rate=0.04, fraud_rate_bounds=(0.0, 0.1)))


HOUR = 3_600_000
T6 = 1_735_711_200_000  # 2025-01-01T06:00:00Z


@pytest.mark.parametrize("chunk", [1, 2, 4096])
def test_features_of_a_tiny_table_by_hand(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Three transactions of card a an hour apart and one of card b, out of time order in the file."""
    monkeypatch.setattr(baseline, "_CHUNK", chunk)
    rows = [  # transaction_id, card, time, amount, merchant, channel
        ("a3", "a", T6 + 2 * HOUR, 1000.0, "m1", "pos"),
        ("b1", "b", T6 + 2 * HOUR, 50.0, "m9", "pos"),
        ("a2", "a", T6 + HOUR, 100.0, "m2", "ecom"),
        ("a1", "a", T6, 10.0, "m1", "pos"),
    ]
    data = pa.table({
        "transaction_id": [r[0] for r in rows], "card_id": [r[1] for r in rows], "timestamp": [r[2] for r in rows],
        "amount": [r[3] for r in rows], "currency": ["EUR"] * 4, "merchant_id": [r[4] for r in rows],
        "mcc": ["5411"] * 4, "country": ["FR"] * 4, "channel": [r[5] for r in rows],
    })
    x = baseline.feature_matrix(data)
    got = [dict(zip(FEATURE_NAMES, row, strict=True)) for row in x.tolist()]
    a3, b1, a2, a1 = got
    no_gap = math.log1p(30 * 86_400)  # no earlier transaction reads as a month-long gap

    def hour(h: int) -> dict[str, float]:
        return {"hour_sin": math.sin(2 * math.pi * h / 24), "hour_cos": math.cos(2 * math.pi * h / 24)}

    first = {"amount_z": 0.0, "amount_ratio_max": 0.0, "n_1h": 0, "n_24h": 0, "n_7d": 0, "log_sum_24h": 0.0,
             "log_gap_prev": no_gap, "n_small_1h": 0, "is_new_merchant": 0, "is_new_mcc": 0, "is_new_country": 0,
             "is_new_channel": 0, "is_foreign": 0, "log_history_len": 0.0, "is_ecom": 0}
    assert a1 == pytest.approx({**first, "log_amount": math.log1p(10), **hour(6)})
    assert b1 == pytest.approx({**first, "log_amount": math.log1p(50), **hour(8)})
    # a2: a1 exactly an hour before (inside the hour), a new merchant and channel, 10x the largest amount.
    assert a2 == pytest.approx({
        "log_amount": math.log1p(100), "amount_z": 0.0, "amount_ratio_max": math.log(10), "n_1h": 1, "n_24h": 1,
        "n_7d": 1, "log_sum_24h": math.log1p(10), "log_gap_prev": math.log1p(3600), "n_small_1h": 0,
        "is_new_merchant": 1, "is_new_mcc": 0, "is_new_country": 0, "is_new_channel": 1, "is_foreign": 0,
        "log_history_len": math.log1p(1), "is_ecom": 1, **hour(7)})
    # a3: two earlier amounts, so a z-score against their log mean and sample spread; a1 is two hours old.
    logs = [math.log1p(10), math.log1p(100)]
    mean = sum(logs) / 2
    spread = math.sqrt(sum((v - mean) ** 2 for v in logs) / 1)
    assert a3 == pytest.approx({
        "log_amount": math.log1p(1000), "amount_z": (math.log1p(1000) - mean) / max(spread, 0.25),
        "amount_ratio_max": math.log(10), "n_1h": 1, "n_24h": 2, "n_7d": 2, "log_sum_24h": math.log1p(110),
        "log_gap_prev": math.log1p(3600), "n_small_1h": 0, "is_new_merchant": 0, "is_new_mcc": 0,
        "is_new_country": 0, "is_new_channel": 0, "is_foreign": 0, "log_history_len": math.log1p(2), "is_ecom": 0,
        **hour(8)})


def test_features_are_the_streams_row_by_row_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows shuffled out of time order, chunks of 7: each row equals engineered() on the history the worker builds.

    engineered() is the same feature code (the tiny table above pins its values by hand): what this checks is
    the replay, each card's history rebuilt in event time across chunks, against the worker's append().
    """
    data = table()
    shuffled = data.take(pa.array(np.random.default_rng(1).permutation(data.num_rows)))
    monkeypatch.setattr(baseline, "_CHUNK", 7)
    x = baseline.feature_matrix(shuffled)
    assert x.shape == (data.num_rows, len(FEATURE_NAMES))
    rows = shuffled.to_pylist()
    histories: dict[str, object] = {}
    for i in sorted(range(len(rows)), key=lambda i: rows[i]["timestamp"]):  # stable: ties keep table order
        r = rows[i]
        t = Transaction(r["transaction_id"], r["card_id"], r["timestamp"], r["amount"], r["currency"],
                        r["merchant_id"], r["mcc"], r["country"], r["channel"])
        history = histories.get(t.card_id, new_history())
        want = engineered(prior_history(history, t), t)
        assert x[i].tolist() == [want[name] for name in FEATURE_NAMES], i
        histories[t.card_id] = append(history, t, 32)


def test_the_baseline_ranks_fraud_above_legit() -> None:
    data = table()
    x = baseline.feature_matrix(data)
    y = np.asarray(data["is_fraud"].to_pylist(), dtype=np.int64)
    assert 0 < y.sum() < len(y)
    half = len(y) // 2
    p = baseline.fit_predict(x[:half], y[:half], x[half:])
    assert p.shape == (len(y) - half,) and ((p >= 0) & (p <= 1)).all()
    assert roc_auc(y[half:], p) > 0.8


def test_class_weights_balance_the_two_classes() -> None:
    """Weighted loss with an unpenalised intercept: at the optimum the legit rows' summed probability equals
    the fraud rows' summed (1 - p) times the weight n_legit / n_fraud, so the two mean errors are equal."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, 1.0, (300, 2)), rng.normal(1.0, 1.0, (30, 2))])
    y = np.array([0] * 300 + [1] * 30)
    p = baseline.fit_predict(x, y, x)
    assert p[y == 0].mean() == pytest.approx((1 - p[y == 1]).mean(), abs=1e-3)
    # Unweighted, the legit mean error would be a tenth of the fraud one; here both are far from 0 and 1.
    assert 0.2 < p[y == 0].mean() < 0.5
    low, mid, high = baseline.fit_predict(x, y, np.array([[-3.0, -3.0], [0.0, 0.0], [3.0, 3.0]]))
    assert low < mid < high and low < 0.05 and high > 0.95
