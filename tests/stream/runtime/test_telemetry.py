"""Telemetry: a micro-batch's latencies land in the histogram as observe() per value would put them."""

from __future__ import annotations

from stream.runtime.stats import Stats
from stream.runtime.telemetry import Telemetry


def _latency_lines(t: Telemetry) -> list[str]:
    return [line for line in t.render().decode().splitlines()
            if line.startswith(("fraudstream_latency_seconds_bucket", "fraudstream_latency_seconds_count",
                                "fraudstream_latency_seconds_sum"))]


def test_batch_latency_observation_counts_as_observing_each_value() -> None:
    # Bounds themselves (0.005, 0.25, 10.0: a bound is inclusive), values between and beyond them, and
    # dyadic values so that the sum, added once per batch instead of per value, is exact too.
    batches = [[0.0, 0.005, 0.25, 0.5, 2.0, 10.0, 12.0], [0.125, 0.0625, 0.25], [], [1024.0]]
    one_by_one, batched = Telemetry(Stats()), Telemetry(Stats())
    for batch in batches:
        for v in batch:
            one_by_one.latency.observe(v)
        batched.observe_latencies(batch)
        assert _latency_lines(batched) == _latency_lines(one_by_one)
    assert len(_latency_lines(batched)) == 14 and 'fraudstream_latency_seconds_count 11.0' in _latency_lines(batched)
    # The bucket-at-once path, not the per-value fallback (a prometheus_client release may rename its parts).
    assert isinstance(batched.latency._upper_bounds, list) and len(batched.latency._buckets) == 12


def test_a_nan_latency_is_counted_in_no_bucket() -> None:
    t = Telemetry(Stats())
    t.observe_latencies([float("nan"), 0.004])
    buckets = [line for line in _latency_lines(t) if "_bucket" in line]
    assert buckets[0] == 'fraudstream_latency_seconds_bucket{le="0.005"} 1.0'
    assert buckets[-1] == 'fraudstream_latency_seconds_bucket{le="+Inf"} 1.0'
