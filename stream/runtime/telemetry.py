"""Prometheus metrics for a worker, served at ``/metrics``.

Counters come from :class:`stream.runtime.stats.Stats` at scrape time (one source of
truth for ``/stats/``, the periodic log line and Prometheus); histograms and
gauges are kept here.

Metric names: ``fraudstream_events_in_total{topic}``, ``fraudstream_scores_out_total``,
``fraudstream_alerts_total``, ``fraudstream_dlq_total{topic,reason}``,
``fraudstream_labels_total{outcome}``, ``fraudstream_snapshots_total{outcome}``,
``fraudstream_rollbacks_total``, ``fraudstream_batch_size``,
``fraudstream_stage_seconds{stage}``, ``fraudstream_latency_seconds``,
``fraudstream_consumer_lag{topic,partition}``,
``fraudstream_model_info{model,version}``, ``fraudstream_online_rolling_auc``,
``fraudstream_rule_hits_total{rule}``, ``fraudstream_rule_failures_total{rule}``, ``fraudstream_rules_loaded``,
``fraudstream_rules_refused_total``, ``fraudstream_alert_threshold`` (the model threshold in force: fixed, or the
alert budget's).

Example:
    >>> from stream.runtime.stats import Stats
    >>> t = Telemetry(Stats())
    >>> t.stats.scored += 3; t.observe_batch(3)
    >>> b"fraudstream_scores_out_total 3.0" in t.render()
    True
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.runtime.stats import Stats

__all__ = ["Telemetry"]

# Up to 10 s: the delivery stage waits on the broker, which can take seconds when it struggles.
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StatsCollector(Collector):
    def __init__(self, stats: Stats, topic: str) -> None:
        self.stats = stats
        self.topic = topic

    def collect(self) -> Iterator[Any]:
        s = self.stats
        events_in = CounterMetricFamily("fraudstream_events_in_total", "Records consumed (valid or not).",
                                        labels=["topic"])
        events_in.add_metric([self.topic], s.events_in)
        yield events_in
        for name, value, doc in (
            ("fraudstream_scores_out_total", s.scored, "Score records produced."),
            ("fraudstream_alerts_total", s.alerts, "Alert records produced."),
            ("fraudstream_rollbacks_total", s.rollbacks, "Online-model rollbacks by the drift guard."),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        dlq = CounterMetricFamily("fraudstream_dlq_total", "Dead letters by topic and reason.", labels=["topic", "reason"])
        for key, value in sorted(s.dlq.items()):
            topic, reason = key.rsplit(":", 1)
            dlq.add_metric([topic, reason], value)
        yield dlq
        labels = CounterMetricFamily("fraudstream_labels_total", "Labels by outcome.", labels=["outcome"])
        for outcome, value in (("forwarded", s.labels_forwarded), ("learned", s.labels_learned),
                               ("duplicate", s.labels_duplicate), ("capped", s.labels_capped),
                               ("entity_unrouted", s.entity_labels_unrouted)):
            labels.add_metric([outcome], value)
        yield labels
        snaps = CounterMetricFamily("fraudstream_snapshots_total", "Model snapshots by outcome.", labels=["outcome"])
        for outcome, value in (("published", s.snapshots_published), ("installed", s.snapshots_installed),
                               ("rejected", s.snapshots_rejected)):
            snaps.add_metric([outcome], value)
        yield snaps
        hits = CounterMetricFamily("fraudstream_rule_hits_total", "Records each rule hit (active or shadow).",
                                   labels=["rule"])
        for rule, value in sorted(s.rule_hits.items()):
            hits.add_metric([rule], value)
        yield hits
        failures = CounterMetricFamily("fraudstream_rule_failures_total",
                                       "Records a rule failed on at run time (scored without it).", labels=["rule"])
        for rule, value in sorted(s.rule_failures.items()):
            failures.add_metric([rule], value)
        yield failures
        yield GaugeMetricFamily("fraudstream_rules_loaded", "Enabled rules in force.", value=s.rules_loaded)
        yield CounterMetricFamily("fraudstream_rules_refused_total",
                                  "Rule records that did not decode or compile (the previous version stays).",
                                  value=s.rules_refused)
        features = GaugeMetricFamily("fraudstream_features_expired", "Scoring-time feature entries expired.",
                                     value=s.features_expired)
        yield features


class Telemetry:
    """A worker's metrics registry."""

    def __init__(self, stats: Stats, topic: str = "transactions") -> None:
        self.stats = stats
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StatsCollector(stats, topic))
        self.batch_size = Histogram("fraudstream_batch_size", "Transactions per micro-batch.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)
        self.stage_seconds = Histogram("fraudstream_stage_seconds", "Time per batch in each stage.", ["stage"],
                                       buckets=_STAGE_BUCKETS, registry=self.registry)
        self.latency = Histogram("fraudstream_latency_seconds",
                                 "End to end: score produced minus transaction's Kafka timestamp.",
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.hop_latency = Histogram("fraudstream_hop_latency_seconds",
                                     "With entities: a transaction's arrival to its enriched record's (the entity hops).",
                                     buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.consumer_lag = Gauge("fraudstream_consumer_lag", "Records not yet read, per partition.",
                                  ["topic", "partition"], registry=self.registry)
        self.table_keys = Gauge("fraudstream_table_keys", "Keys this worker holds per table (memory store only).",
                                ["table"], registry=self.registry)
        self.model_info = Gauge("fraudstream_model_info", "1 for each model version in use.", ["model", "version"],
                                registry=self.registry)
        self.rolling_auc = Gauge("fraudstream_online_rolling_auc", "Online learner's rolling ROC AUC on feedback "
                                 "(trainer worker only; NaN elsewhere).", registry=self.registry)
        self.rolling_auc.set(float("nan"))
        self.alert_threshold = Gauge("fraudstream_alert_threshold", "The model threshold in force (the fixed one, or "
                                     "the alert budget's as last published).", registry=self.registry)
        self._versions: dict[str, str] = {}

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_latencies(self, seconds: Sequence[float], histogram: Histogram | None = None) -> None:
        """``latency.observe(s)`` (or ``histogram``'s) for each of a micro-batch's latencies, one increment per bucket.

        prometheus_client's ``observe`` takes a lock and walks the buckets for every value, a cost
        paid per transaction on the score path; here each value costs a bisect. The buckets and count
        are exactly observe()'s; the sum is added once per batch (it may differ in its last bit).
        Uses the histogram's bucket and sum values, and falls back to ``observe`` if a release
        renames them.

        >>> from stream.runtime.stats import Stats
        >>> t = Telemetry(Stats())
        >>> t.observe_latencies([0.004, 0.005, 0.3, 12.0])
        >>> [line for line in t.render().decode().splitlines() if line.startswith("fraudstream_latency_seconds_")][:2]
        ['fraudstream_latency_seconds_bucket{le="0.005"} 2.0', 'fraudstream_latency_seconds_bucket{le="0.01"} 2.0']
        """
        histogram = self.latency if histogram is None else histogram
        bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
        if not (isinstance(bounds, list) and isinstance(buckets, list) and len(bounds) == len(buckets)
                and total is not None and hasattr(total, "inc")):
            for value in seconds:
                histogram.observe(value)
            return
        counts = [0] * len(bounds)
        for value in seconds:
            # observe() counts a value in the first bucket whose bound is >= it (NaN in none).
            if not math.isnan(value):
                counts[bisect.bisect_left(bounds, value)] += 1
        for bucket, count in zip(buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        total.inc(sum(seconds))

    def observe_stages(self, seconds: Mapping[str, float]) -> None:
        for stage, value in seconds.items():
            self.stage_seconds.labels(stage).observe(value)
            self.stats.stage_seconds[stage] = self.stats.stage_seconds.get(stage, 0.0) + value

    def set_versions(self, versions: Mapping[str, str]) -> None:
        for model, version in versions.items():
            old = self._versions.get(model)
            if old == version:
                continue
            if old is not None:
                self.model_info.remove(model, old)
            self.model_info.labels(model, version).set(1)
            self._versions[model] = version

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
