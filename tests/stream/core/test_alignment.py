"""Event-time alignment of source partitions: merged in time, each partition in its order, nothing lost or held forever."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.core.alignment import EventTimeAlignment


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_that_delivered_recently_holds_back_later_records_until_it_shows_a_later_one() -> None:
    clock = Clock()
    align = EventTimeAlignment(idle_ms=100, clock=clock)
    align.add(0, 100, "a100")
    align.add(1, 10, "b10")
    assert align.release() == ["b10"]  # a100 waits: partition 1 may still bring something before 100
    align.add(1, 50, "b50")
    assert align.release() == ["b50"]
    align.add(1, 150, "b150")
    assert align.release() == ["a100"] and align.held == 1  # b150 waits for partition 0 in turn
    clock.now = 0.099
    assert align.release() == []
    clock.now = 0.1  # partition 0 quiet for idle_ms
    assert align.release() == ["b150"] and align.held == 0


def test_a_record_is_never_held_longer_than_max_hold_even_while_its_partners_stay_busy() -> None:
    clock = Clock()
    align = EventTimeAlignment(idle_ms=100, max_hold_ms=300, clock=clock)
    align.add(0, 1_000, "late-partition")
    for i in range(5):  # partition 1 keeps delivering, always earlier than 1,000, then empties
        clock.now = i * 0.05
        align.add(1, i, f"p1-{i}")
        assert align.release() == [f"p1-{i}"]
    clock.now = 0.299
    assert align.release() == []
    clock.now = 0.3
    assert align.release() == ["late-partition"]


def test_without_idle_time_everything_goes_at_once_merged_in_event_time() -> None:
    align = EventTimeAlignment(idle_ms=0)
    for partition, times in ((0, (5, 30)), (1, (10, 20)), (2, (1,))):
        for t in times:
            align.add(partition, t, (partition, t))
    assert align.release() == [(2, 1), (0, 5), (1, 10), (1, 20), (0, 30)]


@given(st.lists(st.lists(st.integers(0, 1_000), max_size=20).map(sorted), min_size=1, max_size=5),
       st.lists(st.integers(0, 4), max_size=120), st.floats(0, 0.01))
def test_everything_comes_out_once_in_partition_order_and_in_time_order_while_nobody_is_quiet(
        partitions: list[list[int]], arrival: list[int], tick: float) -> None:
    """Whatever the arrival interleaving: no loss, no duplicate, each partition's order kept; and what is released
    once every partition has delivered, while none is quiet or finished, never goes back in event time."""
    clock = Clock()
    align: EventTimeAlignment[tuple[int, int, int]] = EventTimeAlignment(idle_ms=10_000, clock=clock)  # never quiet here
    cursors = [0] * len(partitions)
    out: list[tuple[int, int, int]] = []
    aligned: list[int] = []  # event times released while every partition was seen and none finished
    order = [p % len(partitions) for p in arrival] + [p for p, rows in enumerate(partitions) for _ in rows]
    for p in order:
        if cursors[p] < len(partitions[p]):
            align.add(p, partitions[p][cursors[p]], (p, cursors[p], partitions[p][cursors[p]]))
            cursors[p] += 1
            released = align.release()
            # Every partition seen (one never seen cannot hold anything back) and none finished.
            if all(0 < c < len(rows) for c, rows in zip(cursors, partitions, strict=True)):
                aligned += [t for _, _, t in released]
                assert aligned == sorted(aligned)
            out += released
        clock.now += tick
    out += align.drain()
    expected = sorted((p, i) for p, rows in enumerate(partitions) for i in range(len(rows)))
    assert sorted((p, i) for p, i, _ in out) == expected
    for p in range(len(partitions)):
        assert [i for q, i, _ in out if q == p] == list(range(len(partitions[p])))


def test_a_partition_with_records_still_to_come_is_waited_for_even_when_quiet() -> None:
    """A backlog: the worker comes back to each partition late, so quiet is not caught up; the high watermark tells."""
    now = [0.0]
    highwater = {0: 100, 1: 100}
    align = EventTimeAlignment(idle_ms=50, clock=lambda: now[0], max_lag_hold_ms=2_000,
                               pending=lambda p, offset: highwater[p] > offset + 1)
    align.add(0, 10, "p0@10", offset=0)
    align.add(1, 5, "p1@5", offset=0)
    assert align.release() == ["p1@5"]
    now[0] = 1.0  # partition 1 quiet for a second, far past idle_ms and the default hold: it has 98 records to come
    assert align.release() == []
    align.add(1, 20, "p1@20", offset=1)
    assert align.release() == ["p0@10"]  # partition 1 has now shown a later record
    highwater[0] = 1  # partition 0 caught up: its quiet means nothing is coming
    now[0] = 1.1
    assert align.release() == ["p1@20"]
    align.add(1, 30, "p1@30", offset=2)
    highwater[0] = 50  # partition 0 has records to come again, but never delivers them: held at most max_lag_hold_ms
    now[0] = 2.0
    assert align.release() == []
    now[0] = 3.2
    assert align.release() == ["p1@30"]
