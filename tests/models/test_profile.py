"""An entity profile: redeliveries change nothing, it stays bounded, and its encoding round-trips or says why not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.profile import (
    HOUR_MS,
    MAX_CARDS,
    MAX_LABELS,
    MAX_RECENT,
    WINDOW_HOURS,
    EntityProfile,
    ProfileFormatError,
    decode,
    encode,
)

DAY = 24 * HOUR_MS


def test_a_redelivered_update_changes_nothing() -> None:
    p = EntityProfile()
    assert p.observe(1_000, 10.0, card="c1", position=5)
    before = encode(p)
    assert not p.observe(1_000, 10.0, card="c1", position=5)
    assert not p.observe(2_000, 99.0, card="c2", position=4)  # an older position: applied before the crash
    assert not p.label("t1", 1_000, labelled_at_ms=9_000, fraud=True, position=3)
    assert encode(p) == before
    assert p.label("t1", 1_000, labelled_at_ms=9_000, fraud=True, position=6)
    assert len(p.labels) == 1


def test_the_same_label_twice_is_kept_once_and_a_correction_beside_it() -> None:
    p = EntityProfile()
    p.label("t1", 0, labelled_at_ms=10, fraud=True, position=0)
    p.label("t1", 0, labelled_at_ms=10, fraud=True, position=1)
    p.label("t1", 0, labelled_at_ms=20, fraud=False, position=2)
    assert [(e.labelled_at_ms, e.fraud) for e in p.labels] == [(10, True), (20, False)]


def test_buckets_count_transactions_amounts_and_new_cards() -> None:
    p = EntityProfile()
    p.observe(10, 5.0, card="a", position=0)
    p.observe(20, 7.0, card="a", position=1)
    p.observe(HOUR_MS + 5, 1.0, card="b", position=2)
    assert p.hours == {0: [2.0, 12_000.0, 1.0], 1: [1.0, 1_000.0, 1.0]}  # amounts in thousandths
    assert p.recent == [(10, 5_000.0), (20, 7_000.0), (HOUR_MS + 5, 1_000.0)]


def test_a_hot_entity_stays_bounded() -> None:
    p = EntityProfile()
    at = 0
    position = 0
    for day in range(35):
        for i in range(300):  # 300 transactions a day, 300 new cards a day, a fraud label for every tenth
            at = day * DAY + i * 200_000
            p.observe(at, 1.0, card=f"c{day}-{i}", position=position)
            position += 1
            if i % 10 == 0:
                p.label(f"t{day}-{i}", at, labelled_at_ms=at + DAY, fraud=True, position=position)
                position += 1
    burst = at + 1
    for i in range(3 * MAX_RECENT):
        p.observe(burst, 1.0, card="burst", position=position + i)
    assert len(p.recent) == MAX_RECENT
    assert len(p.hours) <= WINDOW_HOURS + 24 and min(p.hours) >= burst // HOUR_MS - WINDOW_HOURS + 1 - 24
    assert MAX_CARDS <= len(p.cards) <= MAX_CARDS * 5 // 4
    assert MAX_LABELS <= len(p.labels) <= MAX_LABELS * 5 // 4
    assert min(e.transaction_time_ms for e in p.labels) >= burst - WINDOW_HOURS * HOUR_MS


def test_bytes_that_are_not_a_profile_are_refused_with_the_reason() -> None:
    p = EntityProfile()
    p.observe(1, 1.0, card="a", position=0)
    data = encode(p)
    with pytest.raises(ProfileFormatError, match="its header describes"):
        decode(data[:-1])
    with pytest.raises(ProfileFormatError, match="shorter than its 33-byte header"):
        decode(data[:10])
    with pytest.raises(ProfileFormatError, match="entity profile format 9; this release reads format 1"):
        decode(b"\x09" + data[1:])


events = st.lists(st.tuples(st.integers(0, 40 * DAY), st.floats(0, 1e6), st.sampled_from("abcdefgh"),
                            st.booleans(), st.integers(0, 10 * DAY)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(events)
def test_encoding_round_trips(rows: list[tuple[int, float, str, bool, int]]) -> None:
    p = EntityProfile()
    for i, (at, amount, card, fraud, delay) in enumerate(sorted(rows)):
        p.observe(at, amount, card=card, position=2 * i)
        p.label(f"t{i}", at, labelled_at_ms=at + delay, fraud=fraud, position=2 * i + 1)
    assert decode(encode(p)) == p
