"""Latency percentiles, nearest rank: the one definition the benchmark and ``fraudstream evaluate`` report.

A percentile here is one of the measured values (the value at rank
``round(q * (n - 1))`` of the sorted list), never an interpolation between
two records: a p99 of 80 ms means a record took 80 ms. The benchmark's
floor and engine latencies (:mod:`stream.tools.bench`) and the evaluation's
latency figures (:func:`replay.metrics.latency_percentiles`) both use it, so
a figure from one can be set beside a figure from the other.

Example:
    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5), percentile([], 0.99)
    (3.0, None)
    >>> percentile([10.0, 20.0], 0.99)  # a measured value, not 19.9
    20.0
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["percentile"]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0 to 1) of ``values``, nearest rank; ``None`` for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
