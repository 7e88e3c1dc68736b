"""The vectorised online predictions equal River's own, and persistence round-trips."""

from __future__ import annotations

import random

import numpy as np

from models.online import OnlineLearner


def rows(n, seed):
    rng = random.Random(seed)
    return [{"a": rng.gauss(0, 1), "b": rng.random(), "c": float(rng.random() < 0.1)} for _ in range(n)]


def test_predict_many_equals_river_predict_proba_one():
    learner = OnlineLearner(feature_names=("a", "b", "c"))
    for x in rows(500, 1):
        learner.learn(x, int(x["a"] + x["c"] > 1.2))
    xs = rows(100, 2)
    ours = learner.predict_many(xs)
    theirs = [learner.pipeline.predict_proba_one(x)[True] for x in xs]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_constant_input_is_ignored_like_river_does():
    learner = OnlineLearner(feature_names=("a", "k"))
    for x in rows(50, 3):
        learner.learn({"a": x["a"], "k": 1.0}, int(x["a"] > 0))
    contributions = learner.contributions({"a": 1.0, "k": 1.0})
    assert contributions["k"] == 0.0


def test_save_load_round_trip(tmp_path):
    learner = OnlineLearner(feature_names=("a", "b", "c"))
    for x in rows(200, 4):
        learner.learn(x, int(x["b"] > 0.9))
    path = tmp_path / "m" / "online.pkl"
    learner.save(path)
    loaded = OnlineLearner.load(path)
    xs = rows(20, 5)
    np.testing.assert_array_equal(loaded.predict_many(xs), learner.predict_many(xs))
    assert loaded.version == learner.version == "online-200"
