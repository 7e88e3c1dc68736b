"""Per-source label caps: at most N labels per source per event-time hour, against feedback poisoning."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.caps import SourceCap

HOUR = 3_600_000


def test_the_cap_counts_per_source_and_per_event_hour() -> None:
    cap = SourceCap(max_per_hour=2)
    assert [cap.allow("portal", 0) for _ in range(3)] == [True, True, False]
    assert cap.allow("portal", HOUR - 1) is False  # the last millisecond of hour 0
    assert cap.allow("portal", HOUR) is True  # the first of hour 1
    assert cap.allow("chargeback", 10) is True  # another source has its own count
    assert dict(cap.rejected) == {"portal": 2}


def test_every_rejection_is_counted_for_its_source() -> None:
    cap = SourceCap(max_per_hour=1)
    decisions = [cap.allow("a", 5 * HOUR) for _ in range(4)] + [cap.allow("b", 5 * HOUR) for _ in range(2)]
    assert decisions == [True, False, False, False, True, False]
    assert dict(cap.rejected) == {"a": 3, "b": 1}


def test_a_cap_of_zero_or_less_lets_everything_through() -> None:
    for off in (0, -1):
        cap = SourceCap(max_per_hour=off)
        assert all(cap.allow("portal", 0) for _ in range(50))
        assert dict(cap.rejected) == {}


def test_a_cap_of_one_is_a_cap() -> None:
    cap = SourceCap(max_per_hour=1)
    assert (cap.allow("portal", 0), cap.allow("portal", 0)) == (True, False)


def test_labels_out_of_event_time_order_are_capped_in_their_own_hour() -> None:
    cap = SourceCap(max_per_hour=1)
    assert cap.allow("s", 3 * HOUR) is True
    assert cap.allow("s", 5 * HOUR) is True  # the newest hour moves on twice
    assert cap.allow("s", 7 * HOUR) is True
    assert cap.allow("s", 3 * HOUR + 10) is False  # an older hour keeps its count
    assert cap.allow("s", 4 * HOUR) is True


def _fill(cap: SourceCap, keys: int) -> None:
    """``keys`` distinct (source, hour 0) buckets, one label each."""
    for i in range(keys):
        assert cap.allow(f"filler-{i}", 0) is True


def test_buckets_are_forgotten_only_past_ten_thousand_and_72_hours_behind_the_newest() -> None:
    # Over 10,000 buckets, a new newest hour (100) forgets those more than 72 hours older (before 28).
    cap = SourceCap(max_per_hour=1)
    assert cap.allow("old", 27 * HOUR) is True
    assert cap.allow("kept", 28 * HOUR) is True
    _fill(cap, 10_001 - 2)
    assert cap.allow("new", 100 * HOUR) is True
    assert cap.allow("old", 27 * HOUR) is True  # its full bucket was forgotten
    assert cap.allow("kept", 28 * HOUR) is False  # 72 hours behind the newest: still counted
    assert cap.allow("filler-0", 0) is True


def test_ten_thousand_buckets_are_all_kept() -> None:
    cap = SourceCap(max_per_hour=1)
    assert cap.allow("old", 0) is True
    _fill(cap, 10_000 - 1)
    assert cap.allow("new", 100 * HOUR) is True  # exactly 10,000 buckets before it: nothing forgotten
    assert cap.allow("old", 0) is False
    assert cap.allow("filler-7", 0) is False


events = st.lists(st.tuples(st.sampled_from(["portal", "chargeback", "bank"]), st.integers(0, 5 * HOUR)),
                  max_size=60)


@settings(max_examples=200, deadline=None)
@given(events=events, max_per_hour=st.integers(-1, 4))
def test_decisions_match_the_definition(events: list[tuple[str, int]], max_per_hour: int) -> None:
    """A label passes iff fewer than ``max_per_hour`` labels of its source passed in its event hour before it."""
    cap = SourceCap(max_per_hour=max_per_hour)
    passed: dict[tuple[str, int], int] = defaultdict(int)
    rejected: dict[str, int] = defaultdict(int)
    for source, t in events:
        hour = t // HOUR
        expected = max_per_hour <= 0 or passed[source, hour] < max_per_hour
        if expected:
            passed[source, hour] += 1
        else:
            rejected[source] += 1
        assert cap.allow(source, t) is expected
    assert dict(cap.rejected) == dict(rejected)
