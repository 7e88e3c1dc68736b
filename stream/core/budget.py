"""The alert budget: the model threshold that keeps the model's alerts at a share of transactions.

``FRAUDSTREAM_ALERT_BUDGET`` (:class:`Budget`) is a share of transactions
(``0.5%`` or ``0.005``) or a count per hour of event time (``20/h``, turned
into a share with the transaction rate seen). :class:`ThresholdController`
turns the fused scores of recent micro-batches into the threshold in force.
No Faust, no Kafka: the budget agent (:mod:`stream.runtime.agents.budget`)
feeds it what workers send and publishes what it returns.

The method (docs/alert-budget.md has the reasons and the measurements):

1. **Sketch.** The recent fused scores live in a histogram of 1,200 bins of
   0.02 in logit space (scores 6e-6 to 0.999994; the ends collect the rest),
   decayed with a half-life of ``half_life_ms`` of event time (default 1 h).
   It answers any upper quantile to within a bin (interpolated) in bounded
   memory, forgets in event time (a replay behaves as live traffic), and its
   state is an array that a new owner takes over. River's ``Quantile`` (P²)
   never forgets and ``RollingQuantile`` forgets by count, each at one fixed
   level; the closed loop below moves the level.
2. **Closed loop.** Sampling alone puts a day's alert count off its budget by
   about one over the square root of the expected count (10 % at 100 a day),
   and scores move under the sketch (the model learns; night and day traffic
   differ). So the controller counts the *debt*: the model's alerts minus the
   budget's share of the transactions, both at the thresholds actually in
   force, and aims the sketch at the level ``share - debt / H``, where ``H``
   is the transactions expected in ``horizon_ms`` (1 h) or in
   ``horizon_alerts`` (10) expected alerts, whichever is more: an excess is
   paid back within a few hours, and a day's count is off its budget by about
   what accrues in one horizon. The level stays within
   ``[share / 4, 4 * share]`` and the debt within what that range pays back
   in four horizons (no wind-up). The excess while the threshold is held at
   the ceiling is not counted (an attack's alerts are real); the shortfall
   of a quiet spell at the floor is, within that bound, and the busier hours
   after it make it up, so a day with a quiet night still gets its budget.
   After an attack the sketch holds its scores for a few half-lives: the
   threshold comes down over those hours (docs/alert-budget.md).
3. **Bounds.** Every ``update_every_ms`` of event time (default 5 min) the
   threshold moves at most ``max_step`` in logit space (default 0.5, about
   0.1 near 0.5) towards the sketch's answer, and never leaves
   ``[floor, ceiling]``: a burst cannot swing it, a quiet night cannot lower
   it past the floor, an attack cannot raise it past the ceiling (above which
   everything alerts, budget or not).
4. **Warm-up.** Until ``20 / share`` scores are seen (20 expected alerts), the
   threshold stays at ``initial`` (the fixed ``FRAUDSTREAM_ALERT_THRESHOLD``,
   within the bounds) and no debt is counted; the first move then goes
   straight to the sketch's quantile at the budget's share.

Rules' alerts are outside the budget: only ``score >= threshold`` is counted,
and a rule's ``alert``/``block``/``allow`` decides on top of it as before.

Example:
    >>> import numpy as np
    >>> c = ThresholdController(Budget.parse("0.5%"), floor=0.01, ceiling=0.999, initial=0.5)
    >>> rng = np.random.default_rng(0)
    >>> alerts = []
    >>> for minute in range(2 * 24 * 60):  # two days of 100 transactions a minute
    ...     scores = rng.beta(1, 30, 100)
    ...     alerts.append(int(np.count_nonzero(scores >= c.threshold)))
    ...     _ = c.update(scores, minute * 60_000, c.threshold)
    >>> round(sum(alerts[24 * 60:]) / (24 * 60 * 100), 4)  # the second day's share of transactions alerted
    0.005
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.contracts.budget import Budget, BudgetError

__all__ = ["REPORT_MOVE", "Budget", "BudgetError", "LogitSketch", "ThresholdController", "decode_batch",
           "encode_batch"]  # Budget and BudgetError live in stream.contracts.budget (the settings validate with them)

#: A move of the threshold at least this large (in score units) since the last one reported goes to the ops topic.
REPORT_MOVE = 0.01

_LOGIT_MAX = 12.0
_BIN = 0.02
_BINS = round(2 * _LOGIT_MAX / _BIN)
_EPS = 1.0 / (1.0 + math.exp(_LOGIT_MAX))
_BATCH_HEADER = struct.Struct("<qd")
#: The closed loop aims the sketch at a level within [share / _LEVEL_RANGE, share * _LEVEL_RANGE].
_LEVEL_RANGE = 4.0
#: The debt is kept within what the level's range pays back in this many horizons.
_WINDUP = 4.0


class LogitSketch:
    """Scores in fixed logit bins, decayed in event time: any upper quantile, in bounded memory.

    >>> s = LogitSketch()
    >>> s.add(np.array([0.1, 0.2, 0.3, 0.9]))
    >>> round(s.upper_quantile(0.25), 2), round(s.upper_quantile(0.5), 2), s.total  # a quarter, a half at or above
    (0.9, 0.3, 4.0)
    """

    def __init__(self, counts: npt.NDArray[np.float64] | None = None) -> None:
        self.counts = np.zeros(_BINS) if counts is None else np.asarray(counts, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def add(self, scores: npt.NDArray[np.floating[Any]]) -> None:
        """Count ``scores`` (in [0, 1]; NaN ignored)."""
        s = np.asarray(scores, dtype=np.float64)
        s = np.clip(s[~np.isnan(s)], _EPS, 1.0 - _EPS)
        at = np.clip(((np.log(s) - np.log1p(-s) + _LOGIT_MAX) / _BIN).astype(np.int64), 0, _BINS - 1)
        self.counts += np.bincount(at, minlength=_BINS)

    def decay(self, factor: float) -> None:
        self.counts *= factor

    def upper_quantile(self, share: float) -> float:
        """The score with ``share`` of the counted mass at or above it (linear within a bin); 1.0 when empty."""
        total = self.total
        if total <= 0.0:
            return 1.0
        want = share * total
        above = np.cumsum(self.counts[::-1])  # above[k]: mass in the k+1 highest bins
        k = int(np.searchsorted(above, want))
        if k >= _BINS:
            return _EPS
        b = _BINS - 1 - k  # the bin where the mass reaches ``want``
        inside = self.counts[b]
        before = above[k] - inside
        frac = 0.0 if inside <= 0 else (want - before) / inside  # of the bin, from its top
        edge = -_LOGIT_MAX + (b + 1 - frac) * _BIN
        return float(1.0 / (1.0 + math.exp(-edge)))


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p) - math.log1p(-p)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class ThresholdController:
    """Fused scores of micro-batches in, the model threshold in force out (see the module's docstring)."""

    def __init__(self, budget: Budget, floor: float, ceiling: float, initial: float, *,
                 half_life_ms: float = 3_600_000, horizon_ms: float = 3_600_000, horizon_alerts: float = 10.0,
                 update_every_ms: int = 300_000, max_step: float = 0.5) -> None:
        if not 0.0 <= floor <= ceiling <= 1.0:
            raise BudgetError(f"alert threshold floor {floor} and ceiling {ceiling} must satisfy "
                              "0 <= floor <= ceiling <= 1")
        self.budget = budget
        self.floor, self.ceiling = floor, ceiling
        self.threshold = min(max(initial, floor), ceiling)
        self.half_life_ms, self.horizon_ms, self.horizon_alerts = half_life_ms, horizon_ms, horizon_alerts
        self.update_every_ms, self.max_step = update_every_ms, max_step
        self.sketch = LogitSketch()
        #: Transactions and the model's alerts, decayed as the sketch is; the debt (not decayed: paid back).
        self.seen = self.alerts = self.debt = 0.0
        self.count = 0  # every score ever counted (the warm-up)
        self.started_ms: int | None = None
        self.now_ms = 0
        self.updated_ms = 0
        #: The threshold last reported on the ops topic (:meth:`moved`).
        self.reported = self.threshold
        #: False until the first move, which goes straight to the sketch's answer (no step bound, no debt yet).
        self.settled = False

    @property
    def tau_ms(self) -> float:
        return self.half_life_ms / math.log(2.0)

    def per_hour(self) -> float:
        """Transactions per hour of event time, from the decayed count (corrected while the window fills)."""
        if self.started_ms is None:
            return 0.0
        filled = 1.0 - math.exp(-max(self.now_ms - self.started_ms, 1) / self.tau_ms)
        return self.seen / (self.tau_ms * filled) * 3_600_000

    def share(self) -> float:
        """The share of transactions the budget allows now."""
        return self.budget.share_at(self.per_hour())

    def alert_share(self) -> float:
        """The share of recent transactions (decayed) that the model alerted on."""
        return self.alerts / self.seen if self.seen > 0 else 0.0

    @property
    def warm(self) -> bool:
        return self.started_ms is not None and self.count >= 20.0 / max(self.share(), 1e-9)

    def update(self, scores: npt.NDArray[np.floating[Any]], event_ms: int, threshold_used: float) -> float:
        """Count a micro-batch's fused ``scores`` (latest event time ``event_ms``), scored at ``threshold_used``.

        Returns the threshold in force from now on.
        """
        s = np.asarray(scores, dtype=np.float64)
        if self.started_ms is None:
            self.started_ms = self.now_ms = self.updated_ms = event_ms
        elif event_ms > self.now_ms:  # batches of several workers interleave: the clock is the latest time seen
            factor = math.exp(-(event_ms - self.now_ms) / self.tau_ms)
            self.sketch.decay(factor)
            self.seen *= factor
            self.alerts *= factor
            self.now_ms = event_ms
        alerted = float(np.count_nonzero(s >= threshold_used))
        warm = self.warm
        self.sketch.add(s)
        self.seen += len(s)
        self.alerts += alerted
        self.count += len(s)
        if warm and self.settled:
            excess = alerted - self.share() * len(s)
            # Not an attack's excess at the ceiling: its alerts are real, and paying them back would blind the hours
            # after it. A quiet spell's shortfall at the floor counts (bounded in _move): the day makes it up.
            if not (excess > 0 and threshold_used >= self.ceiling):
                self.debt += excess
        if self.now_ms - self.updated_ms >= self.update_every_ms and self.warm:
            self.updated_ms = self.now_ms
            self._move()
        return self.threshold

    def _move(self) -> None:
        share = self.share()
        if not self.settled:
            self.settled = True
            self.threshold = min(max(self.sketch.upper_quantile(share), self.floor), self.ceiling)
            return
        # Transactions in one horizon: at least horizon_ms of event time and horizon_alerts expected alerts (at a
        # few alerts an hour, a shorter horizon would make the loop chase single alerts).
        expected = max(self.per_hour() * self.horizon_ms / 3_600_000, self.horizon_alerts / share)
        # Anti-windup: no more debt than the level's range pays back in a few horizons.
        low, high = share / _LEVEL_RANGE, share * _LEVEL_RANGE
        self.debt = min(max(self.debt, _WINDUP * (share - high) * expected), _WINDUP * (share - low) * expected)
        level = min(max(share - self.debt / expected, low), high)
        target = _logit(self.sketch.upper_quantile(level))
        now = _logit(self.threshold)
        step = min(max(target - now, -self.max_step), self.max_step)
        self.threshold = min(max(_sigmoid(now + step), self.floor), self.ceiling)

    def moved(self) -> dict[str, Any] | None:
        """An ops record when the threshold moved :data:`REPORT_MOVE` or more since the last one, else None."""
        if abs(self.threshold - self.reported) < REPORT_MOVE:
            return None
        record = {"type": "alert_threshold_moved", "old": round(self.reported, 6), "new": round(self.threshold, 6),
                  "budget_share": round(self.share(), 6), "alert_share": round(self.alert_share(), 6),
                  "transactions_per_hour": round(self.per_hour(), 1), "event_time": self.now_ms}
        self.reported = self.threshold
        return record

    def state(self) -> dict[str, Any]:
        """What a new owner needs to go on where this one stopped (JSON-safe)."""
        return {"threshold": self.threshold, "seen": self.seen, "alerts": self.alerts, "debt": self.debt,
                "count": self.count, "started_ms": self.started_ms, "now_ms": self.now_ms,
                "updated_ms": self.updated_ms, "reported": self.reported, "settled": self.settled,
                "sketch": base64.b64encode(self.sketch.counts.astype("<f4").tobytes()).decode()}

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from :meth:`state` of a previous owner (the threshold kept within this one's bounds).

        >>> a = ThresholdController(Budget(share=0.01), 0.1, 0.9, 0.5)
        >>> _ = a.update(np.linspace(0, 1, 101), 1_000, 0.5)
        >>> b = ThresholdController(Budget(share=0.01), 0.1, 0.9, 0.5); b.restore(a.state())
        >>> b.sketch.total, b.count, b.now_ms
        (101.0, 101, 1000)
        """
        counts = np.frombuffer(base64.b64decode(state["sketch"]), dtype="<f4").astype(np.float64)
        if counts.shape != (_BINS,):
            raise BudgetError(f"controller state has {counts.size} sketch bins, not {_BINS}")
        self.sketch = LogitSketch(counts)
        self.threshold = min(max(float(state["threshold"]), self.floor), self.ceiling)
        self.seen, self.alerts, self.debt = float(state["seen"]), float(state["alerts"]), float(state["debt"])
        self.count = int(state["count"])
        self.started_ms = None if state["started_ms"] is None else int(state["started_ms"])
        self.now_ms, self.updated_ms = int(state["now_ms"]), int(state["updated_ms"])
        self.reported = float(state["reported"])
        self.settled = bool(state.get("settled", True))


def encode_batch(scores: npt.NDArray[np.floating[Any]] | list[float], event_ms: int, threshold: float) -> bytes:
    """One micro-batch's fused scores for the budget topic: latest event time, threshold used, float32 scores.

    >>> event_ms, threshold, scores = decode_batch(encode_batch([0.25, 0.75], 1_000, 0.5))
    >>> event_ms, threshold, scores.tolist()
    (1000, 0.5, [0.25, 0.75])
    """
    return _BATCH_HEADER.pack(event_ms, threshold) + np.asarray(scores, dtype="<f4").tobytes()


def decode_batch(value: bytes) -> tuple[int, float, npt.NDArray[np.float32]]:
    """``(event_ms, threshold, scores)`` of :func:`encode_batch`; :class:`BudgetError` for a record that is not one."""
    if len(value) < _BATCH_HEADER.size or (len(value) - _BATCH_HEADER.size) % 4:
        raise BudgetError(f"budget record of {len(value)} bytes is not a header and float32 scores")
    event_ms, threshold = _BATCH_HEADER.unpack_from(value)
    return int(event_ms), float(threshold), np.frombuffer(value, dtype="<f4", offset=_BATCH_HEADER.size)
