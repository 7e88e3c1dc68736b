"""Detection metrics on numpy arrays: ranking quality, card precision, alert budgets, latency.

The metrics are hand-written on numpy arrays and follow the usual
definitions: ROC AUC is the Mann-Whitney statistic (ties count one half),
average precision is scikit-learn's step sum ``sum_n (R_n - R_{n-1}) P_n``
(:func:`models.ranking.average_precision`, re-exported here: training selects
models on the same definition),
and card precision@k follows the Fraud-Detection-Handbook (per day, rank
cards by their highest score, count those with any fraud among the top k,
divide by k). A metric that is undefined on the data (no fraud, or no
legitimate rows, for AUC) is ``None``, so results are always valid JSON.
Every function is pure; :mod:`replay.evaluate` applies them to the engine's
scores joined with the labels.

Example:
    >>> y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    >>> roc_auc(y, s), round(average_precision(y, s), 4), card_precision_at_k(["a", "b", "c", "d"], y, s, k=2)
    (0.75, 0.8333, 0.5)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from models.ranking import average_precision
from stream.core.latency import percentile

__all__ = [
    "ArrayLike",
    "BoolArray",
    "FloatArray",
    "IntArray",
    "average_precision",
    "card_precision_at_k",
    "daily_card_precision_at_k",
    "known_compromised",
    "latency_percentiles",
    "precision_recall_curve",
    "recall_at_alert_rate",
    "roc_auc",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = npt.ArrayLike


def _arrays(y: ArrayLike, s: ArrayLike) -> tuple[BoolArray, FloatArray]:
    yy = np.asarray(y).astype(bool)
    ss = np.asarray(s, dtype=np.float64)
    if yy.shape != ss.shape or yy.ndim != 1:
        raise ValueError(f"labels and scores must be 1-d and of equal length, got {yy.shape} and {ss.shape}")
    return yy, ss


def _average_ranks(s: FloatArray) -> FloatArray:
    order = np.argsort(s, kind="mergesort")
    ordered = s[order]
    new_value = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(new_value)
    ends = np.r_[starts[1:], s.size]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(s.size)
    ranks[order] = mean_rank[np.cumsum(new_value) - 1]
    return ranks


def roc_auc(y: ArrayLike, s: ArrayLike) -> float | None:
    """Area under the ROC curve; ``None`` unless both classes are present.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])  # the tie counts one half
    0.875
    >>> roc_auc([0, 0], [0.1, 0.2]) is None
    True
    """
    yy, ss = _arrays(y, s)
    n_pos = int(yy.sum())
    n_neg = yy.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum = float(_average_ranks(ss)[yy].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def precision_recall_curve(y: ArrayLike, s: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision and recall when alerting on scores ``>= t``, per distinct ``t``.

    Returns ``(precision, recall, thresholds)`` with thresholds descending
    (recall rising). Recall is all zeros when there is no fraud.

    >>> p, r, t = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> p.round(3).tolist(), r.tolist(), t.tolist()
    ([1.0, 0.5, 0.667, 0.5], [0.5, 0.5, 1.0, 1.0], [0.8, 0.4, 0.35, 0.1])
    """
    yy, ss = _arrays(y, s)
    order = np.argsort(-ss, kind="mergesort")
    ordered = ss[order]
    last_of_value = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1] if ss.size else np.array(
        [], dtype=np.int64
    )
    tp = np.cumsum(yy[order])[last_of_value].astype(np.float64)
    alerted = last_of_value + 1.0
    n_pos = tp[-1] if tp.size else 0.0
    recall = tp / n_pos if n_pos > 0 else np.zeros_like(tp)
    return tp / alerted, recall, ordered[last_of_value]


def card_precision_at_k(card_ids: ArrayLike, y: ArrayLike, s: ArrayLike, k: int = 100) -> float | None:
    """Share of fraud cards among the ``k`` cards with the highest score.

    A card's score is the maximum over its transactions and it counts as
    fraud if any of them is. As in the Handbook the count is divided by
    ``k`` even when there are fewer than ``k`` cards. Equal card scores are
    ranked by card id. ``None`` on no transactions.

    >>> card_precision_at_k(["a", "a", "b", "c"], [0, 1, 0, 0], [0.9, 0.1, 0.8, 0.2], k=2)
    0.5
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    yy, ss = _arrays(y, s)
    cards = np.asarray(card_ids)
    if cards.shape != yy.shape:
        raise ValueError("card_ids must be as long as the labels")
    if yy.size == 0:
        return None
    _, card = np.unique(cards, return_inverse=True)
    n_cards = int(card.max()) + 1
    best = np.full(n_cards, -np.inf)
    np.maximum.at(best, card, ss)
    is_fraud = np.bincount(card, weights=yy, minlength=n_cards) > 0
    top = np.argsort(-best, kind="stable")[:k]  # cards come sorted by id: ties go to the smaller id
    return float(is_fraud[top].sum()) / k


def daily_card_precision_at_k(card_ids: ArrayLike, days: ArrayLike, y: ArrayLike, s: ArrayLike,
                              k: int = 100) -> float | None:
    """Card precision@k as the Handbook reports it: :func:`card_precision_at_k` of each day, averaged.

    Each day's cards are ranked by their highest score *that day* and count
    as fraud if any of their transactions *that day* is; every day that has
    transactions weighs the same. ``None`` on no transactions.

    >>> daily_card_precision_at_k(["a", "b", "a", "b"], [0, 0, 1, 1], [1, 0, 0, 0], [0.9, 0.1, 0.9, 0.1], k=1)
    0.5
    """
    yy, ss = _arrays(y, s)
    cards, day = np.asarray(card_ids), np.asarray(days)
    if cards.shape != yy.shape or day.shape != yy.shape:
        raise ValueError("card_ids and days must be as long as the labels")
    daily = [card_precision_at_k(cards[day == d], yy[day == d], ss[day == d], k) for d in np.unique(day)]
    values = [v for v in daily if v is not None]  # a day has rows, so each is a number
    return float(np.mean(values)) if values else None


def recall_at_alert_rate(y: ArrayLike, s: ArrayLike, rate: float = 0.01) -> float | None:
    """Recall when alerting on the top ``rate`` share of transactions.

    The alert budget is ``ceil(rate * n)`` transactions; ties at the budget's
    edge go to the earlier rows. ``None`` without fraud.

    >>> recall_at_alert_rate([0, 1, 0, 1, 0, 0, 0, 0, 0, 0], [.9, .8, .1, .2, .1, .1, .1, .1, .1, .1], 0.2)
    0.5
    """
    if not 0.0 < rate <= 1.0:
        raise ValueError("rate must be in (0, 1]")
    yy, ss = _arrays(y, s)
    n_pos = int(yy.sum())
    if n_pos == 0:
        return None
    budget = math.ceil(rate * yy.size - 1e-9)  # the epsilon keeps 0.07 * 100 at 7, not 8
    top = np.argsort(-ss, kind="stable")[:budget]
    return float(yy[top].sum()) / n_pos


def latency_percentiles(latency_ms: ArrayLike) -> dict[str, float | None]:
    """p50, p95 and p99 of the finite latencies, nearest rank (:func:`stream.core.latency.percentile`, as the
    benchmark reports them); ``None`` when there are none.

    >>> latency_percentiles(list(range(1, 101)))
    {'p50': 51.0, 'p95': 95.0, 'p99': 99.0}
    """
    values = np.asarray(latency_ms, dtype=np.float64)
    finite = values[np.isfinite(values)].tolist()
    return {f"p{q}": _rounded(percentile(finite, q / 100)) for q in (50, 95, 99)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def known_compromised(card: ArrayLike, day: ArrayLike, y: ArrayLike) -> BoolArray:
    """Rows whose card had a fraud on an earlier day (the Handbook excludes them).

    >>> known_compromised(["a", "a", "a", "b"], [1, 1, 2, 2], [0, 1, 0, 1]).tolist()
    [False, False, True, False]
    """
    cards = np.asarray(card)
    days = np.asarray(day, dtype=np.int64)
    fraud = np.asarray(y).astype(bool)
    if cards.size == 0:
        return np.zeros(0, dtype=bool)
    _, index = np.unique(cards, return_inverse=True)
    first_fraud_day = np.full(int(index.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_fraud_day, index[fraud], days[fraud])
    result: BoolArray = days > first_fraud_day[index]
    return result
