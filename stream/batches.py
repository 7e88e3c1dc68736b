"""Micro-batches straight off an agent's channel, acked only once processed.

Faust's ``Stream.take_events`` costs about 20 µs per event on top of Faust's
consumer (a ``wait_first`` with fresh tasks for every event), and it acks its
batch in a ``finally``, so a batch abandoned by a cancelled agent is marked
done as if it had been processed. :func:`micro_batches` reads the same
channel queue that Faust's conductor fills for the agent and takes whatever
has arrived (at most ``max_events``). It acks nothing: the agent calls
:func:`ack` once a batch is processed, or hands the batch to
:class:`InFlight`, which acks it when the broker has everything the batch
produced. If processing raises or the agent is cancelled, nothing is acked
and Kafka redelivers the batch after a restart or rebalance.

Partition assignment, offsets, commits and rebalances stay Faust's and
Kafka's: the events are Faust's own, with their Faust acks.

Example (an agent):

    async def learn(stream):
        async for events in micro_batches(stream, 256):
            await process(events)
            ack(events)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from faust.types import EventT

__all__ = ["InFlight", "ack", "micro_batches"]

log = logging.getLogger("fraudstream.batches")


async def micro_batches(stream: Any, max_events: int, within_s: float = 0.0) -> AsyncIterator[list[EventT]]:
    """Yield lists of at most ``max_events`` events from ``stream``'s channel.

    A batch is whatever has queued up when the agent is ready for more: on a
    busy stream events queue while the previous batch is scored, so batches
    fill by themselves and an idle stream's event is scored at once.
    ``within_s > 0`` additionally waits up to that long for a batch to fill
    (fewer, larger batches at the price of latency).
    """
    queue = stream.channel.queue
    while True:
        try:
            batch: list[EventT] = [await queue.get()]
        except StopAsyncIteration:  # Faust throws this into the queue to stop the agent
            return
        _drain(queue, batch, max_events)
        if within_s > 0 and len(batch) < max_events:
            deadline = time.monotonic() + within_s
            while len(batch) < max_events:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
                except StopAsyncIteration:
                    return  # stopping: the partial batch is not processed, so not acked
                _drain(queue, batch, max_events)
        yield batch


def _drain(queue: Any, batch: list[EventT], max_events: int) -> None:
    while len(batch) < max_events and not queue.empty():
        batch.append(queue.get_nowait())


def ack(events: Sequence[EventT]) -> None:
    """Mark ``events`` processed: Faust may commit past them."""
    for event in events:
        event.ack()


class InFlight:
    """Batches whose output is on its way to the broker, acked as each delivery lands.

    Lets an agent score the next batch while the previous one's records are on
    the wire (the round trip is otherwise idle time in every batch), with at
    most ``limit`` batches outstanding. A delivery that fails leaves its batch
    unacked and calls ``on_failure``: the worker should stop, so that the
    batch is redelivered rather than committed past by later batches.
    """

    def __init__(self, limit: int, on_failure: Callable[[BaseException], Any]) -> None:
        self.limit = limit
        self.on_failure = on_failure
        self._pending: deque[tuple[Sequence[EventT], asyncio.Future[None]]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    async def add(self, events: Sequence[EventT], delivery: asyncio.Future[None]) -> None:
        """Ack ``events`` once ``delivery`` succeeds; wait while ``limit`` batches are outstanding."""
        # The callback acks as soon as the broker answers, even if no batch follows.
        delivery.add_done_callback(lambda fut: self._done(events, fut))
        self._pending.append((events, delivery))
        while self._pending and (self._pending[0][1].done() or len(self._pending) > self.limit):
            await self._settle(*self._pending.popleft())

    async def drain(self) -> None:
        """Wait for every outstanding delivery (and ack what was delivered)."""
        while self._pending:
            await self._settle(*self._pending.popleft())

    @staticmethod
    async def _settle(events: Sequence[EventT], delivery: asyncio.Future[None]) -> None:
        try:
            await asyncio.shield(delivery)
        except Exception:  # reported by _done
            return
        ack(events)  # idempotent: the callback may not have run yet

    def _done(self, events: Sequence[EventT], fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            ack(events)
            return
        log.critical("delivery of a batch of %d records failed; not acking it: %r", len(events), exc)
        self.on_failure(exc)
