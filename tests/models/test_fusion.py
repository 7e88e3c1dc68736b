"""Fusion: the sequence model's score until the online learner has enough labels, the online learner's after."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from models.features import FEATURE_NAMES
from models.fusion import Fusion
from models.history import new_history
from models.online import SEQUENCE_INPUT, OnlineLearner
from models.scoring import Scorer, ScoringItem
from stream.contracts.records import Transaction

MIN_LABELS = 3


class FixedSequence:
    """A stand-in sequence model: the scores it is given, in order."""

    name = "sequence"

    def __init__(self, scores: Sequence[float]) -> None:
        self.scores = list(scores)

    @property
    def version(self) -> str:
        return "fixed-1"

    def score_batch(self, items: Sequence[ScoringItem]) -> np.ndarray:
        return np.array(self.scores[:len(items)])


SEQ = [0.9, 0.2, 0.55]


def _items() -> list[ScoringItem]:
    rng = np.random.default_rng(3)
    return [ScoringItem(Transaction(f"t{i}", "c1", 1_740_830_400_000 + i, 10.0 + i), new_history(),
                        rng.normal(size=len(FEATURE_NAMES)))
            for i in range(len(SEQ))]


def _online_by_hand(learner: OnlineLearner, items: list[ScoringItem], seq: Sequence[float]) -> list[float]:
    """The online learner's score of each item through its dict path, the sequence score given as its log-odds."""
    rows = [{**dict(zip(FEATURE_NAMES, item.features.tolist(), strict=True)), SEQUENCE_INPUT: math.log(p / (1 - p))}
            for item, p in zip(items, seq, strict=True)]
    return learner.predict_many(rows).tolist()


def _teach(learner: OnlineLearner, n: int) -> None:
    rng = np.random.default_rng(n)
    for i in range(n):
        x = dict(zip(FEATURE_NAMES, rng.normal(size=len(FEATURE_NAMES)).tolist(), strict=True))
        learner.learn({**x, SEQUENCE_INPUT: 2.0 if i % 2 else -2.0}, i % 2)


def test_the_stub_is_a_scorer() -> None:
    assert isinstance(FixedSequence(SEQ), Scorer)


def test_below_min_labels_the_score_is_the_sequence_models() -> None:
    learner = OnlineLearner()
    _teach(learner, MIN_LABELS - 1)
    fusion = Fusion(learner, sequence=FixedSequence(SEQ), min_labels_for_online=MIN_LABELS)
    batch = fusion.score_batch(_items())
    assert batch.score.tolist() == SEQ
    assert batch.components["sequence"].tolist() == SEQ
    online = _online_by_hand(learner, _items(), SEQ)
    assert batch.components["online"].tolist() == pytest.approx(online, abs=1e-12)
    assert all(abs(o - s) > 0.05 for o, s in zip(online, SEQ, strict=True)), "the two must differ for this to show"
    assert fusion.versions() == {"online": f"online-{MIN_LABELS - 1}", "sequence": "fixed-1"}


@pytest.mark.parametrize("labels", [MIN_LABELS, MIN_LABELS + 5])
def test_at_and_after_min_labels_the_score_is_the_online_learners(labels: int) -> None:
    learner = OnlineLearner()
    _teach(learner, labels)
    fusion = Fusion(learner, sequence=FixedSequence(SEQ), min_labels_for_online=MIN_LABELS)
    batch = fusion.score_batch(_items())
    online = _online_by_hand(learner, _items(), SEQ)
    assert batch.score.tolist() == pytest.approx(online, abs=1e-12)
    assert all(abs(o - s) > 0.05 for o, s in zip(online, SEQ, strict=True)), "the two must differ for this to show"
    assert batch.components["sequence"].tolist() == SEQ


def test_the_online_learner_takes_over_as_labels_arrive() -> None:
    learner = OnlineLearner()
    fusion = Fusion(learner, sequence=FixedSequence(SEQ), min_labels_for_online=MIN_LABELS)
    _teach(learner, MIN_LABELS - 1)
    assert fusion.score_batch(_items()).score.tolist() == SEQ
    learner.learn(dict.fromkeys(FEATURE_NAMES, 0.0), 1)  # the MIN_LABELS-th label
    assert learner.n_labels == MIN_LABELS
    assert fusion.score_batch(_items()).score.tolist() == pytest.approx(_online_by_hand(learner, _items(), SEQ),
                                                                        abs=1e-12)


@pytest.mark.parametrize("labels", [0, MIN_LABELS + 5])
def test_without_a_sequence_model_the_score_is_the_online_learners(labels: int) -> None:
    learner = OnlineLearner()
    _teach(learner, labels)
    fusion = Fusion(learner, sequence=None, min_labels_for_online=MIN_LABELS)
    batch = fusion.score_batch(_items())
    online = _online_by_hand(learner, _items(), [0.5] * len(SEQ))  # no sequence model: its input is 0 (logit 0.5)
    assert batch.score.tolist() == pytest.approx(online, abs=1e-12)
    assert set(batch.components) == {"online"}
    assert batch.inputs[:, -1].tolist() == [0.0] * len(SEQ)
    if labels == 0:
        assert batch.score.tolist() == pytest.approx([0.01] * len(SEQ), abs=1e-9)  # the prior, before any label


def test_by_default_the_online_learner_takes_over_at_200_labels() -> None:
    """FRAUDSTREAM_MIN_LABELS_FOR_ONLINE's default, 200: the sequence score with 199 labels, the online one at 200."""
    learner = OnlineLearner()
    fusion = Fusion(learner, sequence=FixedSequence(SEQ))
    _teach(learner, 199)
    assert fusion.score_batch(_items()).score.tolist() == SEQ
    learner.learn(dict.fromkeys(FEATURE_NAMES, 0.0), 0)
    online = _online_by_hand(learner, _items(), SEQ)
    assert all(abs(o - s) > 1e-3 for o, s in zip(online, SEQ, strict=True)), "the two must differ for this to show"
    assert fusion.score_batch(_items()).score.tolist() == pytest.approx(online, abs=1e-12)


def test_the_time_each_model_took_is_recorded_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that advances one second a reading (from 10 s, not 0): each model's time is exactly one second."""
    import models.fusion

    ticks = iter(range(10, 100))
    monkeypatch.setattr(models.fusion.time, "perf_counter", lambda: float(next(ticks)))
    with_sequence = Fusion(OnlineLearner(), sequence=FixedSequence(SEQ), min_labels_for_online=MIN_LABELS)
    alone = Fusion(OnlineLearner(), sequence=None)
    assert with_sequence.last_seconds == {} and alone.last_seconds == {}  # nothing before the first batch
    with_sequence.score_batch(_items())
    assert with_sequence.last_seconds == {"sequence": 1.0, "online": 1.0}
    alone.score_batch(_items())
    assert alone.last_seconds == {"online": 1.0}


class LowPrecisionSequence(FixedSequence):
    """A sequence model answering in float32, and out of range: the fusion must not pass either on."""

    def score_batch(self, items: Sequence[ScoringItem]) -> np.ndarray:
        return np.array(self.scores[:len(items)], dtype=np.float32)


def test_the_sequence_score_is_float64_and_the_fused_score_within_0_and_1() -> None:
    learner = OnlineLearner()
    fusion = Fusion(learner, sequence=LowPrecisionSequence([0.1, 1.5, -0.25]), min_labels_for_online=MIN_LABELS)
    batch = fusion.score_batch(_items())
    assert batch.components["sequence"].dtype == np.float64 and batch.score.dtype == np.float64
    assert batch.components["sequence"].tolist() == [float(np.float32(0.1)), 1.5, -0.25]
    assert batch.score.tolist() == [float(np.float32(0.1)), 1.0, 0.0]  # clipped into [0, 1]


def test_once_the_trainer_has_fitted_trees_the_score_is_theirs_over_the_same_inputs() -> None:
    """The trees read the learner's inputs, the sequence model's logit among them, whatever the label count."""
    from models.trees import ExampleWindow, TreeModel

    learner = OnlineLearner()
    window = ExampleWindow(learner.feature_names, window_ms=10**9, max_examples=10_000)
    rng = np.random.default_rng(5)
    seq_at = learner.feature_names.index(SEQUENCE_INPUT)
    for i in range(2_000):  # the labels say: trust the sequence model's logit, and nothing else
        x = rng.normal(size=len(learner.feature_names))
        window.add(x, int(x[seq_at] > 1.0), event_time_ms=i)
    learner.trees = TreeModel.fit(window, rounds=50)
    fusion = Fusion(learner, sequence=FixedSequence(SEQ), min_labels_for_online=MIN_LABELS)
    items = _items()
    fused = fusion.score_batch(items)
    x = np.array([[*item.features.tolist(), math.log(p / (1 - p))] for item, p in zip(items, SEQ, strict=True)])
    assert fused.score.tolist() == pytest.approx(learner.trees.predict_matrix(x).tolist())
    assert fused.score[0] > 0.5 > fused.score[1]  # sequence 0.9 (logit 2.2) against 0.2 (logit -1.4)
    assert fused.components["online"].tolist() == pytest.approx(_online_by_hand(learner, items, SEQ))
    assert fusion.versions()["trees"] == learner.trees.version and "trees" in fusion.last_seconds
