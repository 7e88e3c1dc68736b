"""The batch baseline sees the features the stream computes, and learns from them."""

from __future__ import annotations

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


def test_features_are_the_streams_row_by_row_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows shuffled out of time order, chunks of 7: each row equals engineered() on the history the worker builds."""
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
