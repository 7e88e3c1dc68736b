"""The features' expiry index: what one min-heap per partition would pop, at a fraction of the cost."""

from __future__ import annotations

import heapq
import random
from typing import NamedTuple

import pytest

from stream.core.retention import RetentionIndex


class HeapReference:
    """The definition: one heap of (event time, key) per partition."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.heaps: dict[int, list[tuple[int, bytes]]] = {}
        self.marks: dict[int, int] = {}

    def add(self, partition: int, t: int, key: bytes) -> None:
        heapq.heappush(self.heaps.setdefault(partition, []), (t, key))
        self.marks[partition] = max(self.marks.get(partition, -1), t)

    def pop_expired(self, partition: int, watermark: int | None = None) -> list[tuple[int, bytes]]:
        heap = self.heaps.get(partition, [])
        mark = self.marks.get(partition) if watermark is None else watermark
        out = []
        while heap and mark is not None and heap[0][0] < mark - self.retention_ms:
            out.append(heapq.heappop(heap))
        return out


@pytest.mark.parametrize("late_share", [0.0, 0.05, 0.5, 1.0])
def test_pops_what_a_heap_pops_oldest_first(late_share: float) -> None:
    rng = random.Random(int(late_share * 100))
    index, reference = RetentionIndex(retention_ms=1_000), HeapReference(1_000)
    clock = {p: 10_000 for p in range(3)}  # event times are never negative
    times: dict[bytes, int] = {}
    for i in range(20_000):
        p = rng.randrange(3)
        if rng.random() < late_share:
            t = clock[p] - rng.randrange(0, 3_000)  # late, possibly already past the retention
        else:
            clock[p] += rng.choice([0, 0, 1, 7, 150])  # ties included
            t = clock[p]
        key = f"k{i}".encode()
        times[key] = t
        index.add(p, t, key)
        reference.add(p, t, key)
        if rng.random() < 0.05:
            mark = None if rng.random() < 0.8 else clock[p] + rng.randrange(-500, 2_000)
            got, want = index.pop_expired(p, mark), reference.pop_expired(p, mark)
            assert sorted(got) == sorted(key for _, key in want)
            assert [times[k] for k in got] == sorted(times[k] for k in got)  # oldest first
            assert index.watermark(p) == reference.marks[p]
    for p in range(3):
        got, want = index.pop_expired(p, clock[p] + 10**9), reference.pop_expired(p, clock[p] + 10**9)
        assert sorted(got) == sorted(key for _, key in want) and index.pop_expired(p, 10**12) == []


def test_a_rebuild_keeps_only_the_partitions_asked_for_and_orders_them() -> None:
    index = RetentionIndex(retention_ms=10)
    index.add(5, 0, b"stale")
    index.rebuild([0, 1], [(0, 30, b"c"), (0, 5, b"a"), (1, 7, b"x"), (2, 1, b"not mine"), (0, 20, b"b")])
    assert not index.known(2) and index.known(0) and index.known(5)
    assert index.watermark(0) == 30 and index.pop_expired(0) == [b"a"]
    assert index.pop_expired(0, watermark=100) == [b"b", b"c"]
    assert index.pop_expired(2, watermark=100) == [] and index.pop_expired(1, watermark=100) == [b"x"]
    index.forget_all()
    assert not index.known(0) and index.watermark(0) is None


class TP(NamedTuple):
    """A topic-partition as the assignor hands them out."""

    topic: str
    partition: int


def test_follow_assignment_rebuilds_this_topics_partitions_only_when_the_assignment_changes() -> None:
    index = RetentionIndex(retention_ms=10)
    calls: list[int] = []
    table = [(0, 5, b"a"), (1, 7, b"b"), (2, 9, b"c")]

    def items() -> list[tuple[int, int, bytes]]:
        calls.append(1)
        return table

    assigned = frozenset({TP("features", 0), TP("features", 1), TP("other", 2)})
    index.add(7, 1, b"before the rebalance")
    index.follow_assignment(assigned, "features", items)
    assert len(calls) == 1
    assert index.known(0) and index.known(1) and not index.known(2) and not index.known(7)
    assert (index.watermark(0), index.watermark(1), index.watermark(2)) == (5, 7, None)
    index.add(0, 100, b"d")
    index.follow_assignment(frozenset(assigned), "features", items)  # the same set again: nothing rebuilt
    assert len(calls) == 1 and index.pop_expired(0) == [b"a"]
    index.follow_assignment(frozenset({TP("features", 2)}), "features", items)
    assert len(calls) == 2 and not index.known(0) and index.known(2)
    assert index.pop_expired(2, watermark=20) == [b"c"]


def test_a_key_expires_only_once_strictly_older_than_watermark_minus_retention() -> None:
    index = RetentionIndex(retention_ms=100)
    assert index.pop_expired(0) == [] and index.watermark(0) is None and not index.known(0)
    index.add(0, 50, b"a")
    index.add(0, 150, b"b")
    assert index.known(0) and index.watermark(0) == 150
    assert index.pop_expired(0) == []  # cutoff 50: a (at 50) is not older than it
    index.add(0, 151, b"c")
    assert index.pop_expired(0) == [b"a"]  # cutoff 51
    assert index.pop_expired(0, watermark=250) == []  # b at 150 is not older than 150
    assert index.pop_expired(0, watermark=251) == [b"b"]
    assert index.pop_expired(1, watermark=10**9) == []  # a partition never seen


def test_a_late_key_comes_out_in_event_time_order_with_the_queued_ones() -> None:
    index = RetentionIndex(retention_ms=0)
    for t, key in [(10, b"q10"), (20, b"q20"), (20, b"q20b"), (30, b"q30"), (15, b"late15"), (5, b"late5"),
                   (20, b"late20")]:
        index.add(0, t, key)
    assert index.watermark(0) == 30  # late keys never move the watermark back
    # Ties in event time come out as one heap of (time, key) pops them: by key.
    assert index.pop_expired(0, watermark=21) == [b"late5", b"q10", b"late15", b"late20", b"q20", b"q20b"]
    assert index.pop_expired(0, watermark=31) == [b"q30"]
    assert index.pop_expired(0, watermark=10**9) == []


def test_the_watermark_starts_at_the_first_time_even_at_zero() -> None:
    index = RetentionIndex(retention_ms=0)
    index.add(3, 0, b"z")
    assert index.watermark(3) == 0
    assert index.pop_expired(3, watermark=1) == [b"z"]


def test_a_rebuild_forgets_the_partitions_watermark_and_keys() -> None:
    index = RetentionIndex(retention_ms=10)
    index.add(0, 1_000, b"gone")
    index.rebuild([0], [(0, 5, b"a"), (0, 40, b"b")])
    assert index.watermark(0) == 40
    assert index.pop_expired(0) == [b"a"] and index.pop_expired(0, watermark=10**6) == [b"b"]
