"""Event-time retention for the scoring-time features kept for the feedback join.

Each partition has a min-heap of (event time, key). After a batch, keys older
than the partition's watermark (the newest event time seen) minus the
retention are due for deletion. The heaps are memory only: after a restart or
a rebalance the owner rebuilds them from the table (:meth:`rebuild`), so a
key written by another worker before a rebalance still expires.

Example:
    >>> idx = RetentionIndex(retention_ms=1000)
    >>> for t, key in [(0, b"a"), (500, b"b"), (1200, b"c")]:
    ...     idx.add(partition=0, event_time_ms=t, key=key)
    >>> idx.pop_expired(0)
    [b'a']
    >>> idx.add(0, 2600, b"d"); idx.pop_expired(0)
    [b'b', b'c']
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["RetentionIndex"]


class RetentionIndex:
    """Per-partition expiry queues keyed by event time."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self._heaps: dict[int, list[tuple[int, bytes]]] = {}
        self._watermarks: dict[int, int] = {}
        self._assignment: frozenset[Any] | None = None

    def follow_assignment(self, assigned: frozenset[Any], topic: str,
                          items: Callable[[], Iterable[tuple[int, int, bytes]]]) -> None:
        """Rebuild from ``items()`` whenever this worker's partitions changed.

        ``assigned`` is the set of active topic-partitions; the partitions of
        ``topic`` among them are this worker's. After a start, restart or
        rebalance another worker may have written keys this index never saw.
        """
        if assigned == self._assignment:
            return
        self._assignment = assigned
        mine = {tp.partition for tp in assigned if tp.topic == topic}
        self.forget_all()
        self.rebuild(mine, items())

    def known(self, partition: int) -> bool:
        """True once the partition's heap has been built or started."""
        return partition in self._heaps

    def watermark(self, partition: int) -> int | None:
        """Newest event time seen on the partition."""
        return self._watermarks.get(partition)

    def add(self, partition: int, event_time_ms: int, key: bytes) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (event_time_ms, key))
        if event_time_ms > self._watermarks.get(partition, -1):
            self._watermarks[partition] = event_time_ms

    def pop_expired(self, partition: int, watermark: int | None = None) -> list[bytes]:
        """Remove and return the keys older than watermark - retention.

        ``watermark`` defaults to the newest time added to this partition; the
        pending-label index passes the transactions' watermark instead.
        """
        heap = self._heaps.get(partition)
        mark = self._watermarks.get(partition) if watermark is None else watermark
        if not heap or mark is None:
            return []
        cutoff = mark - self.retention_ms
        out: list[bytes] = []
        while heap and heap[0][0] < cutoff:
            out.append(heapq.heappop(heap)[1])
        return out

    def rebuild(self, partitions: Iterable[int], items: Iterable[tuple[int, int, bytes]]) -> None:
        """Reset ``partitions`` from ``(partition, event_time_ms, key)`` triples."""
        wanted = set(partitions)
        for p in wanted:
            self._heaps[p] = []
            self._watermarks.pop(p, None)
        for p, t, key in items:
            if p in wanted:
                self.add(p, t, key)

    def forget_all(self) -> None:
        """Drop everything (after a rebalance: ownership may have changed)."""
        self._heaps.clear()
        self._watermarks.clear()
