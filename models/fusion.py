"""Fusion: one score from the sequence model and the online learner.

The rule (docs/engine.md describes it for users):

* The online learner always sees the sequence model's score, as the input
  ``sequence_logit``, beside the engineered features; without a sequence
  model that input is 0 and carries no weight.
* Once the trainer has fitted trees (:mod:`models.trees`) on the labels
  received, the score is theirs: gradient-boosted trees over the same inputs
  as the online learner, the sequence model's logit among them, so they
  combine the card's features, the entity features and the sequence model
  non-linearly, stacked on what the labels showed. ``components`` still
  shows the sequence model and the online learner. Both learn the sequence
  logit's weight only from transactions the sequence model was not trained
  on (:mod:`stream.core.training`): stacked on its in-sample logits they
  would trust it far beyond what it earns on new traffic.
* Before that, without a sequence model the score is the online learner's.
* With one, while the online learner has learned fewer than
  ``min_labels_for_online`` labels the score is the sequence model's alone;
  after that it is the online learner's, which has learned how far to trust
  the sequence score from live feedback.

Why trees: on generated data with breached terminals and 7-day-late labels,
a logistic regression over the same inputs, learned one label at a time,
reaches about half the average precision of trees refitted daily on the same
labels (docs/models.md); a fraud team's offline baseline is trees too.

Example:
    >>> from models.online import OnlineLearner
    >>> fusion = Fusion(OnlineLearner(), sequence=None)
    >>> fusion.versions()
    {'online': 'online-0'}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.online import ONLINE_INPUTS, SEQUENCE_INPUT, OnlineLearner, columns, inputs_of
from models.scoring import Scorer, ScoringItem, logit

__all__ = ["FusedBatch", "Fusion"]


@dataclass(frozen=True)
class FusedBatch:
    """Scores of one micro-batch."""

    score: np.ndarray
    components: dict[str, np.ndarray]
    #: What the online learner saw, ``[B, len(ONLINE_INPUTS)]`` in :data:`~models.online.ONLINE_INPUTS`
    #: order, kept for the feedback join.
    inputs: npt.NDArray[np.float64]


class Fusion:
    """Scores micro-batches with every model present and fuses the results."""

    def __init__(self, online: OnlineLearner, sequence: Scorer | None = None, min_labels_for_online: int = 200) -> None:
        self.online = online
        self.sequence = sequence
        self.min_labels_for_online = min_labels_for_online
        #: Seconds each model took on the last batch (for the stage split in metrics).
        self.last_seconds: dict[str, float] = {}

    def versions(self) -> dict[str, str]:
        """Model versions, recorded on every score."""
        out = {"online": self.online.version}
        if self.sequence is not None:
            out["sequence"] = self.sequence.version
        if self.online.trees is not None:
            out["trees"] = self.online.trees.version
        return out

    def score_batch(self, items: Sequence[ScoringItem],
                    first_inputs: Mapping[int, npt.NDArray[np.float64]] | None = None) -> FusedBatch:
        """Score ``items``.

        ``first_inputs``: for items scored once already (redelivered after a
        crash), the inputs they were first scored with, in
        :data:`~models.online.ONLINE_INPUTS` order, NaN where not known. They
        replace the inputs computed now (the card's and the entities' state have
        moved on since), the sequence model's component included, so the
        score is the first one with the same models.
        """
        components: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        inputs = inputs_of(items)  # one matrix for the batch; the sequence model's logit goes in below
        seq_column = ONLINE_INPUTS.index(SEQUENCE_INPUT)
        if self.sequence is not None:
            t0 = time.perf_counter()
            seq = np.asarray(self.sequence.score_batch(items), dtype=np.float64)
            seconds["sequence"] = time.perf_counter() - t0
            components["sequence"] = seq
            inputs[:, seq_column] = logit(seq)
        for row, first in (first_inputs or {}).items():
            known = ~np.isnan(first)
            inputs[row, known] = first[known]
            if self.sequence is not None and known[seq_column]:
                components["sequence"][row] = 1.0 / (1.0 + np.exp(-first[seq_column]))
        t0 = time.perf_counter()
        online = self.online.predict_matrix(self.online.select(inputs))
        seconds["online"] = time.perf_counter() - t0
        self.last_seconds = seconds
        components["online"] = online
        trees = self.online.trees
        if trees is not None:
            t0 = time.perf_counter()
            score = trees.predict_matrix(columns(inputs, trees.feature_names))
            seconds["trees"] = time.perf_counter() - t0
        elif self.sequence is not None and self.online.n_labels < self.min_labels_for_online:
            score = components["sequence"]
        else:
            score = online
        return FusedBatch(score=np.clip(score, 0.0, 1.0), components=components, inputs=inputs)
