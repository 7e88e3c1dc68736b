"""Per-stage wall time within one micro-batch.

Example:
    >>> clock = StageClock()
    >>> clock.lap("decode"); clock.lap("state"); clock.lap("decode")
    >>> sorted(clock.seconds)
    ['decode', 'state']
    >>> clock.add({"online": 0.5}); clock.seconds["online"]
    0.5
"""

from __future__ import annotations

import time
from collections.abc import Mapping

__all__ = ["StageClock"]


class StageClock:
    """Accumulates the time since the previous lap under a stage name."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + (now - self._last)
        self._last = now

    def add(self, seconds: Mapping[str, float]) -> None:
        """Book time measured elsewhere (e.g. per model inside fusion); the next lap excludes it."""
        total = 0.0
        for stage, value in seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + value
            total += value
        self._last += total
