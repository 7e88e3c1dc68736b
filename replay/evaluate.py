"""Detection quality: the engine's score records joined with the true labels.

Scores come from the ``scores`` topic (or a JSONL dump of it), labels from the
file :mod:`replay.generate` wrote (:mod:`replay.inputs` reads both and drops
redelivered scores); :mod:`replay.joined` lines them up in event-time order.
This module computes the figures on those rows and is the ``fraudstream
evaluate`` command; :mod:`replay.curves` computes the report's plots.

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
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from replay.curves import compute_curves
from replay.inputs import Label, consume_scores, load_labels, load_scores_jsonl
from replay.joined import LEGIT, Joined, join
from replay.metrics import (
    FloatArray,
    average_precision,
    card_precision_at_k,
    known_compromised,
    latency_percentiles,
    recall_at_alert_rate,
    roc_auc,
)
from replay.report import format_headline, write_report
from stream.contracts.settings import Settings, SettingsError

__all__ = ["cli", "evaluate"]


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


def _figures(j: Joined, s: FloatArray, k: int, alert_rate: float, with_engine: bool,
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


def _by_day(j: Joined, s: FloatArray, k: int, alert_rate: float, with_engine: bool) -> dict[str, Any]:
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


def _per_scenario(j: Joined) -> dict[str, dict[str, Any]]:
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
    joined = join(scores, labels)
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
