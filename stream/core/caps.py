"""Per-source caps on labels, against feedback poisoning.

Whoever can write to the feedback topic can retrain the model: a flood of
forged "legit" labels on fraud-like transactions would teach the online
learner to let that fraud through. Two defences, both in the trainer (which
sees every label): ACLs on the topic (docs/operating.md), and this cap: at most
``max_per_hour`` labels per source per hour of the labelled transactions'
event time. Event time, not the wall clock, so a replay of history is capped
exactly as live traffic would have been. Labels over the cap go to the
feedback DLQ (``source_rate_limited``) and are counted in the ops stream.

Example:
    >>> cap = SourceCap(max_per_hour=2)
    >>> [cap.allow("portal", 1_000) for _ in range(3)]
    [True, True, False]
    >>> cap.allow("chargeback", 1_000), cap.allow("portal", 3_600_000)
    (True, True)
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["SourceCap"]

_HOUR_MS = 3_600_000
_KEEP_HOURS = 72  # older buckets are forgotten; labels that late are rare and still capped per hour


class SourceCap:
    """Counts labels per (source, event hour); ``max_per_hour`` <= 0 disables it."""

    def __init__(self, max_per_hour: int) -> None:
        self.max_per_hour = max_per_hour
        self._counts: dict[tuple[str, int], int] = defaultdict(int)
        self._newest_hour = 0
        self.rejected: dict[str, int] = defaultdict(int)

    def allow(self, source: str, event_time_ms: int) -> bool:
        if self.max_per_hour <= 0:
            return True
        hour = event_time_ms // _HOUR_MS
        if hour > self._newest_hour:
            self._newest_hour = hour
            if len(self._counts) > 10_000:
                self._prune()
        key = (source, hour)
        if self._counts[key] >= self.max_per_hour:
            self.rejected[source] += 1
            return False
        self._counts[key] += 1
        return True

    def _prune(self) -> None:
        oldest = self._newest_hour - _KEEP_HOURS
        for key in [k for k in self._counts if k[1] < oldest]:
            del self._counts[key]
