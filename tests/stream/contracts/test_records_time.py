"""Contract timestamps: RFC 3339 in and out, by hand, in bulk and whatever the machine's time zone."""

from __future__ import annotations

import re

import pytest

from stream.contracts.records import format_rfc3339


def test_format_rfc3339_equals_strftime_and_round_trips():
    import random
    from datetime import UTC, datetime

    from stream.contracts.records import parse_rfc3339_ms

    rng = random.Random(3)
    instants = [0, 999, 86_399_999, 86_400_000, 951_782_400_000, 1_735_686_001_500, 4_102_444_799_999]
    instants += [rng.randrange(0, 4_102_444_800_000) for _ in range(5_000)]
    for ms in instants:
        expected = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
        assert format_rfc3339(ms) == expected
        assert parse_rfc3339_ms(format_rfc3339(ms)) == ms


def test_format_rfc3339_many_equals_one_by_one():
    import random

    from stream.contracts.records import format_rfc3339_many

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
        with pytest.raises((ValueError, TypeError, OverflowError), match=".") as many:
            format_rfc3339_many(bad)
        with pytest.raises(type(many.value), match=re.escape(str(many.value))):
            format_rfc3339(bad[0])  # type: ignore[arg-type]
    assert format_rfc3339_many([]) == []


@pytest.mark.parametrize("text,ms", [
    ("2025-01-01T00:00:00Z", 1_735_689_600_000),
    ("2025-01-01t00:00:00z", 1_735_689_600_000),
    ("2025-01-01 00:00:00", 1_735_689_600_000),  # no offset: UTC
    ("  2025-01-01T00:00:00Z ", 1_735_689_600_000),
    ("2025-01-01T00:00:00.5Z", 1_735_689_600_500),
    ("2025-01-01T00:00:00.12Z", 1_735_689_600_120),
    ("2025-01-01T00:00:00.0071Z", 1_735_689_600_007),
    ("2025-01-01T00:00:00+00:00", 1_735_689_600_000),
    ("2025-01-01T01:30:00+01:30", 1_735_689_600_000),
    ("2024-12-31T21:30:00-02:30", 1_735_689_600_000),
    ("2000-02-29T23:59:59.999Z", 951_868_799_999),
])
def test_rfc3339_to_epoch_ms_by_hand(text: str, ms: int) -> None:
    from stream.contracts.records import parse_rfc3339_ms

    assert parse_rfc3339_ms(text) == ms


def test_not_rfc3339_is_a_value_error_naming_the_text() -> None:
    from stream.contracts.records import parse_rfc3339_ms

    with pytest.raises(ValueError, match=r"^'1 March' is not an RFC 3339 date-time$"):
        parse_rfc3339_ms("1 March")


@pytest.mark.parametrize("ms,text", [
    (0, "1970-01-01T00:00:00.000Z"),
    (1, "1970-01-01T00:00:00.001Z"),
    (86_399_999, "1970-01-01T23:59:59.999Z"),
    (951_782_400_000, "2000-02-29T00:00:00.000Z"),
    (1_740_830_461_007, "2025-03-01T12:01:01.007Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
    (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
])
def test_epoch_ms_to_rfc3339_by_hand(ms: int, text: str) -> None:
    from stream.contracts.records import format_rfc3339_many

    assert format_rfc3339(ms) == text
    assert format_rfc3339_many([ms]) == [text] and format_rfc3339_many([ms, 0])[0] == text
    assert format_rfc3339_many([]) == []


def test_offsets_of_ten_hours_and_more() -> None:
    from stream.contracts.records import parse_rfc3339_ms

    assert parse_rfc3339_ms("2025-01-01T10:00:00+10:00") == 1_735_689_600_000
    assert parse_rfc3339_ms("2024-12-31T12:15:00-11:45") == 1_735_689_600_000


def test_times_are_utc_whatever_the_machines_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing and formatting never read the local zone (a worker in New York reads and writes what one in UTC does)."""
    import time

    from stream.contracts.records import format_rfc3339_many, parse_rfc3339_ms

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_rfc3339_ms("2025-01-01T00:00:00") == 1_735_689_600_000
        assert format_rfc3339(1_735_689_600_000) == "2025-01-01T00:00:00.000Z"
        assert format_rfc3339(1_000_000_000_000) == "2001-09-09T01:46:40.000Z"
        assert format_rfc3339_many([1_000_000_000_000, -1]) == ["2001-09-09T01:46:40.000Z", "1969-12-31T23:59:59.999Z"]
    finally:
        monkeypatch.undo()
        time.tzset()
