from __future__ import annotations

import numpy as np
import pytest

from models.fusion import Fusion
from models.online import OnlineLearner
from models.sequence import SequenceScorer
from tests.models.test_sequence import card_items, model


def test_sequence_scores_computed_by_the_caller_fuse_as_if_computed_here() -> None:
    """The score agent runs the sequence model in its own thread and hands the scores in."""
    items = card_items()
    fusion = Fusion(OnlineLearner(), sequence=SequenceScorer(model(n=12), version="seq-test"))
    inline = fusion.score_batch(items)
    assert "sequence" in fusion.last_seconds
    given = fusion.score_batch(items, fusion.sequence.score_batch(items))  # type: ignore[union-attr]
    assert "sequence" not in fusion.last_seconds  # the caller timed it
    assert np.array_equal(given.score, inline.score) and np.array_equal(given.inputs, inline.inputs)
    assert all(np.array_equal(given.components[k], inline.components[k]) for k in inline.components)
    with pytest.raises(ValueError, match="sequence scores for"):
        fusion.score_batch(items, np.zeros(len(items) + 1))
    with pytest.raises(ValueError, match="no sequence model"):
        Fusion(OnlineLearner()).score_batch(items, np.zeros(len(items)))
