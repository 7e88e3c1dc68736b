"""The trainer's step over in-memory examples: learning, skipping, caps, reports, snapshots; no broker."""

from __future__ import annotations

import pytest

from models.online import OnlineLearner
from models.snapshot import unseal, unseal_trees
from stream.core.stored import LabelledExample, SourceMessage
from stream.core.training import OnlineTraining

KEY = b"0123456789abcdef-test"
ORIGIN = SourceMessage("feedback", 2, 17, b"card-1", b'{"transaction_id": "t1"}')
HOUR = 3_600_000


def example(i: int, label: int = 1, source: str = "analyst", at: int = 0) -> bytes:
    width = len(OnlineLearner().feature_names)
    return LabelledExample([float(i % 3)] * width, label, source, at, ORIGIN._replace(offset=i)).encode()


def owner(cap: int = 1000) -> OnlineTraining:
    training = OnlineTraining(KEY, cap_per_hour=cap)
    training.take_over(None, OnlineLearner())
    return training


def test_each_example_is_learned_once_and_the_snapshot_says_how_far_it_got() -> None:
    training = owner()
    step = training.step([(0, example(0)), (1, example(1, label=0))])
    assert step.learned == 2 and training.learner.n_labels == 2
    learner, meta = unseal(step.snapshot, KEY)
    assert (meta["seq"], meta["offset"], learner.n_labels) == (1, 1, 2)
    again = training.step([(0, example(0)), (1, example(1)), (2, example(2))])  # redelivered, then one new
    assert again.learned == 1 and training.learner.n_labels == 3
    assert unseal(again.snapshot, KEY)[1]["offset"] == 2


def test_a_new_owner_resumes_after_the_snapshot_and_learns_nothing_twice() -> None:
    first = owner()
    blob = first.step([(0, example(0)), (1, example(1))]).snapshot
    successor = OnlineTraining(KEY, cap_per_hour=1000)
    successor.take_over(blob, OnlineLearner())
    step = successor.step([(0, example(0)), (1, example(1)), (2, example(2))])
    assert step.learned == 1 and successor.learner.n_labels == 3 and successor.seq == 2


def test_an_unreadable_example_is_reported_and_skipped() -> None:
    step = owner().step([(4, b"{not json"), (5, None), (6, example(6))])
    assert [r["type"] for r in step.ops] == ["bad_labelled_example"] * 2
    assert [r["offset"] for r in step.ops] == [4, 5]
    assert step.learned == 1


def test_the_source_cap_dead_letters_the_excess_and_reports_the_first_refusal() -> None:
    training = owner(cap=2)
    step = training.step([(i, example(i, source="bot", at=i * 1000)) for i in range(5)])
    assert step.learned == 2 and step.capped == 3
    assert [(d.reason, d.offset) for d in step.dead_letters] == [("source_rate_limited", 2), ("source_rate_limited", 3),
                                                                  ("source_rate_limited", 4)]
    assert step.dead_letters[0].value == ORIGIN.value and step.dead_letters[0].topic == "feedback"
    assert [r for r in step.ops if r["type"] == "label_source_capped"] == [
        {"type": "label_source_capped", "source": "bot", "rejected_so_far": 1}]
    later = training.step([(5, example(5, source="bot", at=2 * HOUR))])  # a new event hour
    assert later.learned == 1


def test_stepping_without_owning_the_learner_is_refused() -> None:
    with pytest.raises(RuntimeError, match="take_over"):
        OnlineTraining(KEY, cap_per_hour=10).step([(0, example(0))])


def test_a_vector_stored_before_entity_profiles_is_learned_with_its_entity_inputs_at_zero() -> None:
    """A rolling upgrade to FRAUDSTREAM_ENTITIES: labels of transactions scored without entity inputs still teach."""
    from models.online import online_inputs

    training = OnlineTraining(KEY, cap_per_hour=1000)
    training.take_over(None, OnlineLearner(feature_names=online_inputs(["merchant_id"])))
    old = LabelledExample([1.0] * len(online_inputs()), 1, "analyst", 0, ORIGIN).encode()
    foreign = LabelledExample([1.0] * 3, 1, "analyst", 0, ORIGIN._replace(offset=1)).encode()
    step = training.step([(0, old), (1, foreign)])
    assert step.learned == 1
    assert [r["type"] for r in step.ops] == ["bad_labelled_example"] and "zip()" in step.ops[0]["error"]
    means = training.learner.scaler.means  # what the learner saw: the stored values, and 0 for the entity inputs
    assert (means["log_amount"], means["sequence_logit"], means["merchant_fraud_7d"]) == (1.0, 1.0, 0.0)


def test_trees_are_due_at_each_whole_refit_period_once_enough_frauds_are_kept_before_it() -> None:
    from stream.core.training import TreeSchedule

    training = OnlineTraining(KEY, cap_per_hour=10_000,
                              trees=TreeSchedule(refit_ms=HOUR, window_ms=10 * HOUR, max_examples=10_000, min_frauds=20))
    training.take_over(None, OnlineLearner())
    width = len(training.learner.feature_names)

    def batch(first: int, n: int, at: int) -> list[tuple[int, bytes]]:  # fraud when the first input is high
        return [(i, LabelledExample([float(i % 4 == 0)] * width, int(i % 4 == 0), "analyst", at,
                                    ORIGIN._replace(offset=i)).encode()) for i in range(first, first + n)]

    assert not training.step(batch(0, 40, HOUR // 2)).refit_due  # 10 frauds: fewer than 20
    assert not training.step(batch(40, 360, HOUR // 2)).refit_due  # 100, but their hour has not ended
    assert training.step(batch(400, 4, HOUR)).refit_due  # the next hour's first label: a refit on the hour before
    trees = training.fit_trees()
    assert (trees.examples, trees.frauds, trees.fitted_until_ms) == (400, 100, HOUR), "the next hour's are not in"
    trees_blob, snapshot = training.install_trees(trees)
    learner, meta = unseal(snapshot, KEY)
    assert learner.trees is None and meta["trees"] == trees.version and meta["offset"] == 403  # named, not carried
    sent, _ = unseal_trees(trees_blob, KEY)
    assert sent.version == trees.version
    p = sent.predict_matrix([[1.0] * width, [0.0] * width])
    assert p[0] > 0.5 > p[1]
    assert not training.step(batch(404, 10, 2 * HOUR - 1)).refit_due  # within the period
    assert training.step(batch(414, 10, 2 * HOUR)).refit_due


def test_a_refit_period_passed_without_a_refit_is_reported_once_with_the_reason() -> None:
    """A replay holding for the refit (replay/refits.py) learns this way that none is coming."""
    from stream.core.training import TreeSchedule

    training = OnlineTraining(KEY, cap_per_hour=10_000,
                              trees=TreeSchedule(refit_ms=HOUR, window_ms=10 * HOUR, max_examples=10_000, min_frauds=20))
    training.take_over(None, OnlineLearner())
    width = len(training.learner.feature_names)
    offsets = iter(range(10**6))

    def step(n: int, at: int, fraud: int = 0) -> list[dict]:
        return training.step([(k := next(offsets), LabelledExample([0.0] * width, fraud, "analyst", at,
                                                                    ORIGIN._replace(offset=k)).encode())
                              for _ in range(n)]).ops

    first = step(5, HOUR // 2, fraud=1) + step(5, HOUR // 2)
    assert first == [], "the first example's period passes without a report"
    skipped = step(1, HOUR)
    assert skipped == [{"type": "trees_refit_skipped", "until_ms": HOUR, "reason": "too_few_frauds", "frauds": 5,
                        "min_frauds": 20}]
    assert step(1, HOUR + 1) == [], "once per period"
    assert [r["until_ms"] for r in step(1, 3 * HOUR)] == [3 * HOUR], "periods passed in one step: the latest"


def test_the_same_examples_give_the_same_trees_whatever_their_order_and_stragglers_of_the_next_period() -> None:
    """Two owners (or two replays at different speeds) that learned the same labels fit the same trees."""
    import numpy as np

    from stream.core.training import TreeSchedule

    schedule = TreeSchedule(refit_ms=HOUR, window_ms=10 * HOUR, max_examples=10_000, min_frauds=5)
    rng = np.random.default_rng(3)
    width = len(OnlineLearner().feature_names)
    rows = []
    for i in range(600):
        fraud = int(rng.random() < 0.2)
        x = rng.normal(size=width) + fraud
        rows.append((x.tolist(), fraud, int(rng.integers(0, HOUR))))
    fits = []
    for order, stragglers in ((range(600), 0), (rng.permutation(600), 30)):
        training = OnlineTraining(KEY, cap_per_hour=10_000, trees=schedule)
        training.take_over(None, OnlineLearner())
        examples = [rows[i] for i in order] + [(rows[i][0], rows[i][1], HOUR + i) for i in range(stragglers + 1)]
        step = training.step([(k, LabelledExample(x, y, "analyst", at, ORIGIN._replace(offset=k)).encode())
                              for k, (x, y, at) in enumerate(examples)])
        assert step.refit_due
        fits.append(training.fit_trees())
    probe = rng.normal(size=(50, width))
    assert fits[0].examples == fits[1].examples == 600
    assert np.array_equal(fits[0].predict_matrix(probe), fits[1].predict_matrix(probe))


def test_a_new_owner_keeps_the_published_trees_until_its_window_holds_half_their_examples() -> None:
    from stream.core.training import TreeSchedule

    schedule = TreeSchedule(refit_ms=HOUR, window_ms=100 * HOUR, max_examples=10_000, min_frauds=5)
    first = OnlineTraining(KEY, cap_per_hour=10_000, trees=schedule)
    first.take_over(None, OnlineLearner())
    width = len(first.learner.feature_names)
    rows = [(i, LabelledExample([float(i % 2)] * width, i % 2, "analyst", 0, ORIGIN._replace(offset=i)).encode())
            for i in range(200)]
    first.step(rows[:100])
    trees_blob, blob = first.install_trees(first.fit_trees())
    successor = OnlineTraining(KEY, cap_per_hour=10_000, trees=schedule)
    scoring = OnlineLearner()  # the worker's model, which its model sync gave the trees the snapshot names
    scoring.trees = unseal_trees(trees_blob, KEY)[0]
    successor.take_over(blob, scoring)
    assert successor.learner.trees is scoring.trees
    later = [(i, LabelledExample([float(i % 2)] * width, i % 2, "analyst", 2 * HOUR - (i < 148),
                                 ORIGIN._replace(offset=i)).encode())
             for i in range(100, 200)]
    assert not successor.step(later[:49]).refit_due  # 49 kept < half of the 100 the trees were fitted on
    assert successor.step(later[49:]).refit_due


def test_examples_from_the_sequence_models_training_period_are_learned_without_its_logit() -> None:
    """Stacked on logits of transactions it was trained on, the learner would trust the sequence model blindly."""
    import math

    import numpy as np

    from models.online import SEQUENCE_INPUT
    from stream.core.training import TreeSchedule

    training = OnlineTraining(KEY, cap_per_hour=10_000, sequence_trained_until=lambda: 10 * HOUR,
                              trees=TreeSchedule(refit_ms=HOUR, window_ms=100 * HOUR, max_examples=10_000,
                                                 min_frauds=20))
    training.take_over(None, OnlineLearner())
    names = training.learner.feature_names
    k = names.index(SEQUENCE_INPUT)

    def batch(first: int, n: int, at: int) -> list[tuple[int, bytes]]:
        # The sequence logit is perfect on these examples: fraud exactly when it is high.
        out = []
        for i in range(first, first + n):
            x = [0.0] * len(names)
            x[k] = 5.0 if i % 4 == 0 else -5.0
            out.append((i, LabelledExample(x, int(i % 4 == 0), "analyst", at, ORIGIN._replace(offset=i)).encode()))
        return out

    seen = training.step(batch(0, 200, at=10 * HOUR))  # at the end of its training period: in sample
    assert seen.sequence_masked == 200 and seen.learned == 200
    rows, _ = training.examples.arrays()
    assert all(math.isnan(v) for v in rows[:, k])
    assert training.learner.regression.weights.get(SEQUENCE_INPUT, 0.0) == 0.0  # learned nothing about it
    unseen = training.step(batch(200, 200, at=10 * HOUR + 1))  # new traffic: learned with its logit
    assert unseen.sequence_masked == 0
    rows, _ = training.examples.arrays()
    assert np.isfinite(rows[200:, k]).all() and training.learner.regression.weights[SEQUENCE_INPUT] > 0


def test_the_sequence_logit_is_tried_again_only_once_its_examples_have_changed(monkeypatch) -> None:
    """Each trial is two more fits, and a refit's cost is what holds refits back in a replay."""
    import numpy as np

    import models.trees
    from models.online import SEQUENCE_INPUT
    from stream.core.training import TRIAL_AGAIN, TreeSchedule

    trials: list[int] = []
    real = models.trees.earns_its_place

    def counted(x, *args, **kwargs):  # type: ignore[no-untyped-def]
        trials.append(len(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(models.trees, "earns_its_place", counted)
    training = OnlineTraining(KEY, cap_per_hour=100_000, sequence_trained_until=lambda: None,
                              trees=TreeSchedule(refit_ms=HOUR, window_ms=10**6 * HOUR, max_examples=100_000,
                                                 min_frauds=20))
    training.take_over(None, OnlineLearner())
    names = training.learner.feature_names
    k = names.index(SEQUENCE_INPUT)
    rng = np.random.default_rng(0)

    def batch(first: int, n: int) -> list[tuple[int, bytes]]:
        out = []
        for i in range(first, first + n):
            fraud = int(rng.random() < 0.1)
            x = [0.0] * len(names)
            x[k] = float(rng.normal(3.0 if fraud else 0.0))
            out.append((i, LabelledExample(x, fraud, "analyst", i * 1_000, ORIGIN._replace(offset=i)).encode()))
        return out

    training.step(batch(0, 1_000))
    first = training.fit_trees()
    assert trials == [1_000] and first.verdict is True and SEQUENCE_INPUT not in first.ignored
    training.step(batch(1_000, int(1_000 * TRIAL_AGAIN) - 10))
    again = training.fit_trees()
    assert trials == [1_000] and again.verdict is True and SEQUENCE_INPUT not in again.ignored  # the last verdict
    training.step(batch(2_000, 20))
    training.fit_trees()
    assert len(trials) == 2  # a quarter more examples carry it: tried again
