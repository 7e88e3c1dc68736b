"""The drift guard: quiet on steady quality, alarmed by a real drop."""

from __future__ import annotations

import random

from models.guard import QualityGuard


def stream(rng, n, good=True, fraud_rate=0.05):
    for _ in range(n):
        y = rng.random() < fraud_rate
        p = rng.uniform(0.5, 1.0) if y == good else rng.uniform(0.0, 0.5)
        yield y, p


def test_too_few_frauds_give_no_auc():
    guard = QualityGuard(window=1000, min_frauds=20)
    for i in range(1000):
        guard.update(i % 100 == 0, 0.9 if i % 100 == 0 else 0.1)  # ten frauds in the window
    assert guard.rolling_auc is None and not guard.healthy()


def test_no_alarm_on_steady_noisy_quality():
    rng = random.Random(3)
    guard = QualityGuard(window=500, min_labels=200)
    alarms = 0
    for i, (y, p) in enumerate(stream(rng, 5000)):
        # A decent but noisy model: some fraud scored low, some legit high.
        if rng.random() < 0.1:
            p = 1 - p
        alarms += guard.update(y, p)
        if i % 500 == 499 and guard.healthy():
            guard.mark_good()
    assert alarms == 0
    assert guard.rolling_auc is not None and guard.rolling_auc > 0.8


def test_alarm_when_quality_collapses_and_reset_clears_it():
    rng = random.Random(4)
    guard = QualityGuard(window=400, min_labels=200)
    for y, p in stream(rng, 1000, fraud_rate=0.2):
        guard.update(y, p)
    guard.mark_good()
    assert any(guard.update(y, p) for y, p in stream(rng, 1000, good=False, fraud_rate=0.2))
    guard.reset()
    assert guard.seen == 0 and guard.rolling_auc is None and guard.alarms == 1
