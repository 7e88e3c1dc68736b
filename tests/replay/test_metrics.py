"""Detection metrics (replay.metrics), checked against hand-computed values and brute force."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from replay.metrics import (
    average_precision,
    card_precision_at_k,
    daily_card_precision_at_k,
    known_compromised,
    latency_percentiles,
    precision_recall_curve,
    recall_at_alert_rate,
    roc_auc,
)


def test_auc_and_ap_on_the_textbook_case() -> None:
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(y, s) == 0.75
    assert average_precision(y, s) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_ties_count_half_in_auc_and_group_in_ap() -> None:
    # Pairs (pos, neg): .5~.5 tie -> 1/2, .5>.2, .9>.5, .9>.2 -> 3.5 of 4.
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
    # All tied: one threshold alerting on everything, precision 2/3 at recall 1.
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)
    assert roc_auc([1, 0, 1], [0.5, 0.5, 0.5]) == 0.5


def brute_auc(y: list[int], s: list[float]) -> float:
    pairs = [(a, b) for a, b in itertools.product(range(len(y)), repeat=2) if y[a] == 1 and y[b] == 0]
    return sum(1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0 for a, b in pairs) / len(pairs)


def brute_ap(y: list[int], s: list[float]) -> float:
    ap, last_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        alerted = [yi for yi, si in zip(y, s, strict=True) if si >= t]
        recall = sum(alerted) / sum(y)
        ap += (recall - last_recall) * sum(alerted) / len(alerted)
        last_recall = recall
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_brute_force_with_many_ties(seed: int) -> None:
    rng = random.Random(seed)
    y = [int(rng.random() < 0.3) for _ in range(58)] + [0, 1]  # both classes guaranteed
    s = [rng.randint(0, 6) / 6 for _ in y]
    assert roc_auc(y, s) == pytest.approx(brute_auc(y, s))
    assert average_precision(y, s) == pytest.approx(brute_ap(y, s))


def test_precision_recall_curve_by_hand() -> None:
    precision, recall, thresholds = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert thresholds.tolist() == [0.8, 0.4, 0.35, 0.1]
    assert recall.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3, 0.5])


def test_card_precision_at_k_by_hand() -> None:
    cards = ["a", "a", "b", "c", "d", "d"]
    y = [0, 1, 0, 0, 1, 0]
    s = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3]
    # Card maxima: a .9 (fraud), b .8, c .7, d .3 (fraud).
    assert card_precision_at_k(cards, y, s, k=1) == 1.0
    assert card_precision_at_k(cards, y, s, k=2) == 0.5
    assert card_precision_at_k(cards, y, s, k=3) == pytest.approx(1 / 3)
    assert card_precision_at_k(cards, y, s, k=4) == 0.5
    assert card_precision_at_k(cards, y, s, k=10) == 0.2  # Handbook: divided by k, not by the 4 cards
    assert card_precision_at_k([], [], [], k=3) is None


def test_card_precision_ties_go_to_the_smaller_card_id() -> None:
    assert card_precision_at_k(["b", "a"], [1, 0], [0.5, 0.5], k=1) == 0.0
    assert card_precision_at_k(["a", "b"], [1, 0], [0.5, 0.5], k=1) == 1.0


def test_daily_card_precision_at_k_by_hand() -> None:
    """Per day: cards ranked by their best score that day, fraud if any fraud that day, k in the denominator."""
    rows = [  # day, card, is_fraud, score
        (0, "a", 0, 0.9), (0, "a", 1, 0.2), (0, "b", 0, 0.8), (0, "c", 1, 0.1),  # top 2: a (fraud), b -> 1/2
        (1, "a", 0, 0.3), (1, "b", 1, 0.7), (1, "c", 0, 0.6), (1, "d", 1, 0.65),  # a's fraud was yesterday;
        # top 2: b, d, both fraud -> 2/2
        (2, "e", 1, 0.1),  # one card, fraud: 1 of k = 2 -> 1/2
    ]
    day, card, y, s = (list(col) for col in zip(*rows, strict=True))
    assert daily_card_precision_at_k(card, day, y, s, k=2) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # Pooled over the period instead, a's Monday score and Tuesday's frauds would rank together: 2/2.
    assert card_precision_at_k(card, y, s, k=2) == 1.0
    assert daily_card_precision_at_k([], [], [], [], k=2) is None
    with pytest.raises(ValueError, match="card_ids and days must be as long as the labels"):
        daily_card_precision_at_k(["a"], [0, 1], [0], [0.5])


def test_recall_at_alert_rate_by_hand() -> None:
    y = np.zeros(200, dtype=int)
    s = np.linspace(0.0, 0.5, 200)
    y[[10, 150, 199]] = 1
    s[10] = 0.99  # fraud ranked first
    # 1 % of 200 rows = 2 alerts: rows 10 and 199 -> 2 of 3 frauds.
    assert recall_at_alert_rate(y, s, 0.01) == pytest.approx(2 / 3)
    assert recall_at_alert_rate(y, s, 0.005) == pytest.approx(1 / 3)
    assert recall_at_alert_rate(y, s, 1.0) == 1.0


def test_one_class_gives_none() -> None:
    assert roc_auc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    assert average_precision([0, 0], [0.1, 0.2]) is None
    assert recall_at_alert_rate([0, 0], [0.1, 0.2]) is None
    assert roc_auc([], []) is None
    assert latency_percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_latency_percentiles_ignore_missing_values() -> None:
    # Nearest rank, as the benchmark reports them: measured values, never between two.
    assert latency_percentiles([1.0, float("nan"), 3.0]) == {"p50": 1.0, "p95": 3.0, "p99": 3.0}


def test_known_compromised_marks_later_days_only() -> None:
    mask = known_compromised(["a", "a", "a", "b", "b"], [0, 0, 3, 1, 2], [0, 1, 0, 0, 0])
    assert mask.tolist() == [False, False, True, False, False]
