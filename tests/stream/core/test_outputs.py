"""What the engine emits validates against the published schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from models.features import engineered
from models.history import append, new_history
from models.online import OnlineLearner
from models.reasons import top_reasons
from stream.contracts.codec import dumps as encode  # what the score agent emits
from stream.contracts.dlq import dlq_headers
from stream.contracts.records import Transaction
from stream.core.outputs import alert_id, alert_record, score_record

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def _validator(name):
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{name}.json").read_text()),
                                           format_checker=jsonschema.FormatChecker())


T = Transaction("t-9", "c-1", 1_740_830_400_000, 1234.5, "EUR", "m-7", "5732", "BR", "ecom")


def test_score_and_alert_records_match_schemas():
    s = score_record(T, 0.93, {"online": 0.93}, {"online": "online-12"}, 0.5, 1_795_000_000_000,
                     1_795_000_000_020, 3.2)
    assert s["decision"] == "alert" and s["latency_ms"] == 20.0
    _validator("scores").validate(json.loads(encode(s)))
    learner = OnlineLearner()
    history = append(new_history(), Transaction("t-1", "c-1", T.event_time_ms - 86_400_000, 50.0, "EUR", "m-1",
                                                "5411", "DE", "pos"), 32)
    x = {**engineered(history, T), "sequence_logit": 0.0}
    reasons = top_reasons(T, x, {"log_amount": 1.2, "is_ecom": 0.4, "is_new_country": 0.3, "hour_sin": -0.1},
                          history)
    a = alert_record(s, T, reasons)
    _validator("alerts").validate(json.loads(encode(a)))
    assert a["alert_id"] == alert_id("t-9") != alert_id("t-10")
    assert [r["code"] for r in a["reasons"]] == ["amount_above_usual", "card_not_present", "new_country"]
    assert a["reasons"][2]["values"]["usual_countries"] == ["DE"]  # a list of strings, as the schema allows
    assert learner.contributions(x).keys() == set(learner.feature_names)


def test_dlq_headers_match_schema():
    headers = {k: v.decode() for k, v in dlq_headers("invalid_amount", "amount must be >= 0", "transactions", 1, 7)}
    _validator("dlq-headers").validate(headers)
    assert (headers["dlq.reason"], headers["dlq.source.partition"], headers["dlq.source.offset"]) == ("invalid_amount", "1", "7")


def test_scores_are_rounded_to_six_decimals_as_python_rounds_them_away_from_ties():
    import math
    import random

    from stream.core.outputs import score_records

    rng = random.Random(6)
    values = [rng.random() for _ in range(20_000)] + [0.0, 1.0, 1e-9, 0.9999999, 0.5]
    records = score_records([T] * len(values), values, {"online": values[::-1]}, {"online": "v1"}, 0.5,
                            [T.event_time_ms] * len(values), T.event_time_ms, 1.0)
    for value, record in zip(values, records, strict=True):
        if abs(value * 1e6 % 1 - 0.5) > 1e-6:  # not within a rounding error of a tie
            assert record["score"] == round(value, 6)
        assert abs(record["score"] - value) <= 5e-7 + 1e-15 and repr(record["score"]) == repr(round(record["score"], 6))
    assert [r["components"]["online"] for r in records] == [r["score"] for r in records][::-1]
    odd = score_records([T] * 3, [math.nan, math.inf, 0.25], {}, {}, 0.5, [0] * 3, 0, 1.0)
    assert math.isnan(odd[0]["score"]) and odd[1]["score"] == math.inf and odd[2]["components"] == {}
    assert encode(odd[0])  # NaN goes out as null
    near = score_records([T], [0.49999996], {}, {}, 0.5, [0], 0, 1.0)[0]
    assert near["score"] == 0.5 and near["decision"] == "pass"  # decided on the score, not on its rounding


def test_the_alert_decision_is_taken_at_the_threshold_not_only_above_it():
    """README: "Scores at or above this raise an alert." Expected decisions written out by hand."""
    import math

    from stream.core.outputs import score_records

    cases = [
        # (score, threshold, decision)
        (0.5, 0.5, "alert"),                                 # exactly at the threshold
        (math.nextafter(0.5, 0.0), 0.5, "pass"),             # the float just below it
        (math.nextafter(0.5, 1.0), 0.5, "alert"),            # the float just above it
        (0.7, 0.7, "alert"),
        (0.6999999, 0.7, "pass"),
        (1.0, 1.0, "alert"),                                 # threshold 1: only a certain score alerts
        (0.9999999, 1.0, "pass"),
        (0.0, 0.0, "alert"),                                 # threshold 0: everything alerts
    ]
    for score, threshold, decision in cases:
        record = score_records([T], [score], {"online": [score]}, {"online": "v1"}, threshold,
                               [T.event_time_ms], T.event_time_ms, 1.0)[0]
        assert (record["decision"], record["threshold"]) == (decision, threshold), (score, threshold)
    single = score_record(T, 0.5, {"online": 0.5}, {"online": "v1"}, 0.5, 0, 0, 1.0)
    assert single["decision"] == "alert"


def test_scores_of_any_float_precision_are_rounded_as_float64():
    """A model answering in float32 still gets its score rounded to 6 decimals of the float64 value."""
    import numpy as np

    from stream.core.outputs import score_records

    scores = np.array([0.1, 0.7, 0.123456789], dtype=np.float32)
    records = score_records([T] * 3, scores, {"sequence": scores}, {"sequence": "s1"}, 0.5, [0] * 3, 0, 1.0)
    expected = [0.1, 0.7, 0.123457]  # float32(0.1) is 0.10000000149...: 0.1 at 6 decimals
    assert [r["score"] for r in records] == expected
    assert [r["components"]["sequence"] for r in records] == expected
    assert all(type(r["score"]) is float for r in records)


def test_processing_time_is_rounded_to_microseconds():
    from stream.core.outputs import score_records

    records = score_records([T, T], [0.1, 0.2], {}, {}, 0.5, [0, 0], 0, 1.23456)
    assert [r["processing_ms"] for r in records] == [1.235, 1.235]


def test_a_batch_whose_lengths_disagree_is_refused_not_misaligned():
    """A score or component too many would be written against the wrong transaction: zip(strict=True) refuses it."""
    import pytest

    from stream.core.outputs import score_records

    def call(scores, components, received):
        return score_records([T, T], scores, components, {}, 0.5, received, 0, 1.0)

    assert len(call([0.1, 0.2], {"a": [0.1, 0.2], "b": [0.3, 0.4]}, [0, 0])) == 2
    with pytest.raises(ValueError, match="zip"):
        call([0.1, 0.2, 0.3], {}, [0, 0])  # a score too many
    with pytest.raises(ValueError, match="zip"):
        call([0.1, 0.2], {}, [0, 0, 0])  # a receive time too many
    with pytest.raises(ValueError, match="zip"):
        call([0.1, 0.2], {"a": [0.1, 0.2, 0.9], "b": [0.3, 0.4]}, [0, 0])  # one model's score too many
