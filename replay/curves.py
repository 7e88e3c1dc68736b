"""The data behind the evaluation report's plots: precision/recall curves and histograms.

Kept apart from the figures (:mod:`replay.evaluate`) because only the HTML
report (:mod:`replay.report`) and the demo draw them; every series is cut to
a few hundred points so the report stays small whatever the data's size.

Example:
    >>> scores = [{"transaction_id": f"t{i}", "event_time": i, "score": i / 4, "latency_ms": 5.0}
    ...           for i in range(4)]
    >>> curves = compute_curves(scores, {"t0": 0, "t1": 0, "t2": 1, "t3": 1}, bins=2)
    >>> curves["score_hist"]["counts"]  # two equal bins over [0, 1], per scenario
    {'legit': [2, 0], 'fraud': [0, 2]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from replay.inputs import Label
from replay.joined import LEGIT, join
from replay.metrics import FloatArray, known_compromised, precision_recall_curve

__all__ = ["compute_curves"]


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
    joined = join(scores, labels)
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
