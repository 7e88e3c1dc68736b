"""The trees' example window: every fraud of the window kept, legitimate examples thinned with weights past the count."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.trees import ExampleWindow, TreeModel


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 4_000), fraud_every=st.integers(5, 400), cap=st.integers(50, 800))
def test_past_the_count_the_window_keeps_its_frauds_and_its_time_span(n: int, fraud_every: int, cap: int) -> None:
    w = ExampleWindow(("a",), window_ms=10**9, max_examples=cap)
    y_all = [int(i % fraud_every == 0) for i in range(n)]
    for i, label in enumerate(y_all):
        w.add([float(i)], label, event_time_ms=i)
    x, y = w.arrays()
    weights = w.weights()
    assert len(y) <= cap and len(weights) == len(y)
    frauds = sum(y_all)
    if frauds < cap // 2 and n > 1:  # the frauds alone are far from the count: none is lost, and the window still starts early
        assert int(y.sum()) == frauds
        legit_rows = x[y == 0, 0]
        assert legit_rows.min() == 1.0  # the oldest legitimate example (row 0 is a fraud)
        # the legitimate examples kept stand for all of them, exactly (thinned in pairs of equal weight)
        assert float(weights[y == 0].sum()) == n - frauds
    if n < cap:  # under the count nothing is thinned
        assert (weights == 1).all() and len(y) == n


def test_trees_fitted_on_a_thinned_window_still_rank_the_frauds_first() -> None:
    rng = np.random.default_rng(0)
    w = ExampleWindow(("a", "b"), window_ms=10**9, max_examples=2_000)
    for i in range(20_000):
        label = int(rng.random() < 0.01)
        w.add([rng.normal(2.0 if label else 0.0), rng.normal()], label, event_time_ms=i)
    _, y = w.arrays()
    assert int(y.sum()) > 150 and len(y) <= 2_000 and w.weights().max() > 1
    trees = TreeModel.fit(w, rounds=30)
    p = trees.predict_matrix([[2.0, 0.0], [0.0, 0.0]])
    # Weights keep the odds near the true base rate (1 %), not the thinned one (~10 %): the Bayes posterior of
    # N(2, 1) frauds among N(0, 1) legitimate ones is 0.069 at a = 2 and 0.0014 at a = 0.
    bayes = [0.01 * np.exp(-(a - 2) ** 2 / 2) / (0.01 * np.exp(-(a - 2) ** 2 / 2) + 0.99 * np.exp(-a * a / 2))
             for a in (2.0, 0.0)]
    assert np.allclose(p, bayes, rtol=0.5), (p, bayes)


def _window_with_logit(n: int, masked_until: int, informative: bool) -> ExampleWindow:
    """Examples of five features and a logit, the logit missing (NaN) up to ``masked_until`` as the trainer masks it."""
    rng = np.random.default_rng(3)
    w = ExampleWindow((*(f"a{k}" for k in range(5)), "sequence_logit"), window_ms=10**9, max_examples=n)
    for i in range(n):
        label = int(rng.random() < 0.05)
        features = rng.normal(0.6 if label else 0.0, size=5)
        logit = rng.normal(2.0 if label and informative else 0.0)
        w.add([*features, np.nan if i <= masked_until else logit], label, event_time_ms=i)
    return w


def test_the_sequence_logit_stays_only_where_it_earned_its_place() -> None:
    """Informative and out of sample on most examples: kept. Noise, or out of sample on too few: no tree reads it."""
    kept = TreeModel.fit(_window_with_logit(6_000, masked_until=1_000, informative=True), rounds=30,
                         must_earn="sequence_logit")
    assert "sequence_logit" not in kept.ignored
    noise = TreeModel.fit(_window_with_logit(6_000, masked_until=1_000, informative=False), rounds=30,
                          must_earn="sequence_logit")
    few = TreeModel.fit(_window_with_logit(6_000, masked_until=5_800, informative=True), rounds=30,
                        must_earn="sequence_logit")
    for trees in (noise, few):
        assert trees.ignored == ("sequence_logit",)
        assert trees.predict_matrix([[1.0] * 5 + [0.0]]) == trees.predict_matrix([[1.0] * 5 + [9.0]])  # no effect
    free = TreeModel.fit(_window_with_logit(6_000, masked_until=1_000, informative=False), rounds=30)
    assert "sequence_logit" not in free.ignored  # without the trial, trees split on noise too
