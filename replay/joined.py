"""Score records joined with the true labels: the rows every evaluation figure is computed on.

:func:`join` keeps the score records that have a label and lays them out as
parallel NumPy arrays (:class:`Joined`): card, day, truth, score, the
engine's decision, latency, threshold, scenario and each score component.
Rows are put in ``(event_time, transaction_id)`` order, so the figures do
not depend on the order in which partitions were consumed.

Example:
    >>> scores = [{"transaction_id": "t2", "card_id": "b", "event_time": 90_000_000, "score": 0.9},
    ...           {"transaction_id": "t1", "card_id": "a", "event_time": 0, "score": 0.2, "decision": "pass"},
    ...           {"transaction_id": "t9", "card_id": "c", "event_time": 5, "score": 0.5}]
    >>> j = join(scores, {"t1": 0, "t2": (1, "card_testing")})
    >>> j.card.tolist(), j.day.tolist(), j.scenario.tolist(), j.coverage["unlabelled_scores"]
    (['a', 'b'], [0, 1], ['legit', 'card_testing'], 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from replay.inputs import Label, dedupe
from replay.metrics import BoolArray, FloatArray, IntArray

__all__ = ["LEGIT", "UNNAMED_FRAUD", "Joined", "join"]

_DAY_MS = 86_400_000
LEGIT = "legit"  # per-scenario key of rows without fraud
UNNAMED_FRAUD = "fraud"  # per-scenario key of fraud rows whose label names no scenario


@dataclass(frozen=True)
class Joined:
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

    def take(self, mask: BoolArray) -> Joined:
        """The rows where ``mask`` is true (``coverage`` stays that of the whole join)."""
        return Joined(self.card[mask], self.day[mask], self.y[mask], self.s[mask], self.alert[mask],
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


def join(scores: Iterable[Mapping[str, Any]], labels: Mapping[str, Label | tuple[int, str] | int]) -> Joined:
    """The deduplicated score records that have a label, as :class:`Joined` arrays in event-time order.

    ``labels`` map a transaction id to a :class:`~replay.inputs.Label`, an
    ``(is_fraud, scenario)`` tuple or a bare ``is_fraud``; a score record's
    missing component or latency is NaN.
    """
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
    return Joined(
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
