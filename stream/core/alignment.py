"""Transactions from several source partitions, passed on in event-time order.

An entity's transactions come from every card partition, and its features
count only the transactions before each one in event time. A worker reads
its card partitions each in order but not in step with one another: a fetch
brings one partition's next few hundred records before another's. Passed on
as fetched, a replay of last year (hours of event time in a second) would
give a terminal's transaction features that missed the other partitions'
earlier transactions, and different features at every replay speed.

:class:`EventTimeAlignment` holds what a worker's source partitions deliver
and releases it merged in event-time order, each partition still in its own
order (so offsets are acknowledged in order), as Kafka Streams does for a
task's partitions (``max.task.idle.ms``): the next record goes on only once
every partition that delivered recently has shown a record at least as late,
or has been quiet for ``idle_ms`` of wall-clock time, or the record has been
held ``max_hold_ms``. Live traffic waits a few milliseconds at most when
every partition is busy, ``idle_ms`` when one has just gone quiet. Partitions
of other workers are not aligned with these (their hop runs elsewhere).

Example:
    >>> now = [0.0]
    >>> align = EventTimeAlignment(idle_ms=100, clock=lambda: now[0])
    >>> align.add(0, 10, "p0@10"); align.add(0, 30, "p0@30"); align.add(1, 20, "p1@20")
    >>> align.release()  # p1's next record may come before 30: p0@30 waits
    ['p0@10', 'p1@20']
    >>> now[0] = 0.2  # partition 1 quiet for 200 ms
    >>> align.release(), align.held
    (['p0@30'], 0)
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["EventTimeAlignment"]

T = TypeVar("T")


class EventTimeAlignment(Generic[T]):
    """Per-partition queues of ``(event time, item)``, released merged in event-time order."""

    def __init__(self, idle_ms: float, max_hold_ms: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if idle_ms < 0:
            raise ValueError(f"idle_ms must be >= 0, got {idle_ms}")
        self.idle_s = idle_ms / 1000.0
        self.max_hold_s = (max_hold_ms if max_hold_ms is not None else 10 * idle_ms) / 1000.0
        self.clock = clock
        self._queues: dict[int, deque[tuple[int, float, T]]] = {}
        self._last_seen: dict[int, float] = {}  # wall time of each partition's latest record
        self._last_time: dict[int, int] = {}  # event time of each partition's latest record
        self.held = 0

    def add(self, partition: int, event_time_ms: int, item: T) -> None:
        """Hold ``item`` of ``partition`` (records of a partition in their partition order)."""
        now = self.clock()
        self._queues.setdefault(partition, deque()).append((event_time_ms, now, item))
        self._last_seen[partition] = now
        self._last_time[partition] = max(self._last_time.get(partition, event_time_ms), event_time_ms)
        self.held += 1

    def release(self) -> list[T]:
        """Every item that may go on now, in event-time order (ties: the lower partition first)."""
        now = self.clock()
        heads = [(q[0][0], p) for p, q in self._queues.items() if q]
        heapq.heapify(heads)
        out: list[T] = []
        while heads:
            event_time, partition = heads[0]
            queue = self._queues[partition]
            if not self._may_go(event_time, partition, now, queue[0][1]):
                break
            heapq.heappop(heads)
            out.append(queue.popleft()[2])
            if queue:
                heapq.heappush(heads, (queue[0][0], partition))
        self.held -= len(out)
        return out

    def drain(self) -> list[T]:
        """Everything held, merged in event-time order (the worker is stopping or its partitions are going)."""
        rows = sorted((event_time, partition, i, item) for partition, queue in self._queues.items()
                      for i, (event_time, _, item) in enumerate(queue))
        self._queues.clear()
        self.held = 0
        return [item for _, _, _, item in rows]

    def _may_go(self, event_time: int, partition: int, now: float, held_since: float) -> bool:
        if now - held_since >= self.max_hold_s:
            return True
        for other, queue in self._queues.items():
            if other == partition or queue:
                continue  # a partition with a record queued: the heap order already accounts for it
            # Empty: its next record could be earlier, unless it has already shown one as late or gone quiet.
            if self._last_time[other] < event_time and now - self._last_seen[other] < self.idle_s:
                return False
        return True
