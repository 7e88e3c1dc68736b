"""The engine's internal records: round trips, and the records earlier releases wrote still read."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.stored import FeatureEntry, LabelledExample, ParkedLabel, SourceMessage, StoredRecordError

# Written by the previous release, byte for byte as its code wrote them (features and pending table values,
# a labelled-topic record): an upgraded worker must read its changelogs and topics.
V1_FEATURES = {"c": "card-7", "t": 1772359200000, "p": 3, "x": "AAAAAAAA4D8AAAAAAADwvw=="}
V1_FEATURES_LEARNED = {**V1_FEATURES, "l": 1, "s": "chargeback"}
V1_PENDING = {"tp": "feedback", "p": 3, "o": 41, "due": 1772362800000, "k": "Y2FyZC03",
              "v": "eyJ0cmFuc2FjdGlvbl9pZCI6ICJ0LTEifQ=="}
V1_EXAMPLE = json.dumps({"x": [0.5, -1.0], "y": 1, "src": "analyst", "t": 1772359200000,
                         "orig": {"topic": "feedback", "partition": 3, "offset": 41, "key": "Y2FyZC03",
                                  "value": "e30="}}).encode()


def test_previous_release_records_read_as_typed_records() -> None:
    assert FeatureEntry.from_json(V1_FEATURES) == FeatureEntry("card-7", 1772359200000, 3, "AAAAAAAA4D8AAAAAAADwvw==")
    assert FeatureEntry.from_json(V1_FEATURES_LEARNED).label == 1
    assert FeatureEntry.from_json(V1_FEATURES_LEARNED).source == "chargeback"
    parked = ParkedLabel.from_json(V1_PENDING)
    assert parked.due_ms == 1772362800000
    assert parked.message == SourceMessage("feedback", 3, 41, b"card-7", b'{"transaction_id": "t-1"}')
    example = LabelledExample.decode(V1_EXAMPLE)
    assert (example.inputs, example.label, example.source, example.event_time_ms) == ([0.5, -1.0], 1, "analyst",
                                                                                      1772359200000)
    assert example.origin == SourceMessage("feedback", 3, 41, b"card-7", b"{}")


def test_new_records_keep_the_keys_the_previous_release_reads() -> None:
    """A rollback to the previous release still reads what this one wrote (it ignores "v")."""
    assert {"c", "t", "p", "x"} <= FeatureEntry.from_json(V1_FEATURES).to_json().keys()
    assert {"tp", "p", "o", "due", "k", "v"} <= ParkedLabel.from_json(V1_PENDING).to_json().keys()
    assert FeatureEntry.from_json(V1_FEATURES).to_json()["v"] == 2


source_messages = st.builds(SourceMessage, st.text(min_size=1, max_size=20), st.integers(0, 10_000),
                            st.integers(0, 2**62), st.binary(max_size=40), st.binary(max_size=200),
                            headers=st.just(()))  # headers are not kept: a dead letter carries its own


@settings(max_examples=50)
@given(source_messages, st.integers(-2**62, 2**62))
def test_parked_labels_round_trip(message: SourceMessage, due: int) -> None:
    assert ParkedLabel.from_json(json.loads(json.dumps(ParkedLabel(message, due).to_json()))) == ParkedLabel(message,
                                                                                                         due)


@settings(max_examples=50)
@given(source_messages, st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=30), st.sampled_from([0, 1]),
       st.text(max_size=30), st.integers(0, 2**62))
def test_labelled_examples_round_trip(origin: SourceMessage, x: list[float], y: int, src: str, t: int) -> None:
    example = LabelledExample(x, y, src, t, origin)
    assert LabelledExample.decode(example.encode()) == example


@pytest.mark.parametrize(("raw", "message"), [
    (None, "without a value"),
    (b"[1]", "not an object"),
    (b"{nope", "not JSON"),
    (json.dumps({"x": [], "y": 2, "src": "a", "t": 1, "orig": {}}).encode(), "not 0 or 1"),
    (json.dumps({"x": [], "y": 1, "src": "a", "t": 1, "orig": {"tp": "f", "p": 1, "o": 1, "k": "!!", "v": ""}}).encode(),
     "source key is not base64"),
    (json.dumps({"x": [], "y": 1, "src": "a", "t": 1, "orig": {}}).encode(), "source record lacks 'topic'"),
    (json.dumps({"x": [], "y": 1, "src": "a", "t": "soon", "orig": V1_PENDING}).encode(), "wrong type"),
])
def test_damaged_labelled_examples_are_refused_with_what_is_wrong(raw: bytes | None, message: str) -> None:
    with pytest.raises(StoredRecordError, match=message):
        LabelledExample.decode(raw)


def test_damaged_table_values_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(StoredRecordError, match="not an object"):
        FeatureEntry.from_json([1, 2])
    with pytest.raises(StoredRecordError, match="lacks 'x'"):
        FeatureEntry.from_json({"c": "c", "t": 1, "p": 0})
    with pytest.raises(StoredRecordError, match="lacks 'due'"):
        ParkedLabel.from_json({"tp": "f"})
    with pytest.raises(StoredRecordError, match="wrong type"):
        SourceMessage.from_json({"tp": "f", "p": "three", "o": 1, "k": "", "v": ""})
    assert base64.b64decode(V1_PENDING["k"]) == b"card-7"
