"""Detection quality: the engine's score records joined with the true labels.

Scores come from the ``scores`` topic (or a JSONL dump of it), labels from the
file :mod:`replay.generate` wrote. Delivery is at least once, so scores are
deduplicated by ``transaction_id`` (the first record wins) before anything is
counted. Joined rows are put in ``(event_time, transaction_id)`` order, so the
figures do not depend on the order in which partitions were consumed.

The figures come from :mod:`replay.metrics` (ROC AUC, average precision,
card precision@k as in the Fraud-Detection-Handbook, recall at an alert
budget, latency percentiles); card precision@k is reported per day and as
the mean of the daily values. A figure that is undefined on the data (no
fraud, or no legitimate rows, for AUC) is ``None``, so results are always
valid JSON.

Example:
    >>> scores = [
    ...     {"transaction_id": "t1", "card_id": "a", "event_time": 0, "score": 0.1, "decision": "pass"},
    ...     {"transaction_id": "t2", "card_id": "b", "event_time": 1, "score": 0.4, "decision": "pass"},
    ...     {"transaction_id": "t3", "card_id": "c", "event_time": 2, "score": 0.35, "decision": "pass"},
    ...     {"transaction_id": "t4", "card_id": "d", "event_time": 3, "score": 0.8, "decision": "alert"},
    ... ]
    >>> labels = {"t1": 0, "t2": 0, "t3": 1, "t4": 1}
    >>> overall = evaluate(scores, labels, k=2)["overall"]
    >>> overall["roc_auc"], round(overall["average_precision"], 4), overall["card_precision_at_k"]
    (0.75, 0.8333, 0.5)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from replay.generate import read
from replay.metrics import (
    BoolArray,
    FloatArray,
    IntArray,
    average_precision,
    card_precision_at_k,
    known_compromised,
    latency_percentiles,
    precision_recall_curve,
    recall_at_alert_rate,
    roc_auc,
)
from replay.report import format_headline, write_report
from stream.contracts.settings import Settings, SettingsError

__all__ = [
    "Label",
    "cli",
    "compute_curves",
    "consume_scores",
    "dedupe",
    "evaluate",
    "load_labels",
    "load_scores_jsonl",
]

_DAY_MS = 86_400_000
LEGIT = "legit"  # per-scenario key of rows without fraud
UNNAMED_FRAUD = "fraud"  # per-scenario key of fraud rows whose label names no scenario


class Label(NamedTuple):
    """The truth about one transaction."""

    is_fraud: int
    scenario: str = ""


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def dedupe(scores: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Keep the first score record of each ``transaction_id``, in input order.

    >>> [r["score"] for r in dedupe([{"transaction_id": "a", "score": 1},
    ...                              {"transaction_id": "a", "score": 2},
    ...                              {"transaction_id": "b", "score": 3}])]
    [1, 3]
    """
    seen: dict[str, dict[str, Any]] = {}
    for record in scores:
        # Records are kept, not copied: a million score dicts are costly to copy.
        seen.setdefault(str(record["transaction_id"]), record if isinstance(record, dict) else dict(record))
    return list(seen.values())


def load_scores_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Score records from a file of one JSON object per line, deduplicated."""
    with Path(path).open(encoding="utf-8") as lines:
        return dedupe(json.loads(line) for line in lines if line.strip())


def consume_scores(
    bootstrap_servers: str, topic: str, timeout_s: float = 30.0, expected: int | None = None,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """Read every score record on ``topic`` from the beginning, deduplicated.

    Stops once ``expected`` distinct transactions have been read, or after
    ``timeout_s`` seconds without a new record. No consumer group is joined
    (nothing is committed, nothing else's offsets move): all partitions are
    assigned to this consumer directly. The consumer uses the TLS / SASL
    options of ``settings`` (default: none), with ``bootstrap_servers`` in
    place of the settings' own.
    """
    from kafka import TopicPartition  # imported here: the offline paths never need kafka

    from stream.kafka import clients

    settings = (settings or Settings()).replace(bootstrap_servers=bootstrap_servers)
    consumer = clients.consumer(settings, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id="fraudstream-evaluate")
    seen: dict[str, dict[str, Any]] = {}
    try:
        # The topic may not exist yet when evaluation starts alongside the engine.
        partitions = clients.wait_for_partitions(consumer, topic, timeout_s)
        if not partitions:
            return []
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        last_new = time.monotonic()
        while expected is None or len(seen) < expected:
            batch = consumer.poll(timeout_ms=200)
            count = len(seen)
            for records in batch.values():
                for message in records:
                    if message.value is None:  # a tombstone carries no score
                        continue
                    record = json.loads(message.value)
                    seen.setdefault(str(record["transaction_id"]), record)
            if len(seen) > count:
                last_new = time.monotonic()
            elif time.monotonic() - last_new > timeout_s:
                break
    finally:
        consumer.close()
    return list(seen.values())


def load_labels(path: str | Path) -> dict[str, Label]:
    """``transaction_id -> Label`` from a CSV or Parquet file.

    Needs columns ``transaction_id`` and ``is_fraud``; ``scenario`` is used
    when present.
    """
    table = read(path)
    missing = {"transaction_id", "is_fraud"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: label file lacks columns {sorted(missing)}")
    ids = table["transaction_id"].to_pylist()
    fraud = table["is_fraud"].to_numpy(zero_copy_only=False).astype(np.int64).tolist()
    has_scenario = "scenario" in table.column_names
    scenario = [s or "" for s in table["scenario"].to_pylist()] if has_scenario else [""] * len(ids)
    return {str(t): Label(f, s) for t, f, s in zip(ids, fraud, scenario, strict=True)}


# --------------------------------------------------------------------------
# Joining scores with labels
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Joined:
    """Scored, labelled transactions as parallel arrays in event-time order."""

    card: npt.NDArray[np.str_]
    day: IntArray
    y: BoolArray
    s: FloatArray
    alert: BoolArray
    latency: FloatArray
    threshold: FloatArray
    scenario: npt.NDArray[np.str_]
    components: dict[str, FloatArray]
    coverage: dict[str, int]

    def take(self, mask: BoolArray) -> _Joined:
        return _Joined(self.card[mask], self.day[mask], self.y[mask], self.s[mask], self.alert[mask],
                       self.latency[mask], self.threshold[mask], self.scenario[mask],
                       {name: v[mask] for name, v in self.components.items()}, self.coverage)


def _label(value: Label | tuple[int, str] | int) -> Label:
    if isinstance(value, Label):
        return value
    if isinstance(value, tuple):
        return Label(int(value[0]), str(value[1]) if len(value) > 1 else "")
    return Label(int(value))


def _is_alert(record: Mapping[str, Any]) -> bool:
    if "decision" in record:
        return bool(record["decision"] == "alert")
    threshold = record.get("threshold")
    return threshold is not None and float(record["score"]) >= float(threshold)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _join(scores: Iterable[Mapping[str, Any]], labels: Mapping[str, Label | tuple[int, str] | int]) -> _Joined:
    unique = dedupe(scores)
    rows = [r for r in unique if str(r["transaction_id"]) in labels]
    truth = [_label(labels[str(r["transaction_id"])]) for r in rows]
    event_time = np.array([int(r["event_time"]) for r in rows], dtype=np.int64)
    order = np.lexsort((np.array([str(r["transaction_id"]) for r in rows], dtype=str), event_time))
    no_components: dict[str, Any] = {}
    parts = [r.get("components") or no_components for r in rows]
    names = sorted({name for part in parts for name in part})
    components = {
        name: np.array([_float(part.get(name)) for part in parts], dtype=np.float64)[order] for name in names
    }
    coverage = {
        "scores": len(unique),
        "labels": len(labels),
        "joined": len(rows),
        "unlabelled_scores": len(unique) - len(rows),
        "unscored_labels": len(labels) - len(rows),
    }
    return _Joined(
        card=np.array([str(r.get("card_id", "")) for r in rows], dtype=str)[order],
        day=(event_time // _DAY_MS)[order],
        y=np.array([t.is_fraud == 1 for t in truth], dtype=bool)[order],
        s=np.array([float(r["score"]) for r in rows], dtype=np.float64)[order],
        alert=np.array([_is_alert(r) for r in rows], dtype=bool)[order],
        latency=np.array([_float(r.get("latency_ms")) for r in rows], dtype=np.float64)[order],
        threshold=np.array([_float(r.get("threshold")) for r in rows], dtype=np.float64)[order],
        scenario=np.array([_scenario_key(t) for t in truth], dtype=str)[order],
        components=components,
        coverage=coverage,
    )


def _scenario_key(label: Label) -> str:
    if not label.is_fraud:
        return LEGIT
    return label.scenario or UNNAMED_FRAUD


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()


def _typical(values: FloatArray) -> float | None:
    """The most frequent finite value (the engine's threshold rarely changes)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    unique, counts = np.unique(finite, return_counts=True)
    return float(unique[np.argmax(counts)])


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _figures(j: _Joined, s: FloatArray, k: int, alert_rate: float, with_engine: bool,
             per_card: bool = True) -> dict[str, Any]:
    """Ranking metrics of scores ``s`` on rows ``j``; engine figures if asked."""
    n_fraud = int(j.y.sum())
    out: dict[str, Any] = {
        "n": int(j.y.size),
        "n_fraud": n_fraud,
        "roc_auc": roc_auc(j.y, s),
        "average_precision": average_precision(j.y, s),
        "card_precision_at_k": card_precision_at_k(j.card, j.y, s, k) if per_card else None,
        "recall_at_alert_rate": recall_at_alert_rate(j.y, s, alert_rate),
    }
    if with_engine:
        caught = int((j.alert & j.y).sum())
        alerts = int(j.alert.sum())
        out["alerts"] = alerts
        out["precision_at_threshold"] = _share(caught, alerts)
        out["recall_at_threshold"] = _share(caught, n_fraud)
        out["latency_ms"] = latency_percentiles(j.latency)
        out["threshold"] = _typical(j.threshold)
    return out


def _by_day(j: _Joined, s: FloatArray, k: int, alert_rate: float, with_engine: bool) -> dict[str, Any]:
    per_day = []
    for day in np.unique(j.day):
        mask = j.day == day
        per_day.append({"day": _day_name(int(day)), **_figures(j.take(mask), s[mask], k, alert_rate, with_engine)})
    overall = _figures(j, s, k, alert_rate, with_engine, per_card=False)
    # The Handbook reports card precision@k as the mean of the daily values:
    # pooled over the whole period it would rank a card's best score of a month.
    daily = [d["card_precision_at_k"] for d in per_day if d["card_precision_at_k"] is not None]
    overall["card_precision_at_k"] = float(np.mean(daily)) if daily else None
    return {"overall": overall, "per_day": per_day}


def _per_scenario(j: _Joined) -> dict[str, dict[str, Any]]:
    names = sorted(set(j.scenario.tolist()), key=lambda name: (name != LEGIT, name))
    out = {}
    for name in names:
        mask = j.scenario == name
        out[name] = {
            "n": int(mask.sum()),
            "detected_share_at_threshold": float(j.alert[mask].mean()),
            "mean_score": float(j.s[mask].mean()),
        }
    return out


def evaluate(
    scores: Iterable[Mapping[str, Any]],
    labels: Mapping[str, Label | tuple[int, str] | int],
    k: int = 100,
    alert_rate: float = 0.01,
    exclude_known_compromised: bool = False,
    component: str | None = None,
) -> dict[str, Any]:
    """Every detection figure as a JSON-serialisable dict.

    ``labels`` values may be :class:`Label`, ``(is_fraud, scenario)`` or a
    bare ``is_fraud``. Scores without a label are left out and counted under
    ``coverage``. With ``exclude_known_compromised`` the rows of a card on
    the days after its first fraud day are dropped from every figure (the
    Handbook's protocol: those cards would already be blocked).
    ``components`` holds the ranking metrics of each component score (only
    ``component`` if given), over the rows that carry it.

    In ``per_scenario``, ``detected_share_at_threshold`` is the share the
    engine alerted on; for ``legit`` that is the false-positive rate.
    """
    joined = _join(scores, labels)
    excluded = known_compromised(joined.card, joined.day, joined.y)
    rows = joined.take(~excluded) if exclude_known_compromised else joined
    names = [component] if component is not None else sorted(joined.components)
    components = {}
    for name in names:
        values = rows.components.get(name, np.full(rows.s.size, np.nan))
        present = np.isfinite(values)
        components[name] = _by_day(rows.take(present), values[present], k, alert_rate, with_engine=False)
    return {
        "params": {
            "k": k,
            "alert_rate": alert_rate,
            "exclude_known_compromised": exclude_known_compromised,
            "component": component,
        },
        "coverage": {**joined.coverage, "excluded_known_compromised": int(excluded.sum()) if
                     exclude_known_compromised else 0},
        **_by_day(rows, rows.s, k, alert_rate, with_engine=True),
        "per_scenario": _per_scenario(rows),
        "components": components,
    }


def _downsample(*series: FloatArray, points: int) -> list[list[float]]:
    if series[0].size <= points:
        return [a.tolist() for a in series]
    keep = np.unique(np.linspace(0, series[0].size - 1, points).round().astype(np.int64))
    return [a[keep].tolist() for a in series]


def _histogram(values: FloatArray, edges: FloatArray) -> list[int]:
    # Values past the last edge land in the last bin so nothing is hidden.
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return [int(c) for c in counts]


def compute_curves(
    scores: Iterable[Mapping[str, Any]],
    labels: Mapping[str, Label | tuple[int, str] | int],
    exclude_known_compromised: bool = False,
    bins: int = 20,
    points: int = 400,
) -> dict[str, Any]:
    """The data behind the report's plots, JSON-serialisable.

    ``pr`` and ``components_pr``: precision/recall points (at most
    ``points``); ``score_hist``: score counts per scenario on ``bins`` equal
    bins over [0, 1]; ``latency_hist``: latency counts on 40 bins from 0 to
    the maximum p99.9 (slower records are counted in the last bin).
    """
    joined = _join(scores, labels)
    if exclude_known_compromised:
        joined = joined.take(~known_compromised(joined.card, joined.day, joined.y))
    precision, recall, _ = precision_recall_curve(joined.y, joined.s)
    pr = dict(zip(("precision", "recall"), _downsample(precision, recall, points=points), strict=True))
    components_pr = {}
    for name, values in joined.components.items():
        present = np.isfinite(values)
        p, r, _ = precision_recall_curve(joined.y[present], values[present])
        components_pr[name] = dict(zip(("precision", "recall"), _downsample(p, r, points=points), strict=True))
    score_edges = np.linspace(0.0, 1.0, bins + 1)
    score_hist = {
        name: _histogram(joined.s[joined.scenario == name], score_edges)
        for name in sorted(set(joined.scenario.tolist()), key=lambda n: (n != LEGIT, n))
    }
    latency = joined.latency[np.isfinite(joined.latency)]
    latency_hist: dict[str, Any] = {"edges": [], "counts": []}
    if latency.size:
        top = float(np.percentile(latency, 99.9)) or 1.0
        latency_edges = np.linspace(0.0, top, 41)
        latency_hist = {"edges": latency_edges.tolist(), "counts": _histogram(latency, latency_edges)}
    return {
        "pr": pr,
        "components_pr": components_pr,
        "score_hist": {"edges": score_edges.tolist(), "counts": score_hist},
        "latency_hist": latency_hist,
    }


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudstream evaluate",
                                     description="Detection quality of engine scores against labels.")
    source = parser.add_argument_group("scores (a JSONL file, or the scores topic)")
    source.add_argument("--scores", metavar="PATH", help="JSONL file of score records")
    source.add_argument("--bootstrap-servers", help="read the scores topic from this Kafka instead")
    source.add_argument("--topic", default="scores", help="scores topic (default: scores)")
    source.add_argument("--timeout", type=float, default=30.0,
                        help="stop reading the topic after this many seconds without a new record")
    source.add_argument("--expected", type=int,
                        help="stop reading the topic after this many distinct records (default: number of labels)")
    parser.add_argument("--labels", required=True, metavar="PATH", help="generated CSV or Parquet file")
    parser.add_argument("--k", type=int, default=100, help="k of card precision@k (default 100)")
    parser.add_argument("--alert-rate", type=float, default=0.01,
                        help="alert budget as a share of transactions for recall@rate (default 0.01)")
    parser.add_argument("--exclude-known-compromised", action="store_true",
                        help="drop cards on the days after their first fraud (Handbook protocol)")
    parser.add_argument("--component", help="score component to evaluate (default: all)")
    parser.add_argument("--out-dir", metavar="DIR", help="write report.json and report.html here")
    return parser


def cli(argv: Sequence[str] | None = None) -> int:
    """``fraudstream evaluate``: print the headline figures, write the report."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.scores is None) == (args.bootstrap_servers is None):
        parser.error("give exactly one of --scores or --bootstrap-servers")
    labels = load_labels(args.labels)
    if args.scores is not None:
        scores = load_scores_jsonl(args.scores)
    else:
        try:
            settings = Settings.from_env()  # TLS / SASL of the scores topic's Kafka: FRAUDSTREAM_SECURITY_*
        except SettingsError as exc:
            parser.error(str(exc))
        expected = args.expected if args.expected is not None else len(labels)
        scores = consume_scores(args.bootstrap_servers, args.topic, args.timeout, expected, settings=settings)
    result = evaluate(scores, labels, k=args.k, alert_rate=args.alert_rate,
                      exclude_known_compromised=args.exclude_known_compromised, component=args.component)
    print(format_headline(result))
    if args.out_dir is not None:
        curves = compute_curves(scores, labels, exclude_known_compromised=args.exclude_known_compromised)
        for path in write_report(result, curves, args.out_dir):
            print(f"wrote {path}")
    if result["coverage"]["joined"] == 0:
        print("fraudstream evaluate: no score matched a label", file=sys.stderr)
        return 1
    return 0
