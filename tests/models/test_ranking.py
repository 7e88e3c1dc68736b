"""Average precision, the one definition training selects on and evaluation reports (tests/replay/test_metrics.py
checks it against a brute-force step sum)."""

from __future__ import annotations

import numpy as np
import pytest

from models.ranking import average_precision


def test_average_precision_matches_hand_computation() -> None:
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    # Recall steps of 1/3 at precisions 1, 2/3, 1/2.
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert average_precision(y, -s) == pytest.approx((1 + 2 / 4 + 3 / 6) / 3)
    # Tied scores form one threshold: all tied rows enter together.
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # Integer weights equal repeated rows.
    w = np.array([1, 2, 1, 3, 1, 1])
    assert average_precision(y, s, w) == pytest.approx(average_precision(np.repeat(y, w), np.repeat(s, w)))
    assert average_precision([0, 0], [0.1, 0.2]) is None  # undefined without a fraud
    assert average_precision([1, 0], [0.5, 0.5], [0, 3]) is None  # nor when its weight is 0


def test_labels_scores_and_weights_must_line_up() -> None:
    with pytest.raises(ValueError, match="1-d and of equal length"):
        average_precision([1, 0], [0.5])
    with pytest.raises(ValueError, match="1-d and of equal length"):
        average_precision([1, 0], [0.5, 0.1], [1.0])
