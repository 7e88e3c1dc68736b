"""The alert budget's bar: a 60-day replay through the scoring core and the controller keeps each day's alert rate.

Generated traffic (:mod:`replay.generate`) at fraud rates of 0.2 % and 2 % is
scored by :class:`~stream.core.scoring.BatchScoring` in micro-batches of five
minutes of event time, with the threshold the controller returns after each
batch (what a worker does with the published one, without the topic's
delay); the online learner learns every fraud and one legitimate
transaction in twenty as soon as it is scored, so the scores move under the
controller as a live model's do. A day's alert rate is its model alerts
(``decision == "alert"``: no rules here) over its transactions.

Statistics decide what a test can promise: the closed loop keeps a day's count
within a few alerts of its budget (docs/alert-budget.md), so a band of
+-20 % a day needs about 100 alerts a day. ``test_every_day_within_the_bar``
is the issue's bar (0.5 % budget, 20,000 transactions a day: 0.4-0.6 % every
day after the first); scoring 2.4 million transactions takes minutes, so it
runs with ``FRAUDSTREAM_TEST_BUDGET_BAR=1`` only. The suite runs the same replay
at 3,000 a day (15 alerts a day: a day's count is honest only to about
+-60 %), and holds each week after the first day to the bar's band and the
whole replay to within 5 % of the budget.
"""

from __future__ import annotations

import os

import numpy as np
import orjson
import pytest

from models.fusion import Fusion
from models.online import OnlineLearner
from replay.generate import GeneratorConfig, generate
from stream.contracts.budget import Budget
from stream.contracts.records import Limits
from stream.core.budget import ThresholdController
from stream.core.packing import unpack_inputs
from stream.core.scoring import BatchScoring
from stream.core.source import InMemoryRecord

DAY_MS = 86_400_000
BUDGET = 0.005


def replay(fraud_rate: float, per_day: int, days: int = 60, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Alerts and transactions per day of a replay at ``fraud_rate``, ``per_day`` transactions a day."""
    table = generate(GeneratorConfig(seed=seed, n_transactions=per_day * days, n_cards=max(per_day // 2, 500),
                                     n_merchants=max(per_day // 10, 500), days=days, fraud_rate=fraud_rate,
                                     fraud_rate_bounds=(0.0, 0.05)))
    columns = table.to_pydict()
    fraud = columns.pop("is_fraud")
    columns.pop("scenario")
    names = list(columns)
    records = [InMemoryRecord(row["card_id"].encode(), orjson.dumps(row))
               for row in (dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True))]
    times = np.asarray(columns["timestamp"], dtype=np.int64)
    online = OnlineLearner()
    controller = ThresholdController(Budget(share=BUDGET), floor=0.05, ceiling=0.999, initial=0.5)
    scoring = BatchScoring(Fusion(online), Limits(1_000_000, 0, 10**13), 32, controller.threshold,
                           clock_ms=lambda: 0)
    histories: dict[bytes, object] = {}
    rng = np.random.default_rng(seed)
    start = int(times[0]) // DAY_MS * DAY_MS
    alerts, seen = np.zeros(days), np.zeros(days)
    batch = max(per_day // 288, 1)  # five minutes of event time on average
    for i in range(0, len(records), batch):
        out = scoring.score(records[i:i + batch], histories)  # type: ignore[arg-type]
        histories.update({key: history for _, key, history in out.histories})
        day = (times[i:i + batch] - start) // DAY_MS
        np.add.at(seen, day, 1)
        np.add.at(alerts, day, [orjson.loads(value)["decision"] == "alert" for _, value in out.scores])
        scoring.threshold = controller.update(np.asarray(out.fused), int(times[i:i + batch].max()),
                                              scoring.threshold)
        for j, _, entry in out.features:  # labels at once: all fraud, a twentieth of the rest
            if fraud[i + j] or rng.random() < 0.05:
                online.learn(dict(zip(online.feature_names, unpack_inputs(entry["x"]), strict=True)), fraud[i + j])
    return alerts, seen


@pytest.mark.slow
@pytest.mark.parametrize("fraud_rate", [0.002, 0.02])
def test_each_week_and_the_whole_replay_hold_the_budget(fraud_rate: float) -> None:
    alerts, seen = replay(fraud_rate, per_day=3_000)
    weekly = [alerts[d:d + 7].sum() / seen[d:d + 7].sum() for d in range(1, 60 - 6, 7)]
    assert all(0.004 <= rate <= 0.006 for rate in weekly), np.round(np.array(weekly) * 100, 3)
    assert alerts[1:].sum() / seen[1:].sum() == pytest.approx(BUDGET, rel=0.05)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FRAUDSTREAM_TEST_BUDGET_BAR") != "1",
                    reason="minutes of scoring: set FRAUDSTREAM_TEST_BUDGET_BAR=1")
@pytest.mark.parametrize("fraud_rate", [0.002, 0.02])
def test_every_day_within_the_bar(fraud_rate: float) -> None:
    alerts, seen = replay(fraud_rate, per_day=20_000)
    daily = alerts[1:] / seen[1:]
    print(f"fraud rate {fraud_rate}: daily alert rate {daily.min():.3%} to {daily.max():.3%}")
    assert ((daily >= 0.004) & (daily <= 0.006)).all(), np.round(daily * 100, 3)
