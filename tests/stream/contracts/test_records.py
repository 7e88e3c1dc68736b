"""Contract validation: the hand-written parser and the published JSON Schemas agree."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jsonschema
import pytest

from stream.contracts.records import InvalidRecord, Limits, parse_feedback, parse_transaction
from stream.contracts.settings import Settings

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
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
    ({**GOOD, "amount": 0}, None),  # zero-amount authorisations (card checks, card testing) are traffic
    ({**GOOD, "amount": "0.00", "device_id": "d-1", "ip": "2001:db8::1", "account_id": 7}, None),
    ({**GOOD, "device_id": ["d"]}, "invalid_type"),
    ({**GOOD, "ip": "1" * 129}, "invalid_value"),
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
        with pytest.raises(InvalidRecord, match=rf"^{reason}: ") as err:
            parse_transaction(raw, LIMITS)
        assert err.value.reason == reason
        assert not validator("transactions").is_valid(record), f"schema accepts what the parser rejects: {record}"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_literals_are_not_json(literal):
    raw = b'{"transaction_id": "t", "card_id": "c", "timestamp": 1740830400000, "amount": ' + literal + b"}"
    with pytest.raises(InvalidRecord, match="^malformed_json: ") as err:
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
    with pytest.raises(InvalidRecord, match="^oversized: ") as err:
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


@pytest.mark.parametrize("record,reason", [
    ({"transaction_id": "t1", "card_id": "c1", "label": "maybe"}, "invalid_value: label must be"),
    ({"transaction_id": "t1", "card_id": "c1"}, "missing_field: label is required"),
    ({"transaction_id": "t1", "label": "fraud"}, "missing_field: card_id is required"),
    ({"transaction_id": "t1", "card_id": "c1", "label": 2}, "invalid_value: label must be"),
])
def test_bad_feedback_rejected_by_both(record, reason):
    with pytest.raises(InvalidRecord, match=f"^{reason}"):
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
    from stream.contracts.records import RFC3339_PATTERN

    ts = schema("transactions")["properties"]["timestamp"]["oneOf"][0]
    assert ts["pattern"] == "^" + RFC3339_PATTERN + "$"


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

    from stream.contracts.codec import loads
    from stream.contracts.records import _checked_transaction

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


# The detail of every rejection, word for word: it is what an operator reads in the dead-letter topic.
Y2K = 946_684_800_000  # 2000-01-01T00:00:00Z
TIGHT = Limits(max_bytes=4000, min_time_ms=Y2K, max_future_skew_ms=5_000)
MESSAGES = [
    ({**GOOD, "transaction_id": None}, "missing_field: transaction_id is required"),
    ({k: v for k, v in GOOD.items() if k != "transaction_id"}, "missing_field: transaction_id is required"),
    ({**GOOD, "transaction_id": True}, "invalid_type: transaction_id must be a string, got bool"),
    ({**GOOD, "transaction_id": 1.5}, "invalid_type: transaction_id must be a string, got float"),
    ({**GOOD, "card_id": ""}, "invalid_value: card_id must be 1-128 characters"),
    ({**GOOD, "card_id": "c" * 129}, "invalid_value: card_id must be 1-128 characters"),
    ({**GOOD, "currency": 1.5}, "invalid_type: currency must be a string, got float"),
    ({**GOOD, "currency": False}, "invalid_type: currency must be a string, got bool"),
    ({**GOOD, "merchant_id": "m" * 129}, "invalid_value: merchant_id longer than 128 characters"),
    ({k: v for k, v in GOOD.items() if k != "timestamp"}, "missing_field: timestamp is required"),
    ({**GOOD, "timestamp": True}, "invalid_type: timestamp must be an RFC 3339 string or epoch milliseconds"),
    ({**GOOD, "timestamp": [1]}, "invalid_type: timestamp must be an RFC 3339 string or epoch milliseconds"),
    ({**GOOD, "timestamp": "yesterday"}, "invalid_timestamp: timestamp 'yesterday' is not RFC 3339"),
    ({**GOOD, "timestamp": "2025-02-30T00:00:00Z"}, "invalid_timestamp: timestamp '2025-02-30T00:00:00Z' is not RFC 3339"),
    ({**GOOD, "timestamp": 1_740_830_400}, ("timestamp_out_of_range: timestamp 1740830400 is before "
                                           "2000-01-01T00:00:00.000Z (epoch seconds instead of milliseconds?)")),
    ({**GOOD, "timestamp": 99_999_999_999}, ("timestamp_out_of_range: timestamp 99999999999 is before "
                                            "2000-01-01T00:00:00.000Z (epoch seconds instead of milliseconds?)")),
    ({**GOOD, "timestamp": 100_000_000_000}, ("timestamp_out_of_range: timestamp 100000000000 is before "
                                             "2000-01-01T00:00:00.000Z")),
    ({**GOOD, "timestamp": 0}, "timestamp_out_of_range: timestamp 0 is before 2000-01-01T00:00:00.000Z"),
    ({**GOOD, "timestamp": Y2K - 1}, "timestamp_out_of_range: timestamp 946684799999 is before 2000-01-01T00:00:00.000Z"),
    ({**GOOD, "timestamp": "1999-12-31T23:59:59.999Z"},
     "timestamp_out_of_range: timestamp '1999-12-31T23:59:59.999Z' is before 2000-01-01T00:00:00.000Z"),
    ({**GOOD, "timestamp": 32_503_680_000_000},
     "timestamp_out_of_range: timestamp 32503680000000 is more than 5 s in the future"),
    ({k: v for k, v in GOOD.items() if k != "amount"}, "missing_field: amount is required"),
    ({**GOOD, "amount": None}, "missing_field: amount is required"),
    ({**GOOD, "amount": True}, "invalid_type: amount must be a number, got bool"),
    ({**GOOD, "amount": [1]}, "invalid_type: amount must be a number, got list"),
    ({**GOOD, "amount": "1e3"}, "invalid_amount: amount '1e3' is not a decimal number"),
    ({**GOOD, "amount": "-3"}, "invalid_amount: amount '-3' is not a decimal number"),
    ({**GOOD, "amount": "9" * 400}, f"invalid_amount: amount must be finite, got '{'9' * 400}'"),
    ({**GOOD, "amount": -3}, "invalid_amount: amount must be >= 0, got -3"),
    ({**GOOD, "amount": -0.01}, "invalid_amount: amount must be >= 0, got -0.01"),
    ({**GOOD, "account_id": {"id": 1}}, "invalid_type: account_id must be a string, got dict"),
    ({**GOOD, "amount": 1e9 + 1}, "invalid_amount: amount 1000000001.0 exceeds 1e+09"),
]


@pytest.mark.parametrize("record,message", MESSAGES)
def test_each_rejection_names_its_reason_and_what_is_wrong(record: dict, message: str) -> None:
    with pytest.raises(InvalidRecord, match=re.escape(message)) as err:
        parse_transaction(json.dumps(record).encode(), TIGHT)
    assert str(err.value) == message
    assert (err.value.reason, err.value.detail) == tuple(message.split(": ", 1))


def test_the_envelope_is_checked_before_the_fields() -> None:
    with pytest.raises(InvalidRecord, match=r"^malformed_json: empty record value \(tombstone\)$"):
        parse_transaction(None, TIGHT)
    with pytest.raises(InvalidRecord, match=r"^malformed_json: empty record value \(tombstone\)$"):
        parse_feedback(None, TIGHT)
    with pytest.raises(InvalidRecord, match="^malformed_json: "):
        parse_transaction(b'{"transaction_id": ', TIGHT)
    with pytest.raises(InvalidRecord, match="^malformed_json: "):
        parse_transaction(b"\xff\xfe", TIGHT)
    with pytest.raises(InvalidRecord, match="^not_an_object: expected a JSON object, got list$"):
        parse_transaction(b"[1]", TIGHT)
    raw = json.dumps(GOOD).encode()
    exact = Limits(max_bytes=len(raw), min_time_ms=Y2K, max_future_skew_ms=5_000)
    assert parse_transaction(raw, exact).transaction_id == "t1"  # exactly the limit passes
    small = Limits(max_bytes=len(raw) - 1, min_time_ms=Y2K, max_future_skew_ms=5_000)
    with pytest.raises(InvalidRecord, match=f"^oversized: {len(raw)} bytes exceeds the {len(raw) - 1}-byte limit$"):
        parse_transaction(raw, small)


def test_the_bounds_themselves_are_accepted() -> None:
    """128-character ids and categories, an amount of exactly 1e9, the first millisecond allowed."""
    record = {"transaction_id": "t" * 128, "card_id": "c" * 128, "timestamp": Y2K, "amount": 1e9,
              "currency": "u" * 128, "merchant_id": "m" * 128, "mcc": "9" * 128, "country": "k" * 128,
              "channel": "h" * 128}
    t = parse_transaction(json.dumps(record).encode(), TIGHT)
    assert (t.transaction_id, t.event_time_ms, t.amount, t.channel) == ("t" * 128, Y2K, 1e9, "h" * 128)
    # The same through the field-by-field checks (a string amount and an integer id leave the fast path).
    t = parse_transaction(json.dumps({**record, "amount": "1000000000", "card_id": 12345}).encode(), TIGHT)
    assert (t.card_id, t.amount, t.event_time_ms, t.mcc) == ("12345", 1e9, Y2K, "9" * 128)
    t = parse_transaction(json.dumps({**record, "amount": "0.01", "timestamp": "2000-01-01T00:00:00Z"}).encode(),
                          TIGHT)
    assert (t.amount, t.event_time_ms) == (0.01, Y2K)


def test_a_parsed_transaction_has_every_field_and_its_defaults() -> None:
    record = {"transaction_id": 77, "card_id": "c1", "timestamp": "2025-03-01T12:00:00.5Z", "amount": "19.90",
              "currency": "EUR", "merchant_id": 42, "mcc": "5411", "country": "FR", "channel": "ecom"}
    t = parse_transaction(json.dumps(record).encode(), TIGHT)
    assert tuple(t) == ("77", "c1", 1_740_830_400_500, 19.9, "EUR", "42", "5411", "FR", "ecom", "", "", "")
    t = parse_transaction(json.dumps({**record, "device_id": "dev-1", "ip": "203.0.113.9", "account_id": 12}).encode(),
                          TIGHT)
    assert (t.device_id, t.ip, t.account_id) == ("dev-1", "203.0.113.9", "12")
    bare = {"transaction_id": "t", "card_id": "c", "timestamp": "2025-03-01T12:00:00Z", "amount": "7"}
    t = parse_transaction(json.dumps(bare).encode(), TIGHT)  # (a string amount: the field-by-field path)
    assert tuple(t) == ("t", "c", 1_740_830_400_000, 7.0, "XXX", "", "0000", "ZZ", "unknown", "", "", "")
    t = parse_transaction(json.dumps({**bare, "amount": 7, "currency": None}).encode(), TIGHT)
    assert tuple(t) == ("t", "c", 1_740_830_400_000, 7.0, "XXX", "", "0000", "ZZ", "unknown", "", "", "")
    t = parse_transaction(json.dumps({**bare, "amount": 0}).encode(), TIGHT)  # the fast path takes zero too
    assert t.amount == 0.0


def test_to_json_dict_is_the_contract() -> None:
    from stream.contracts.records import Transaction

    t = Transaction("t1", "c9", 1_740_830_400_500, 19.9, "EUR", "m1", "5411", "FR", "ecom", "d1", "10.0.0.1", "a1")
    assert t.to_json_dict() == {"transaction_id": "t1", "card_id": "c9", "timestamp": "2025-03-01T12:00:00.500Z",
                                "amount": 19.9, "currency": "EUR", "merchant_id": "m1", "mcc": "5411",
                                "country": "FR", "channel": "ecom", "device_id": "d1", "ip": "10.0.0.1",
                                "account_id": "a1"}
    assert parse_transaction(json.dumps(t.to_json_dict()).encode(), TIGHT) == t


@pytest.mark.parametrize("record,expected", [
    ({"transaction_id": "t1", "card_id": "c1", "label": "Fraud"}, ("t1", "c1", 1, "unknown", None)),
    ({"transaction_id": "t1", "card_id": "c1", "label": False, "source": "portal"}, ("t1", "c1", 0, "portal", None)),
    ({"transaction_id": 5, "card_id": "c1", "label": 1.0, "labelled_at": "2025-03-01T12:00:00Z"},
     ("5", "c1", 1, "unknown", 1_740_830_400_000)),
    ({"transaction_id": "t1", "card_id": "c1", "label": "legit", "labelled_at": 1_740_830_400_000, "source": 9},
     ("t1", "c1", 0, "9", 1_740_830_400_000)),
])
def test_feedback_fields(record: dict, expected: tuple) -> None:
    f = parse_feedback(json.dumps(record).encode(), TIGHT)
    assert (f.transaction_id, f.card_id, f.label, f.source, f.labelled_at_ms) == expected


@pytest.mark.parametrize("record,message", [
    ({"transaction_id": "t1", "card_id": "c1"}, "missing_field: label is required"),
    ({"transaction_id": "t1", "card_id": "c1", "label": None}, "missing_field: label is required"),
    ({"transaction_id": "t1", "card_id": "c1", "label": "maybe"},
     "invalid_value: label must be 'fraud' or 'legit', got 'maybe'"),
    ({"transaction_id": "t1", "card_id": "c1", "label": 2}, "invalid_value: label must be 'fraud' or 'legit', got 2"),
    ({"transaction_id": "t1", "label": "fraud"}, "missing_field: card_id is required"),
    ({"transaction_id": "t1", "card_id": "c1", "label": "fraud", "labelled_at": "soon"},
     "invalid_timestamp: labelled_at 'soon' is not RFC 3339"),
])
def test_feedback_rejections_word_for_word(record: dict, message: str) -> None:
    with pytest.raises(InvalidRecord, match=re.escape(message)) as err:
        parse_feedback(json.dumps(record).encode(), TIGHT)
    assert str(err.value) == message


def test_limits_come_from_the_settings() -> None:
    limits = Limits.from_settings(Settings(max_message_bytes=123, min_event_time="2001-01-01T00:00:00Z",
                                           max_future_skew_s=2.5))
    assert limits == Limits(max_bytes=123, min_time_ms=978_307_200_000, max_future_skew_ms=2_500)


NOW_S = 1_750_000_000.0  # a fixed wall clock for the future-skew bound: 2025-06-15T15:06:40Z
NOW_MS = 1_750_000_000_000


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.contracts import records

    monkeypatch.setattr(records.time, "time", lambda: NOW_S)


def test_the_usual_record_is_accepted_in_one_expression(monkeypatch: pytest.MonkeyPatch, fixed_clock: None) -> None:
    """The fast path's reach (the score agent's decode cost): usual records at every bound never need the field checks.

    The field-by-field path is replaced by one that fails, so a usual record it would have to rescue fails here.
    """
    from stream.contracts import records

    def not_the_usual(obj, limits):
        raise AssertionError(f"took the field-by-field checks: {obj}")

    monkeypatch.setattr(records, "_checked_transaction", not_the_usual)
    limits = Limits(max_bytes=4000, min_time_ms=Y2K, max_future_skew_ms=5_000)

    def parsed(record: dict) -> tuple:
        return tuple(parse_transaction(json.dumps(record).encode(), limits))

    bare = {"transaction_id": "t", "card_id": "c", "timestamp": Y2K, "amount": 0}
    assert parsed(bare) == ("t", "c", Y2K, 0.0, "XXX", "", "0000", "ZZ", "unknown", "", "", "")
    assert parsed({**bare, "amount": 0.0, "timestamp": NOW_MS + 5_000}) == (
        "t", "c", NOW_MS + 5_000, 0.0, "XXX", "", "0000", "ZZ", "unknown", "", "", "")  # the last instant allowed
    assert parsed({**bare, "amount": 12.5, "timestamp": "2025-03-01T12:00:00.5Z"})[2:4] == (1_740_830_400_500, 12.5)
    longest = {"transaction_id": "t" * 128, "card_id": "c" * 128, "timestamp": Y2K, "amount": 1e9,
               "currency": "u" * 128, "merchant_id": "m" * 128, "mcc": "9" * 128, "country": "k" * 128,
               "channel": "h" * 128, "device_id": "d" * 128, "ip": "i" * 128, "account_id": "a" * 128}
    assert parsed(longest) == tuple(longest[k] for k in ("transaction_id", "card_id", "timestamp", "amount",
                                                          "currency", "merchant_id", "mcc", "country", "channel",
                                                          "device_id", "ip", "account_id"))
    assert parsed({**bare, "amount": 1_000_000_000})[3] == 1e9  # an integer amount at the limit


def test_the_future_bound_is_the_wall_clock_plus_the_skew_exactly(fixed_clock: None) -> None:
    limits = Limits(max_bytes=4000, min_time_ms=Y2K, max_future_skew_ms=5_000)
    for amount in (12.5, "12.5"):  # the fast path and the field-by-field checks
        record = {"transaction_id": "t", "card_id": "c", "amount": amount}
        last = parse_transaction(json.dumps({**record, "timestamp": NOW_MS + 5_000}).encode(), limits)
        assert last.event_time_ms == NOW_MS + 5_000
        with pytest.raises(InvalidRecord, match=rf"^timestamp_out_of_range: timestamp {NOW_MS + 5_001} is more "
                                                r"than 5 s in the future$"):
            parse_transaction(json.dumps({**record, "timestamp": NOW_MS + 5_001}).encode(), limits)


def test_epoch_zero_is_a_timestamp_where_the_limits_allow_it() -> None:
    limits = Limits(max_bytes=4000, min_time_ms=0, max_future_skew_ms=5_000)
    for amount in (1, "1.00"):  # the fast path and the field-by-field checks
        t = parse_transaction(json.dumps({"transaction_id": "t", "card_id": "c", "timestamp": 0,
                                          "amount": amount}).encode(), limits)
        assert t.event_time_ms == 0


def test_integer_categories_are_read_as_strings() -> None:
    record = {**GOOD, "currency": 978, "merchant_id": 42, "mcc": 5411, "country": 250, "channel": 7,
              "device_id": 1, "ip": 2, "account_id": 3}
    t = parse_transaction(json.dumps(record).encode(), TIGHT)
    assert tuple(t)[4:] == ("978", "42", "5411", "250", "7", "1", "2", "3")


def test_a_one_millisecond_timestamp_is_flagged_as_maybe_seconds() -> None:
    with pytest.raises(InvalidRecord, match=re.escape("timestamp_out_of_range: timestamp 1 is before "
                                                      "2000-01-01T00:00:00.000Z (epoch seconds instead of milliseconds?)")):
        parse_transaction(json.dumps({**GOOD, "timestamp": 1}).encode(), TIGHT)


def test_malformed_json_carries_the_decoders_own_message() -> None:
    from stream.contracts.codec import JSONDecodeError, loads

    raw = b'{"transaction_id": '
    with pytest.raises(JSONDecodeError, match="line 1") as decoder:
        loads(raw)
    with pytest.raises(InvalidRecord, match="^malformed_json: ") as err:
        parse_transaction(raw, TIGHT)
    assert err.value.detail == str(decoder.value) and "line 1" in err.value.detail
