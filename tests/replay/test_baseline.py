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
from stream.contracts.records import Transaction

CARD_VISIBLE = {"large_amount": 1.0, "compromised_card": 1.0, "card_testing": 1.0, "account_takeover": 1.0}


def table() -> pa.Table:
    """Fraud the card's own features can see (breached terminals are left to the terminal features)."""
    return generate(GeneratorConfig(seed=4, n_transactions=3_000, n_cards=80, n_merchants=60, days=6,
                                    fraud_rate=0.04, fraud_rate_bounds=(0.0, 0.1), scenario_mix=CARD_VISIBLE))


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


DAY = 86_400_000
DELAY = 7 * DAY
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def terminal_table(rows: list[tuple[str, str, int, int]]) -> pa.Table:
    return pa.table({"transaction_id": [r[0] for r in rows], "merchant_id": [r[1] for r in rows],
                     "timestamp": [r[2] for r in rows], "is_fraud": [r[3] for r in rows]})


def by_name(x: np.ndarray, windows: tuple[int, ...] = (1, 7, 30)) -> list[dict[str, float]]:
    return [dict(zip(baseline.terminal_feature_names(windows), row, strict=True)) for row in x.tolist()]


def test_terminal_features_of_a_tiny_table_by_hand() -> None:
    """Terminal m1 with a fraud (a) and a legit (b) at the same millisecond, labels seven days later."""
    rows = [  # out of time order on purpose: results come back in table order
        ("f", "m1", T0 + DELAY + DAY, 0),
        ("a", "m1", T0, 1),
        ("e", "m2", T0 + DELAY, 0),
        ("d", "m1", T0 + DELAY, 0),
        ("b", "m1", T0, 0),
        ("c", "m1", T0 + DELAY - 1, 0),
    ]
    got = dict(zip([r[0] for r in rows], by_name(baseline.terminal_features(terminal_table(rows), DELAY)),
                   strict=True))
    nothing = dict.fromkeys(baseline.TERMINAL_FEATURE_NAMES, 0.0)
    # a and b: nothing earlier (a transaction at the same millisecond is not earlier); e: another terminal.
    assert got["a"] == got["b"] == got["e"] == nothing
    # c, a millisecond before a's and b's labels arrive: both seen in the 7- and 30-day counts, no label known.
    assert got["c"] == {**nothing, "terminal_n_7d": 2, "terminal_n_30d": 2}
    # d, exactly when the labels arrive: one fraud of two labelled. a and b are exactly 7 days old: outside
    # the open 7-day window of counts (t - 7 d, t), inside the 30-day one.
    assert got["d"] == {
        "terminal_n_1d": 1, "terminal_known_fraud_1d": 1, "terminal_known_risk_1d": 0.5,  # c, a day old at most
        "terminal_n_7d": 1, "terminal_known_fraud_7d": 1, "terminal_known_risk_7d": 0.5,
        "terminal_n_30d": 3, "terminal_known_fraud_30d": 1, "terminal_known_risk_30d": 0.5,
    }
    # f, a day later: the labels are exactly a day old, so out of the 1-day window; c's label is not in yet.
    assert got["f"] == {
        "terminal_n_1d": 0, "terminal_known_fraud_1d": 0, "terminal_known_risk_1d": 0.0,  # d is a day old
        "terminal_n_7d": 2, "terminal_known_fraud_7d": 1, "terminal_known_risk_7d": 0.5,  # c, d
        "terminal_n_30d": 4, "terminal_known_fraud_30d": 1, "terminal_known_risk_30d": 0.5,
    }


@pytest.mark.parametrize(("before", "known"), [(1, 0.0), (0, 1.0)])
def test_a_label_counts_from_its_labelled_at_never_a_millisecond_earlier(before: int, known: float) -> None:
    rows = [("a", "m1", T0, 1), ("x", "m1", T0 + DELAY - before, 0)]
    x = by_name(baseline.terminal_features(terminal_table(rows), DELAY))[1]
    assert [x[f"terminal_known_fraud_{d}d"] for d in (1, 7, 30)] == [known] * 3
    assert [x[f"terminal_known_risk_{d}d"] for d in (1, 7, 30)] == [known] * 3


def test_without_delay_no_row_sees_its_own_label_or_a_simultaneous_one() -> None:
    rows = [("a", "m1", T0, 1), ("b", "m1", T0, 1), ("c", "m1", T0 + 1, 0)]
    a, b, c = by_name(baseline.terminal_features(terminal_table(rows), 0, windows_days=[1]), (1,))
    assert a == b == {"terminal_n_1d": 0, "terminal_known_fraud_1d": 0, "terminal_known_risk_1d": 0.0}
    assert c == {"terminal_n_1d": 2, "terminal_known_fraud_1d": 2, "terminal_known_risk_1d": 1.0}


def test_terminal_features_refuse_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="label_delay_ms must be >= 0"):
        baseline.terminal_features(terminal_table([("a", "m1", T0, 0)]), -1)


def test_gbt_ranks_a_simple_signal_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2_000, 4))
    y = (x[:, 0] + 0.3 * rng.normal(size=2_000) > 1.5).astype(np.int64)
    p = baseline.fit_predict_gbt(x[:1_000], y[:1_000], x[1_000:], rounds=50, threads=1)
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc(y[1_000:], p) > 0.9
    assert np.array_equal(p, baseline.fit_predict_gbt(x[:1_000], y[:1_000], x[1_000:], rounds=50, threads=1))


def test_gbt_finds_breached_terminals_that_the_card_features_cannot() -> None:
    """Only compromised-terminal fraud, labels a day late: the terminal's known risk gives the later frauds away."""
    config = GeneratorConfig(seed=4, n_transactions=6_000, n_cards=300, n_merchants=200, days=20, fraud_rate=0.05,
                             fraud_rate_bounds=(0.0, 0.1), scenario_mix={"compromised_terminal": 1.0})
    data = generate(config)
    y = np.asarray(data["is_fraud"].to_pylist(), dtype=np.int64)
    train = np.asarray(data["timestamp"].to_pylist()) < config.start_ms + 12 * DAY
    assert y[train].sum() > 20 and y[~train].sum() > 20
    cards = baseline.feature_matrix(data)
    both = np.hstack([cards, baseline.terminal_features(data, DAY)])
    with_terminal = roc_auc(y[~train], baseline.fit_predict_gbt(both[train], y[train], both[~train],
                                                                rounds=100, threads=1))
    card_only = roc_auc(y[~train], baseline.fit_predict_gbt(cards[train], y[train], cards[~train],
                                                            rounds=100, threads=1))
    assert with_terminal > 0.85
    assert card_only < with_terminal - 0.15
