"""Snapshots: only what we signed is ever unpickled."""

from __future__ import annotations

import pickle

import pytest

from models.online import OnlineLearner
from models.snapshot import SnapshotError, peek_header, seal, unseal

KEY = b"k" * 32


def trained() -> OnlineLearner:
    learner = OnlineLearner(feature_names=("a",))
    for i in range(50):
        learner.learn({"a": float(i % 2)}, i % 2)
    return learner


def test_round_trip_keeps_predictions_and_meta():
    learner = trained()
    back, meta = unseal(seal(learner, KEY, {"seq": 7, "offset": 41}), KEY)
    assert (meta["seq"], meta["offset"], meta["n_labels"]) == (7, 41, 50)
    assert back.predict_many([{"a": 1.0}])[0] == learner.predict_many([{"a": 1.0}])[0]


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-40],                                   # truncated
    lambda b: b"X" + b[1:],                              # wrong magic
    lambda b: b.replace(b'"seq": 7', b'"seq": 9'),       # header edited
    lambda b: b[:60] + bytes([b[60] ^ 0xFF]) + b[61:],   # payload edited
    lambda b: pickle.dumps(OnlineLearner()),             # a bare pickle
])
def test_any_tampering_is_refused(mutate):
    blob = seal(trained(), KEY, {"seq": 7})
    with pytest.raises(SnapshotError):
        unseal(mutate(blob), KEY)


def test_other_key_refused_and_short_keys_rejected():
    blob = seal(trained(), KEY, {"seq": 1})
    with pytest.raises(SnapshotError, match="does not verify"):
        unseal(blob, b"x" * 32)
    with pytest.raises(SnapshotError, match="at least 16 bytes"):
        seal(trained(), b"short", {})
    assert peek_header(blob)["seq"] == 1
