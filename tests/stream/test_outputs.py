"""What the engine emits validates against the published schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from models.features import engineered
from models.history import new_history
from models.online import OnlineLearner
from models.reasons import top_reasons
from stream.codec import dumps as encode  # what the score agent emits
from stream.dlq import dlq_headers
from stream.outputs import alert_id, alert_record, score_record
from stream.records import Transaction

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


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
    x = {**engineered(new_history(), T), "sequence_logit": 0.0}
    reasons = top_reasons(T, x, {"log_amount": 1.2, "is_ecom": 0.4, "hour_sin": -0.1})
    a = alert_record(s, T, reasons)
    _validator("alerts").validate(json.loads(encode(a)))
    assert a["alert_id"] == alert_id("t-9") != alert_id("t-10")
    assert [r["code"] for r in a["reasons"]] == ["log_amount", "is_ecom"]
    assert learner.contributions(x).keys() == set(learner.feature_names)


def test_dlq_headers_match_schema():
    headers = {k: v.decode() for k, v in dlq_headers("invalid_amount", "amount must be > 0", "transactions", 1, 7)}
    _validator("dlq-headers").validate(headers)
