"""The alert-budget controller over in-memory score batches: bounds, steps, the closed loop, takeover."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contracts.budget import Budget, BudgetError
from stream.contracts.settings import Settings, SettingsError
from stream.core.budget import REPORT_MOVE, LogitSketch, ThresholdController, decode_batch, encode_batch

MINUTE = 60_000


def logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize(("text", "budget"), [
    ("0.5%", Budget(share=0.005)), ("0.005", Budget(share=0.005)), (" 2 % ", Budget(share=0.02)),
    ("20/h", Budget(per_hour=20.0)), ("2.5 / h", Budget(per_hour=2.5)), ("", None),
])
def test_budget_parses_shares_and_counts_per_hour(text: str, budget: Budget | None) -> None:
    assert Budget.parse(text) == budget


@pytest.mark.parametrize(("text", "says"), [
    ("0", "above 0 and below 1"), ("100%", "above 0 and below 1"), ("5", "for a count per hour write 5/h"),
    ("0/h", "above 0"), ("half", "is not a budget"), ("20/day", "is not a budget"),
])
def test_a_bad_budget_is_refused_with_what_to_write(text: str, says: str) -> None:
    with pytest.raises(BudgetError, match=says):
        Budget.parse(text)
    with pytest.raises(SettingsError, match="FRAUDSTREAM_ALERT_BUDGET"):
        Settings.from_env({"FRAUDSTREAM_ALERT_BUDGET": text})


def test_floor_above_ceiling_is_refused() -> None:
    with pytest.raises(SettingsError, match="floor"):
        Settings.from_env({"FRAUDSTREAM_ALERT_THRESHOLD_FLOOR": "0.9", "FRAUDSTREAM_ALERT_THRESHOLD_CEILING": "0.5"})


def test_sketch_quantiles_are_within_a_bin() -> None:
    rng = np.random.default_rng(3)
    scores = rng.beta(1, 20, 200_000)
    sketch = LogitSketch()
    sketch.add(scores)
    for share in (0.001, 0.005, 0.05, 0.5):
        exact = float(np.quantile(scores, 1 - share))
        assert abs(logit(sketch.upper_quantile(share)) - logit(exact)) < 0.03


def test_batch_record_round_trips_and_refuses_garbage() -> None:
    event_ms, threshold, scores = decode_batch(encode_batch(np.array([0.1, 0.9]), 5, 0.75))
    assert (event_ms, threshold) == (5, 0.75) and scores.tolist() == pytest.approx([0.1, 0.9])
    with pytest.raises(BudgetError, match="is not a header and float32 scores"):
        decode_batch(b"short")


def test_threshold_stays_fixed_until_warm() -> None:
    c = ThresholdController(Budget(share=0.01), 0.0, 1.0, initial=0.5)
    for minute in range(30):  # 1,500 scores: fewer than the 20 / 0.01 = 2,000 of the warm-up
        assert c.update(np.full(50, 0.99), minute * MINUTE, c.threshold) == 0.5


def test_alert_share_converges_to_the_budget_per_hour() -> None:
    """20 alerts an hour at 6,000 transactions an hour: a share of 1/300."""
    c = ThresholdController(Budget(per_hour=20), 0.0, 1.0, initial=0.5)
    rng = np.random.default_rng(5)
    alerts = n = 0
    for minute in range(48 * 60):
        scores = rng.beta(1, 10, 100)
        if minute >= 24 * 60:
            alerts += int(np.count_nonzero(scores >= c.threshold))
            n += len(scores)
        c.update(scores, minute * MINUTE, c.threshold)
    assert alerts / 24 == pytest.approx(20, rel=0.1)


def test_closed_loop_corrects_a_model_that_shifts_its_scores() -> None:
    """The scores jump up by a logit unit: the threshold follows within hours, the day's alerts stay near budget."""
    c = ThresholdController(Budget(share=0.005), 0.0, 1.0, initial=0.5)
    rng = np.random.default_rng(9)
    day_alerts = []
    for day in range(3):
        alerts = n = 0
        for minute in range(24 * 60):
            z = rng.normal(-4 + (1.0 if day == 2 or (day == 1 and minute > 720) else 0.0), 1.0, 20)
            scores = 1 / (1 + np.exp(-z))
            alerts += int(np.count_nonzero(scores >= c.threshold))
            n += len(scores)
            c.update(scores, (day * 1440 + minute) * MINUTE, c.threshold)
        day_alerts.append(alerts / n)
    assert day_alerts[1] == pytest.approx(0.005, rel=0.2) and day_alerts[2] == pytest.approx(0.005, rel=0.2)


batches = st.lists(st.tuples(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30), st.integers(0, 30 * MINUTE)),
                   min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(batches=batches, floor=st.floats(0.0, 0.5), width=st.floats(0.0, 0.5), share=st.floats(0.001, 0.3))
def test_threshold_respects_floor_and_ceiling_and_steps(batches: list[tuple[list[float], int]], floor: float,
                                                         width: float, share: float) -> None:
    ceiling = floor + width
    c = ThresholdController(Budget(share=share), floor, ceiling, initial=0.5, max_step=0.5)
    now = 0
    before = c.threshold
    settled = False
    for scores, gap in batches:
        now += gap
        after = c.update(np.array(scores), now, before)
        assert floor <= after <= ceiling
        if settled:  # the first move goes to the sketch's answer; every later one is bounded
            lo, hi = (min(max(1 / (1 + math.exp(-(logit(min(max(before, 1e-9), 1 - 1e-9)) + d))), floor), ceiling)
                      for d in (-0.5 - 1e-9, 0.5 + 1e-9))
            assert lo - 1e-9 <= after <= hi + 1e-9
        settled = c.settled
        before = after


def test_one_burst_moves_the_threshold_one_step_at_most() -> None:
    c = ThresholdController(Budget(share=0.01), 0.0, 1.0, initial=0.5)
    rng = np.random.default_rng(1)
    for minute in range(12 * 60):
        c.update(rng.beta(1, 30, 50), minute * MINUTE, c.threshold)
    before = c.threshold
    after = c.update(np.full(5_000, 0.999), 12 * 60 * MINUTE + 5 * MINUTE, before)  # an attack's burst
    assert abs(logit(after) - logit(before)) <= 0.5 + 1e-9


def test_moves_are_reported_once_past_the_report_move() -> None:
    c = ThresholdController(Budget(share=0.01), 0.0, 1.0, initial=0.5)
    rng = np.random.default_rng(2)
    records = []
    for minute in range(6 * 60):
        c.update(rng.beta(1, 30, 50), minute * MINUTE, c.threshold)
        moved = c.moved()
        if moved is not None:
            records.append(moved)
    assert records and records[0]["old"] == 0.5 and records[0]["type"] == "alert_threshold_moved"
    assert all(abs(r["new"] - r["old"]) >= REPORT_MOVE for r in records)
    assert {"budget_share", "alert_share", "transactions_per_hour", "event_time"} <= set(records[0])


def test_a_new_owner_goes_on_from_the_published_state() -> None:
    a = ThresholdController(Budget(share=0.01), 0.0, 1.0, initial=0.5)
    b = ThresholdController(Budget(share=0.01), 0.0, 1.0, initial=0.5)
    rng = np.random.default_rng(4)
    for minute in range(6 * 60):
        a.update(rng.beta(1, 30, 50), minute * MINUTE, a.threshold)
    b.restore(a.state())
    scores = rng.beta(1, 30, 50)
    assert b.update(scores, 6 * 60 * MINUTE, b.threshold) == pytest.approx(
        a.update(scores, 6 * 60 * MINUTE, a.threshold), abs=1e-6)


def _day(c: ThresholdController, day: int, night_shift: float) -> list[float]:
    """One day of 20 scores a minute: from midnight to 6 the scores sit ``night_shift`` logits lower (the model's
    scores follow the hour). Returns each hour's share of transactions alerted."""
    rng = np.random.default_rng(day)
    hourly = [0.0] * 24
    for minute in range(24 * 60):
        z = rng.normal(-4 - (night_shift if minute < 360 else 0.0), 1.0, 20)
        scores = 1 / (1 + np.exp(-z))
        hourly[minute // 60] += np.count_nonzero(scores >= c.threshold) / (20 * 60)
        c.update(scores, (day * 1440 + minute) * MINUTE, c.threshold)
    return hourly


def test_a_quiet_night_at_the_floor_is_made_up_by_the_day() -> None:
    """The night's top scores sit under the floor: no alerts then, and the rest of the day gets the day's budget."""
    c = ThresholdController(Budget(share=0.005), floor=0.05, ceiling=0.999, initial=0.5)
    shares = [sum(_day(c, day, night_shift=4.0)) / 24 for day in range(4)]
    assert all(s == pytest.approx(0.005, rel=0.06) for s in shares[1:]), shares  # without: 0.44 %
