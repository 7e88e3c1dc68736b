"""Average precision: how well scores rank frauds above legitimate rows, the one definition every tool uses.

Training picks its best epoch by it (:mod:`models.train`) and evaluation
reports it (:mod:`replay.metrics`, which re-exports it), so the figure a
model was selected on and the figure it is judged on are the same quantity.
It is scikit-learn's step sum ``sum_n (R_n - R_{n-1}) P_n`` over distinct
score thresholds: rows with tied scores enter together, at one threshold.
Here rather than in replay/ because models/ may not import replay/.

Example:
    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
    >>> average_precision([1, 0, 1], [0.5, 0.5, 0.5])  # one threshold: P = 2/3
    0.6666666666666666
    >>> average_precision([0, 0], [0.1, 0.2]) is None  # undefined without a fraud
    True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["average_precision"]


def average_precision(y: npt.ArrayLike, score: npt.ArrayLike, weight: npt.ArrayLike | None = None) -> float | None:
    """Average precision of ``score`` for labels ``y`` (truthy = fraud); ``None`` without a (weighted) fraud.

    ``weight`` counts a row that many times (a subsample of legitimate rows
    weighted by the inverse sampling rate estimates the full set's AP).
    Raises ``ValueError`` unless ``y``, ``score`` (and ``weight``) are 1-d and
    of equal length.
    """
    yy = np.asarray(y).astype(bool).astype(np.float64)
    ss = np.asarray(score, dtype=np.float64)
    w = np.ones_like(yy) if weight is None else np.asarray(weight, dtype=np.float64)
    if yy.shape != ss.shape or yy.shape != w.shape or yy.ndim != 1:
        raise ValueError(f"labels, scores and weights must be 1-d and of equal length, got {yy.shape}, {ss.shape} "
                         f"and {w.shape}")
    if (yy * w).sum() <= 0:
        return None
    order = np.argsort(-ss, kind="stable")
    yy, ss, w = yy[order], ss[order], w[order]
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), len(ss) - 1]  # end of each group of tied scores
    tp = np.cumsum(yy * w)[last]
    fp = np.cumsum((1.0 - yy) * w)[last]
    recall = tp / tp[-1]
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))
