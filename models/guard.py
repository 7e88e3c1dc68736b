"""Quality guard for the online learner: rolling ROC AUC and ADWIN on its errors.

Every label is first used to *test* the learner (prequential evaluation: the
prediction is made before the learner sees the label), then to train it. The
guard keeps a rolling ROC AUC and runs ADWIN on the absolute error. It raises
an alarm when ADWIN has detected a rise in the error within the last
``window`` labels *and* the rolling AUC is more than ``max_auc_drop`` below
the AUC of the last good snapshot; the trainer then rolls back to that
snapshot and publishes an operational alert. (ADWIN usually fires before the
rolling AUC has sunk, hence the window in which the two may meet.)

Example:
    >>> import random
    >>> rng = random.Random(1)
    >>> guard = QualityGuard(window=400, min_labels=200, min_frauds=20)
    >>> for _ in range(600):                      # a good model: fraud scores high
    ...     y = rng.random() < 0.2
    ...     alarm = guard.update(y, rng.uniform(0.6, 1.0) if y else rng.uniform(0.0, 0.4))
    >>> guard.mark_good(); round(guard.baseline_auc, 2)
    1.0
    >>> alarms = [guard.update(y, 1.0 - p) for y, p in                          # labels flipped
    ...           ((rng.random() < 0.2, rng.random()) for _ in range(600))]
    >>> any(alarms)
    True
"""

from __future__ import annotations

from collections import deque
from typing import Any

from river import drift, metrics

__all__ = ["QualityGuard"]


class QualityGuard:
    """Prequential quality tracking with a drift alarm."""

    def __init__(self, window: int = 1000, delta: float = 0.002, min_labels: int = 200,
                 max_auc_drop: float = 0.05, min_frauds: int = 20) -> None:
        self.window = window
        self.min_frauds = min_frauds
        self.delta = delta
        self.min_labels = min_labels
        self.max_auc_drop = max_auc_drop
        self.baseline_auc: float | None = None
        self.alarms = 0
        self.reset()

    def reset(self) -> None:
        """Forget the recent past (after a rollback)."""
        self._auc = metrics.RollingROCAUC(window_size=self.window)
        self._adwin = drift.ADWIN(delta=self.delta)
        self._recent: deque[bool] = deque(maxlen=self.window)
        self.seen = 0
        self._since_error_rise: int | None = None

    @property
    def rolling_auc(self) -> float | None:
        """ROC AUC over the last ``window`` labels; None while it holds fewer than ``min_frauds`` frauds.

        With ~1 % fraud a window of 1,000 labels holds about ten frauds, and an
        AUC over ten positives swings by 0.1 from one label to the next: it
        must not decide a rollback.
        """
        if sum(self._recent) < self.min_frauds or len(self._recent) - sum(self._recent) < self.min_frauds:
            return None
        value = float(self._auc.get())
        return value if 0.0 < value <= 1.0 else None

    @property
    def error_rate(self) -> float:
        """ADWIN's current estimate of the mean absolute error."""
        return float(self._adwin.estimation)

    def update(self, label: bool | int, score: float) -> bool:
        """Record one prequential prediction; True when quality dropped significantly."""
        before = self._adwin.estimation
        self._auc.update(bool(label), float(score))
        self._recent.append(bool(label))
        self._adwin.update(abs(float(bool(label)) - float(score)))
        self.seen += 1
        if self._adwin.drift_detected and self._adwin.estimation > before:
            self._since_error_rise = 0
        elif self._since_error_rise is not None:
            self._since_error_rise += 1
            if self._since_error_rise > self.window:
                self._since_error_rise = None
        if self._since_error_rise is None:
            return False
        auc = self.rolling_auc
        if self.seen < self.min_labels or self.baseline_auc is None or auc is None:
            return False
        if auc < self.baseline_auc - self.max_auc_drop:
            self.alarms += 1
            self._since_error_rise = None
            return True
        return False

    def healthy(self) -> bool:
        """True when the learner may be marked as a good snapshot now."""
        auc = self.rolling_auc
        if auc is None or self.seen < self.min_labels:
            return False
        return self.baseline_auc is None or auc >= self.baseline_auc - self.max_auc_drop

    def mark_good(self) -> None:
        """Remember the current rolling AUC as the level to hold."""
        self.baseline_auc = self.rolling_auc

    def state(self) -> dict[str, Any]:
        return {"rolling_auc": self.rolling_auc, "baseline_auc": self.baseline_auc,
                "error_rate": self.error_rate, "labels_seen": self.seen, "alarms": self.alarms}
