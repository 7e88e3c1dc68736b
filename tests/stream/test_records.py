"""Contract validation: the hand-written parser and the published JSON Schemas agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from stream.records import InvalidRecord, Limits, format_rfc3339, parse_feedback, parse_transaction
from stream.settings import Settings

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
LIMITS = Limits.from_settings(Settings())
GOOD = {"transaction_id": "t1", "card_id": "c1", "timestamp": "2025-03-01T12:00:00Z", "amount": 12.5}


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(name), format_checker=jsonschema.FormatChecker())


CASES = [
    (GOOD, None),
    ({**GOOD, "timestamp": 1740830400000, "amount": "19.90", "extra": {"ignored": True}}, None),
    ({**GOOD, "currency": "EUR", "merchant_id": 42, "mcc": "5411", "country": "FR", "channel": "ecom"}, None),
    ({k: v for k, v in GOOD.items() if k != "card_id"}, "missing_field"),
    ({k: v for k, v in GOOD.items() if k != "timestamp"}, "missing_field"),
    ({**GOOD, "amount": -1}, "invalid_amount"),
    ({**GOOD, "amount": 0}, "invalid_amount"),
    ({**GOOD, "amount": "1e3"}, "invalid_amount"),
    ({**GOOD, "amount": True}, "invalid_type"),
    ({**GOOD, "amount": [1]}, "invalid_type"),
    ({**GOOD, "card_id": ""}, "invalid_value"),
    ({**GOOD, "card_id": "x" * 129}, "invalid_value"),
    ({**GOOD, "card_id": 1.5}, "invalid_type"),
    ({**GOOD, "timestamp": 1_740_830_400}, "timestamp_out_of_range"),
    ({**GOOD, "timestamp": "yesterday"}, "invalid_timestamp"),
    ({**GOOD, "channel": {"a": 1}}, "invalid_type"),
]


@pytest.mark.parametrize("record,reason", CASES)
def test_parser_and_schema_agree(record, reason):
    raw = json.dumps(record).encode()
    if reason is None:
        parse_transaction(raw, LIMITS)
        validator("transactions").validate(record)
    else:
        with pytest.raises(InvalidRecord) as err:
            parse_transaction(raw, LIMITS)
        assert err.value.reason == reason
        assert not validator("transactions").is_valid(record), f"schema accepts what the parser rejects: {record}"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_literals_are_not_json(literal):
    raw = b'{"transaction_id": "t", "card_id": "c", "timestamp": 1740830400000, "amount": ' + literal + b"}"
    with pytest.raises(InvalidRecord) as err:
        parse_transaction(raw, LIMITS)
    assert err.value.reason == "malformed_json"


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_amount_strings_rejected(text):
    raw = json.dumps({**GOOD, "amount": text}).encode()
    with pytest.raises(InvalidRecord, match="finite|not a decimal|exceeds") as err:
        parse_transaction(raw, LIMITS)
    assert err.value.reason == "invalid_amount"


def test_oversized_rejected_before_parsing():
    raw = json.dumps({**GOOD, "pad": "x" * LIMITS.max_bytes}).encode()
    with pytest.raises(InvalidRecord) as err:
        parse_transaction(raw, LIMITS)
    assert err.value.reason == "oversized"


def test_future_timestamps_bounded_by_skew():
    limits = Limits(max_bytes=1000, min_time_ms=0, max_future_skew_ms=0)
    with pytest.raises(InvalidRecord, match="in the future"):
        parse_transaction(json.dumps({**GOOD, "timestamp": "2999-01-01T00:00:00Z"}).encode(), limits)


def test_rfc3339_offsets_and_epoch_ms_agree():
    a = parse_transaction(json.dumps({**GOOD, "timestamp": "2025-03-01T13:00:00+01:00"}).encode(), LIMITS)
    b = parse_transaction(json.dumps({**GOOD, "timestamp": 1740830400000}).encode(), LIMITS)
    assert a.event_time_ms == b.event_time_ms


@pytest.mark.parametrize("label,expected", [("fraud", 1), ("LEGIT", 0), (1, 1), (0, 0), (True, 1)])
def test_feedback_labels(label, expected):
    record = {"transaction_id": "t1", "card_id": "c1", "label": label}
    assert parse_feedback(json.dumps(record).encode(), LIMITS).label == expected
    validator("feedback").validate(record)


@pytest.mark.parametrize("record", [
    {"transaction_id": "t1", "card_id": "c1", "label": "maybe"},
    {"transaction_id": "t1", "card_id": "c1"},
    {"transaction_id": "t1", "label": "fraud"},
    {"transaction_id": "t1", "card_id": "c1", "label": 2},
])
def test_bad_feedback_rejected_by_both(record):
    with pytest.raises(InvalidRecord):
        parse_feedback(json.dumps(record).encode(), LIMITS)
    assert not validator("feedback").is_valid(record)


def test_all_schemas_are_valid_draft_2020_12():
    for path in SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_defaults_documented_in_schema_match_parser():
    t = parse_transaction(json.dumps(GOOD).encode(), LIMITS)
    props = schema("transactions")["properties"]
    for field in ("currency", "merchant_id", "mcc", "country", "channel"):
        assert props[field]["default"] == getattr(t, field)
    assert not math.isnan(t.amount)


def test_published_timestamp_pattern_is_the_parsers():
    from stream.records import RFC3339_PATTERN

    ts = schema("transactions")["properties"]["timestamp"]["oneOf"][0]
    assert ts["pattern"] == "^" + RFC3339_PATTERN + "$"


def test_format_rfc3339_equals_strftime_and_round_trips():
    import random
    from datetime import UTC, datetime

    from stream.records import parse_rfc3339_ms

    rng = random.Random(3)
    instants = [0, 999, 86_399_999, 86_400_000, 951_782_400_000, 1_735_686_001_500, 4_102_444_799_999]
    instants += [rng.randrange(0, 4_102_444_800_000) for _ in range(5_000)]
    for ms in instants:
        expected = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
        assert format_rfc3339(ms) == expected
        assert parse_rfc3339_ms(format_rfc3339(ms)) == ms


def test_format_rfc3339_many_equals_one_by_one():
    import random

    from stream.records import format_rfc3339_many

    rng = random.Random(4)
    # Every millisecond of a leap day's last second and a year's last second, then random instants.
    instants = list(range(951_868_799_000, 951_868_801_000)) + list(range(1_735_689_599_000, 1_735_689_600_001))
    instants += [rng.randrange(0, 253_402_300_800_000) for _ in range(20_000)]
    assert format_rfc3339_many(instants) == [format_rfc3339(ms) for ms in instants]
    top = 253_402_300_799_999  # the last millisecond of 9999
    assert format_rfc3339_many([top, 0]) == [format_rfc3339(top), format_rfc3339(0)] == [
        "9999-12-31T23:59:59.999Z", "1970-01-01T00:00:00.000Z"]
    # Outside that range, or not integers: the one-by-one function itself, its errors included.
    assert format_rfc3339_many([-1, 1_000]) == [format_rfc3339(-1), format_rfc3339(1_000)]
    for bad in ([top + 1], [1.5]):
        with pytest.raises((ValueError, TypeError, OverflowError)) as many:
            format_rfc3339_many(bad)
        with pytest.raises(type(many.value)):
            format_rfc3339(bad[0])  # type: ignore[arg-type]
    assert format_rfc3339_many([]) == []


ABSENT = object()


def _outcome(parse, arg):
    try:
        return parse(arg)
    except InvalidRecord as exc:
        return exc.reason


def test_the_fast_path_accepts_and_builds_exactly_what_the_field_checks_do():
    """parse_transaction's one-expression path for the usual record agrees with the field-by-field checks."""
    import itertools
    import time

    from stream.codec import loads
    from stream.records import _checked_transaction

    now = int(time.time() * 1000)
    variants = {
        "transaction_id": ["t1", "", "x" * 128, "x" * 129, 7, True, None, 1.5],
        "card_id": ["c1", "", "y" * 129, 42, None, False],
        "timestamp": [1740830400000, "2025-03-01T12:00:00Z", "2025-03-01T12:00:00.123+02:00", "yesterday",
                      LIMITS.min_time_ms, LIMITS.min_time_ms - 1, now + LIMITS.max_future_skew_ms - 60_000,
                      now + LIMITS.max_future_skew_ms + 60_000, 1740830400, 1740830400000.7, True, None],
        # (NaN and infinity are not JSON: the decoder refuses them before either path sees them.)
        "amount": [12.5, 3, "19.90", 0, 0.0, -1, 1e9, 1e9 + 1, True, None, "1e999", 2**64],
        "mcc": ["5411", ABSENT, 5411, "z" * 129, None, True, ["5411"]],
        "channel": ["pos", ABSENT, "", None, 3.5],
    }
    names = list(variants)
    checked = 0
    for values in itertools.product(*(range(len(variants[n])) for n in names)):
        if sum(1 for v in values if v) > 2:  # every single and double deviation from the usual record
            continue
        record = {n: variants[n][i] for n, i in zip(names, values, strict=True) if variants[n][i] is not ABSENT}
        raw = json.dumps(record).encode()
        assert _outcome(lambda r: parse_transaction(r, LIMITS), raw) == _outcome(
            lambda o: _checked_transaction(o, LIMITS), loads(raw)), record
        checked += 1
    assert checked > 500
