"""Pace and progress of a replay: speed, rate and durations; a drift-free schedule; the bar.

Three paces: ``max`` sends as fast as the producer takes events; ``60x``
compresses event-time gaps 60-fold; ``2000/s`` (``--rate 2000``) sends a
fixed number of events per second whatever their timestamps.

The :class:`Schedule` computes each event's due time from one anchor
(``anchor_wall + (t - anchor_t) / speed``, or ``+ (i - anchor_i) / rate``)
rather than sleeping "gap / speed" after each send, so sleep overshoot and
send time never accumulate into drift. It is a token bucket whose capacity is
``max_lag_s``: after a stall (a slow broker, a paused laptop) it catches up at
most ``max_lag_s`` worth of events at full speed, then re-anchors, instead of
bursting everything that fell behind.

Example:
    >>> pace = Pace.parse("60x"); pace
    Pace(mode='speed', value=60.0)
    >>> now = [100.0]
    >>> s = Schedule(pace, clock=lambda: now[0])
    >>> times = np.array([0, 60_000, 120_000, 600_000])   # event times, ms
    >>> s.start(0, int(times[0]))
    >>> s.due_count(0, times), s.delay(1, int(times[1]))    # 60 s of event time = 1 s of wall time
    (1, 1.0)
    >>> now[0] = 102.5
    >>> s.due_count(1, times[1:])
    2
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Literal

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

__all__ = ["Pace", "Schedule", "format_duration_ms", "make_bar", "parse_duration_ms"]

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """``30s``, ``15m``, ``2h``, ``7d`` (or ``1d12h``, ``0``) to milliseconds.

    >>> parse_duration_ms("7d"), parse_duration_ms("1h30m"), parse_duration_ms("0")
    (604800000, 5400000, 0)
    >>> parse_duration_ms("soon")
    Traceback (most recent call last):
    ...
    ValueError: duration 'soon' is not like 30s, 15m, 2h or 7d
    """
    compact = text.strip().lower().replace(" ", "")
    if compact == "0":
        return 0
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"duration {text!r} is not like 30s, 15m, 2h or 7d")
    return round(sum(float(n) * _UNITS_MS[u] for n, u in parts))


def format_duration_ms(ms: int) -> str:
    """The shortest exact form :func:`parse_duration_ms` reads back.

    >>> format_duration_ms(604800000), format_duration_ms(90_000), format_duration_ms(0)
    ('7d', '90s', '0')
    """
    if ms == 0:
        return "0"
    for unit in ("d", "h", "m", "s", "ms"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    raise AssertionError("unreachable: every integer is a whole number of ms")


@dataclass(frozen=True)
class Pace:
    """How fast to send: ``max``, ``speed`` (``value``-times real time) or ``rate`` (``value`` events/s)."""

    mode: Literal["max", "speed", "rate"] = "max"
    value: float = 0.0

    @classmethod
    def parse(cls, speed: str | None = None, rate: float | None = None) -> Pace:
        """From ``--speed max|Nx`` or ``--rate N`` (not both).

        >>> Pace.parse(rate=2000), Pace.parse("max"), str(Pace.parse("2.5x"))
        (Pace(mode='rate', value=2000.0), Pace(mode='max', value=0.0), '2.5x')
        >>> Pace.parse("fast")
        Traceback (most recent call last):
        ...
        ValueError: --speed 'fast': use max or a factor like 60x
        """
        if rate is not None:
            if speed is not None:
                raise ValueError("give --speed or --rate, not both")
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"--rate must be > 0 events per second, got {rate}")
            return cls("rate", float(rate))
        if speed is None or speed.strip().lower() == "max":
            return cls("max")
        match = re.fullmatch(r"(\d+(?:\.\d+)?)x", speed.strip().lower())
        if not match or float(match.group(1)) <= 0:
            raise ValueError(f"--speed {speed!r}: use max or a factor like 60x")
        return cls("speed", float(match.group(1)))

    def __str__(self) -> str:
        if self.mode == "max":
            return "max"
        return f"{self.value:g}x" if self.mode == "speed" else f"{self.value:g}/s"


class Schedule:
    """Wall-clock due times of events, from one anchor (see the module docstring).

    Event ``i`` (its index in the replay) with event time ``t`` ms is due at
    ``anchor_wall + (t - anchor_t) / 1000 / speed`` or
    ``anchor_wall + (i - anchor_i) / rate``. Times passed in must not decrease.
    """

    def __init__(self, pace: Pace, clock: Callable[[], float] = time.monotonic, max_lag_s: float = 1.0) -> None:
        self.pace = pace
        self.clock = clock
        self.max_lag_s = max_lag_s
        self._wall = 0.0
        self._index = 0
        self._time_ms = 0

    def start(self, index: int, time_ms: int) -> None:
        """Anchor: event ``index`` (event time ``time_ms``) is due now."""
        self._wall, self._index, self._time_ms = self.clock(), index, time_ms

    def _due(self, index: int, time_ms: int) -> float:
        if self.pace.mode == "rate":
            return self._wall + (index - self._index) / self.pace.value
        if self.pace.mode == "speed":
            return self._wall + (time_ms - self._time_ms) / 1000.0 / self.pace.value
        return -math.inf

    def delay(self, index: int, time_ms: int) -> float:
        """Seconds until event ``index`` is due (<= 0: due now)."""
        return self._due(index, time_ms) - self.clock()

    def due_count(self, index: int, times_ms: npt.NDArray[np.int64]) -> int:
        """How many of the events ``index, index+1, ...`` (event times ``times_ms``) are due now."""
        if self.pace.mode == "max" or len(times_ms) == 0:
            return len(times_ms)
        now = self.clock()
        if now - self._due(index, int(times_ms[0])) > self.max_lag_s:
            # Fell behind by more than the bucket holds: forget the backlog.
            self._wall, self._index, self._time_ms = now - self.max_lag_s, index, int(times_ms[0])
        if self.pace.mode == "rate":
            sendable = math.floor((now - self._wall) * self.pace.value) - (index - self._index) + 1
            return max(0, min(len(times_ms), sendable))
        horizon = self._time_ms + (now - self._wall) * 1000.0 * self.pace.value
        return int(np.searchsorted(times_ms, horizon, side="right"))


def make_bar(total: int, initial: int, quiet: bool, stream: IO[str] | None = None) -> tqdm:
    """A tqdm bar with rate and ETA on stderr; silent when ``quiet`` or stderr is not a terminal."""
    stream = sys.stderr if stream is None else stream
    enabled = not quiet and stream.isatty()
    return tqdm(total=total, initial=initial, unit="ev", unit_scale=True, file=stream,
                disable=not enabled, desc="replay", dynamic_ncols=True, smoothing=0.1, mininterval=0.2)
