"""Event-time retention for the scoring-time features kept for the feedback join.

Each partition keeps its (event time, key) pairs in event-time order: a
queue for the usual in-order arrivals (appended, popped from the front, each
O(1)) and a min-heap for the late ones. After a batch, keys older than the
partition's watermark (the newest event time seen) minus the retention are
due for deletion, oldest first. (One heap for all of them cost the score
agent a push and a pop of log n tuple comparisons per transaction, n being
every transaction of the retention.) The heaps are memory only: after a restart or
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
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["RetentionIndex"]


class _Expiry:
    """One partition's pairs in event-time order: in-order arrivals in a queue, late ones in a heap."""

    __slots__ = ("late", "ordered")

    def __init__(self) -> None:
        self.ordered: deque[tuple[int, bytes]] = deque()
        self.late: list[tuple[int, bytes]] = []

    def add(self, event_time_ms: int, key: bytes) -> None:
        ordered = self.ordered
        if not ordered or ordered[-1][0] <= event_time_ms:
            ordered.append((event_time_ms, key))
        else:
            heapq.heappush(self.late, (event_time_ms, key))

    def pop_before(self, cutoff: int) -> list[bytes]:
        ordered, late = self.ordered, self.late
        out: list[bytes] = []
        while True:  # the older head of the two, as long as it is before the cutoff
            if ordered and ordered[0][0] < cutoff and not (late and late[0] < ordered[0]):
                out.append(ordered.popleft()[1])
            elif late and late[0][0] < cutoff:
                out.append(heapq.heappop(late)[1])
            else:
                return out

    def __bool__(self) -> bool:
        return bool(self.ordered or self.late)


class RetentionIndex:
    """Per-partition expiry queues keyed by event time."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self._queues: dict[int, _Expiry] = {}
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
        """True once the partition's queue has been built or started."""
        return partition in self._queues

    def watermark(self, partition: int) -> int | None:
        """Newest event time seen on the partition."""
        return self._watermarks.get(partition)

    def add(self, partition: int, event_time_ms: int, key: bytes) -> None:
        queue = self._queues.get(partition)
        if queue is None:
            queue = self._queues[partition] = _Expiry()
        queue.add(event_time_ms, key)
        if event_time_ms > self._watermarks.get(partition, -1):
            self._watermarks[partition] = event_time_ms

    def pop_expired(self, partition: int, watermark: int | None = None) -> list[bytes]:
        """Remove and return the keys older than watermark - retention, oldest first.

        ``watermark`` defaults to the newest time added to this partition; the
        pending-label index passes the transactions' watermark instead.
        """
        queue = self._queues.get(partition)
        mark = self._watermarks.get(partition) if watermark is None else watermark
        if not queue or mark is None:
            return []
        return queue.pop_before(mark - self.retention_ms)

    def rebuild(self, partitions: Iterable[int], items: Iterable[tuple[int, int, bytes]]) -> None:
        """Reset ``partitions`` from ``(partition, event_time_ms, key)`` triples."""
        wanted = set(partitions)
        for p in wanted:
            self._queues[p] = _Expiry()
            self._watermarks.pop(p, None)
        for p, t, key in sorted(item for item in items if item[0] in wanted):  # in order: all into the queues
            self.add(p, t, key)

    def forget_all(self) -> None:
        """Drop everything (after a rebalance: ownership may have changed)."""
        self._queues.clear()
        self._watermarks.clear()
