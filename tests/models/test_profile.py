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
    assert p.observe(1_000, 10.0, card="c1", source=2, offset=5)
    assert p.label("t1", 1_000, labelled_at_ms=9_000, fraud=True)
    before = encode(p)
    assert not p.observe(1_000, 10.0, card="c1", source=2, offset=5)
    assert not p.observe(2_000, 99.0, card="c2", source=2, offset=4)  # an older offset: applied before the crash
    assert not p.label("t1", 1_000, labelled_at_ms=9_000, fraud=True)  # sent again by a restarted learn agent
    assert encode(p) == before
    assert p.observe(2_000, 99.0, card="c2", source=3, offset=4)  # another source's offsets are its own
    assert p.observe(3_000, 1.0, card="c2", source=2, offset=6)
    assert p.sources == {2: 6, 3: 4} and len(p.recent) == 3
    assert p.observe(4_000, 1.0, card="c3") and p.observe(4_000, 1.0, card="c3")  # no offset: an offline fold


def test_the_same_label_twice_is_kept_once_and_a_correction_beside_it() -> None:
    p = EntityProfile()
    assert p.label("t1", 0, labelled_at_ms=10, fraud=True)
    assert not p.label("t1", 0, labelled_at_ms=10, fraud=True)
    assert p.label("t1", 0, labelled_at_ms=20, fraud=False)
    assert [(e.labelled_at_ms, e.fraud) for e in p.labels] == [(10, True), (20, False)]


def test_buckets_count_transactions_amounts_and_new_cards() -> None:
    p = EntityProfile()
    p.observe(10, 5.0, card="a")
    p.observe(20, 7.0, card="a")
    p.observe(HOUR_MS + 5, 1.0, card="b")
    assert p.hours == {0: [2.0, 12_000.0, 1.0], 1: [1.0, 1_000.0, 1.0]}  # amounts in thousandths
    assert p.recent == [(10, 5_000.0), (20, 7_000.0), (HOUR_MS + 5, 1_000.0)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * DAY), st.sampled_from("abcde")), min_size=1, max_size=30),
       st.randoms(use_true_random=False))
def test_any_order_of_arrival_gives_the_same_profile(rows: list[tuple[int, str]], rng) -> None:
    """Several workers' route agents feed an entity's partition, so its transactions interleave out of event time."""
    from models.profile import readable

    in_order, shuffled = EntityProfile(), EntityProfile()
    for at, card in sorted(rows):
        in_order.observe(at, 1.0, card=card)
    rng.shuffle(rows)
    for at, card in rows:
        shuffled.observe(at, 1.0, card=card)
    assert readable(shuffled) == readable(in_order)
    assert sum(b[2] for b in in_order.hours.values()) == len({card for _, card in rows})  # one new card each


def test_a_hot_entity_stays_bounded() -> None:
    p = EntityProfile()
    at = 0
    position = 0
    for day in range(35):
        for i in range(300):  # 300 transactions a day, 300 new cards a day, a fraud label for every tenth
            at = day * DAY + i * 200_000
            p.observe(at, 1.0, card=f"c{day}-{i}", source=day % 4, offset=position)
            position += 1
            if i % 10 == 0:
                p.label(f"t{day}-{i}", at, labelled_at_ms=at + DAY, fraud=True)
    burst = at + 1
    for i in range(3 * MAX_RECENT):
        p.observe(burst, 1.0, card="burst", source=0, offset=position + i)
    assert len(p.recent) == MAX_RECENT
    assert len(p.hours) <= WINDOW_HOURS + 24 and min(p.hours) >= burst // HOUR_MS - WINDOW_HOURS + 1 - 24
    assert MAX_CARDS <= len(p.cards) <= MAX_CARDS * 5 // 4
    assert MAX_LABELS <= len(p.labels) <= MAX_LABELS * 5 // 4
    assert min(e.transaction_time_ms for e in p.labels) >= burst - WINDOW_HOURS * HOUR_MS
    assert p.sources == {0: position + 3 * MAX_RECENT - 1, 1: p.sources[1], 2: p.sources[2], 3: p.sources[3]}


def test_bytes_that_are_not_a_profile_are_refused_with_the_reason() -> None:
    p = EntityProfile()
    p.observe(1, 1.0, card="a", source=1, offset=0)
    data = encode(p)
    with pytest.raises(ProfileFormatError, match="its header describes"):
        decode(data[:-1])
    with pytest.raises(ProfileFormatError, match="shorter than its 33-byte header"):
        decode(data[:10])
    with pytest.raises(ProfileFormatError, match="entity profile format 9; this release reads formats 1 to 3"):
        decode(b"\x09" + data[1:])
    with pytest.raises(ProfileFormatError, match="entity profile of 0 bytes"):
        decode(b"")


def _format_2(p: EntityProfile) -> bytes:
    """``p`` as format 2 wrote it: no label hours."""
    import struct

    v3 = encode(p)
    head = struct.Struct("<BqIIIIII")
    _, newest, n_recent, n_hours, n_cards, n_labels, n_sources, n_label_hours = head.unpack_from(v3)
    body = v3[head.size:len(v3) - 24 * n_label_hours]
    return struct.pack("<BqIIIII", 2, newest, n_recent, n_hours, n_cards, n_labels, n_sources) + body


def test_a_profile_of_format_2_reads_with_its_label_hours_from_the_labels_it_kept() -> None:
    p = EntityProfile()
    p.observe(HOUR_MS, 12.5, card="a", source=1, offset=7)
    p.label("t1", HOUR_MS, labelled_at_ms=2 * HOUR_MS, fraud=True)
    p.label("t2", HOUR_MS, labelled_at_ms=3 * HOUR_MS + 5, fraud=False)
    assert decode(_format_2(p)) == p


def test_a_profile_of_the_previous_format_reads_with_its_one_position_dropped() -> None:
    """Format 1 kept one position for all sources; it cannot tell the new sources' offsets apart, so it is dropped."""
    import struct

    p = EntityProfile()
    p.observe(HOUR_MS, 12.5, card="a", source=1, offset=7)
    p.label("t1", HOUR_MS, labelled_at_ms=2 * HOUR_MS, fraud=True)
    v2 = _format_2(p)
    head = struct.Struct("<BqIIIII")
    _, newest, n_recent, n_hours, n_cards, n_labels, n_sources = head.unpack_from(v2)
    body = v2[head.size:len(v2) - 12 * n_sources]
    cards_at = head.size + 16 * n_recent + 32 * n_hours
    cards = b"".join(v2[at:at + 20][:12] for at in range(cards_at, cards_at + 20 * n_cards, 20))  # no first seen
    body = body[:cards_at - head.size] + cards + body[cards_at - head.size + 20 * n_cards:]
    v1 = struct.pack("<BqqIIII", 1, newest, 7, n_recent, n_hours, n_cards, n_labels) + body
    old = decode(v1)
    assert old.sources == {} and old.recent == p.recent and old.hours == p.hours and old.labels == p.labels
    assert old.label_hours == p.label_hours
    assert old.cards == p.cards and old.first_seen == p.cards and old.newest_ms == p.newest_ms


events = st.lists(st.tuples(st.integers(0, 40 * DAY), st.floats(0, 1e6), st.sampled_from("abcdefgh"),
                            st.booleans(), st.integers(0, 10 * DAY)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(events)
def test_encoding_round_trips(rows: list[tuple[int, float, str, bool, int]]) -> None:
    p = EntityProfile()
    for i, (at, amount, card, fraud, delay) in enumerate(sorted(rows)):
        p.observe(at, amount, card=card, source=i % 3, offset=i)
        p.label(f"t{i}", at, labelled_at_ms=at + delay, fraud=fraud)
    assert decode(encode(p)) == p
