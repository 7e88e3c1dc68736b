"""The features' expiry index: what one min-heap per partition would pop, at a fraction of the cost."""

from __future__ import annotations

import heapq
import random

import pytest

from stream.retention import RetentionIndex


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
