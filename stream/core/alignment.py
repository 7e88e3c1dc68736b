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

A partition known to have records not delivered yet (``pending``: the
consumer's high watermark is past the last offset added) is waited for even
when it has been quiet, up to ``max_lag_hold_ms``: a worker working through a
backlog (a replay faster than it scores, a restart) is slow to come back to
each partition, and a wall-clock idle rule alone would pass the partition it
happens to hold on out of order (Kafka Streams waits likewise while it knows
a partition has data).

Example:
    >>> now = [0.0]
    >>> align = EventTimeAlignment(idle_ms=100, clock=lambda: now[0])
    >>> align.add(0, 10, "p0@10"); align.add(0, 30, "p0@30"); align.add(1, 20, "p1@20")
    >>> align.release()  # p1's next record may come before 30: p0@30 waits
    ['p0@10', 'p1@20']
    >>> now[0] = 0.2  # partition 1 quiet for 200 ms
    >>> align.release(), align.held
    (['p0@30'], 0)
    >>> backlog = EventTimeAlignment(idle_ms=100, clock=lambda: now[0], pending=lambda p, offset: p == 1)
    >>> backlog.add(1, 5, "p1@5", offset=0); backlog.add(0, 10, "p0@10", offset=0)
    >>> backlog.release()  # partition 1 has more to deliver: p0@10 waits, quiet or not
    ['p1@5']
    >>> now[0] = 9.0; backlog.release()  # up to max_lag_hold_ms
    ['p0@10']
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeAlias, TypeVar

__all__ = ["EventTimeAlignment", "PartitionKey"]

T = TypeVar("T")
#: A source partition: its number, or ``(topic, number)`` where one alignment merges several topics.
PartitionKey: TypeAlias = int | tuple[str, int]


class EventTimeAlignment(Generic[T]):
    """Per-partition queues of ``(event time, item)``, released merged in event-time order."""

    def __init__(self, idle_ms: float, max_hold_ms: float | None = None,
                 clock: Callable[[], float] = time.monotonic, pending: Callable[[PartitionKey, int], bool] | None = None,
                 max_lag_hold_ms: float = 5_000.0) -> None:
        if idle_ms < 0:
            raise ValueError(f"idle_ms must be >= 0, got {idle_ms}")
        self.idle_s = idle_ms / 1000.0
        self.max_hold_s = (max_hold_ms if max_hold_ms is not None else 10 * idle_ms) / 1000.0
        self.max_lag_hold_s = max(max_lag_hold_ms / 1000.0, self.max_hold_s)
        self.clock = clock
        #: ``pending(partition, last offset added)``: does the partition have records not delivered yet?
        self.pending = pending
        self._last_offset: dict[PartitionKey, int] = {}
        self._queues: dict[PartitionKey, deque[tuple[int, float, T]]] = {}
        self._last_seen: dict[PartitionKey, float] = {}  # wall time of each partition's latest record
        self._last_time: dict[PartitionKey, int] = {}  # event time of each partition's latest record
        self.held = 0

    def add(self, partition: PartitionKey, event_time_ms: int, item: T, offset: int = -1) -> None:
        """Hold ``item`` of ``partition`` (records of a partition in their partition order, at ``offset``)."""
        now = self.clock()
        self._last_offset[partition] = offset
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

    def _may_go(self, event_time: int, partition: PartitionKey, now: float, held_since: float) -> bool:
        held = now - held_since
        if held >= self.max_lag_hold_s:
            return True
        for other, queue in self._queues.items():
            if other == partition or queue or self._last_time[other] >= event_time:
                continue  # a record queued (the heap order accounts for it), or one as late already shown
            # Empty: its next record could be earlier, unless it has gone quiet with nothing left to deliver.
            if self.pending is not None and self.pending(other, self._last_offset.get(other, -1)):
                return False
            if held < self.max_hold_s and now - self._last_seen[other] < self.idle_s:
                return False
        return True
