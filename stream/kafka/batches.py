"""Micro-batches straight off an agent's channel, acked only once processed.

Faust's ``Stream.take_events`` adds a ``wait_first`` with fresh tasks for
every event on top of Faust's consumer (a cost that dominated the engine's
per-event plumbing: docs/benchmark-history.md), and it acks its
batch in a ``finally``, so a batch abandoned by a cancelled agent is marked
done as if it had been processed. :func:`micro_batches` reads the same
channel queue that Faust's conductor fills for the agent and takes whatever
has arrived (at most ``max_events``). It acks nothing: the agent calls
:func:`ack` once a batch is processed and the broker has everything it
produced. If processing raises or the agent is cancelled, nothing is acked
and Kafka redelivers the batch after a restart or rebalance.

Partition assignment, offsets, commits and rebalances stay Faust's and
Kafka's: the events are Faust's own, with their Faust acks.

:class:`InFlight` lets an agent score the next batch while the previous
one's records are still on their way to the broker, acking each batch from a
callback the moment its own delivery lands (not when the agent next looks),
so a rebalance waiting for the tracked events never waits on an idle agent.

Example (an agent):

    async def learn(stream):
        async for events in micro_batches(stream, 256):
            await process(events)
            ack(events)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from faust.types import EventT

__all__ = ["InFlight", "ack", "micro_batches"]


async def micro_batches(stream: Any, max_events: int, within_s: float = 0.0,
                        idle_s: float | None = None) -> AsyncIterator[list[EventT]]:
    """Yield lists of at most ``max_events`` events from ``stream``'s channel.

    A batch is whatever has queued up when the agent is ready for more: on a
    busy stream events queue while the previous batch is scored, so batches
    fill by themselves and an idle stream's event is scored at once.
    ``within_s > 0`` additionally waits up to that long for a batch to fill
    (fewer, larger batches at the price of latency). With ``idle_s`` an empty
    batch comes after that long without an event, so an agent holding events
    back (:mod:`stream.core.alignment`) gets to release them.

    Each event gets what Faust's own stream iterator gives it: one consumed
    before the latest rebalance (older consumer generation, or flow stopped)
    is skipped and acked, as Faust does (it is read again from the committed
    offset); the others are tracked as pending, so a rebalance waits for the
    batch holding them to be acked before it hands their partition over.
    """
    queue = stream.channel.queue
    accept = _Acceptor(stream.app)
    while True:
        batch: list[EventT] = []
        while not batch:
            try:
                event = await (queue.get() if idle_s is None else asyncio.wait_for(queue.get(), idle_s))
            except TimeoutError:
                break  # idle: an empty batch
            except StopAsyncIteration:  # Faust throws this into the queue to stop the agent
                return
            if accept(event):
                batch.append(event)
        if not batch:
            yield batch
            continue
        _drain(queue, batch, max_events, accept)
        if within_s > 0 and len(batch) < max_events:
            deadline = time.monotonic() + within_s
            while len(batch) < max_events:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                except StopAsyncIteration:
                    return  # stopping: the partial batch is not processed, so not acked
                if accept(event):
                    batch.append(event)
                _drain(queue, batch, max_events, accept)
        accept.seen(batch)
        yield batch


class _Acceptor:
    """Faust's per-event bookkeeping from ``Stream.__aiter__``, inlined for a batch reader."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.flow = app.flow_control
        self.track = app.consumer.track_message
        self.acking_topics = app.topics.acking_topics
        monitor = getattr(app, "monitor", None)
        self.inbound: dict[Any, float] | None = getattr(monitor, "stream_inbound_time", None)

    def seen(self, batch: list[EventT]) -> None:
        """Tell Faust's monitor the stream is processing these partitions (else it logs a false livelock)."""
        if self.inbound is not None:
            now = time.monotonic()
            for event in batch:
                self.inbound[event.message.tp] = now

    def __call__(self, event: EventT) -> bool:
        message = event.message
        if not self.flow.is_active() or message.generation_id != self.app.consumer_generation_id:
            event.ack()
            return False
        if message.topic in self.acking_topics and not message.tracked:
            message.tracked = True
            self.track(message)
        return True


def _drain(queue: Any, batch: list[EventT], max_events: int, accept: _Acceptor) -> None:
    while len(batch) < max_events and not queue.empty():
        event = queue.get_nowait()
        if accept(event):
            batch.append(event)


def ack(events: Sequence[EventT]) -> None:
    """Mark ``events`` processed: Faust may commit past them."""
    for event in events:
        event.ack()


class InFlight:
    """Batches whose outputs are on their way to the broker; each is acked as its own delivery lands.

    With ``limit`` 1 an agent waits for every batch's delivery before taking
    the next; with 2 it scores batch N+1 while N's records are on the wire
    (the round trip is otherwise idle time in every batch), and so on. A
    failed delivery leaves its batch unacked and calls ``on_failure`` (the
    worker should stop): Faust commits a partition only up to its first
    unacked offset, so later batches are never committed past it and the
    partition's next owner processes it again.

    Example:
        >>> async def demo():
        ...     flight = InFlight(limit=2, on_failure=print)
        ...     events, delivery = [Ev()], asyncio.get_running_loop().create_future()
        ...     await flight.add(events, delivery)  # under the limit: returns at once
        ...     before = events[0].acked
        ...     delivery.set_result(None)
        ...     await flight.drain()
        ...     return before, events[0].acked
        >>> class Ev:
        ...     acked = False
        ...     def ack(self): self.acked = True
        >>> asyncio.run(demo())
        (False, True)
    """

    def __init__(self, limit: int, on_failure: Callable[[BaseException], Any]) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.on_failure = on_failure
        self._pending: deque[_Batch] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    async def add(self, events: Sequence[EventT], delivery: asyncio.Future[Any]) -> float:
        """Ack ``events`` once ``delivery`` succeeds; wait while more than ``limit - 1`` batches are outstanding.

        Returns the seconds spent waiting. Raises the delivery's error when the
        batch waited for failed (its events stay unacked).
        """
        batch = _Batch(events, delivery)
        # The callback acks as soon as the broker answers, even if no batch follows:
        # a rebalance waits for tracked events to be acked, and must not wait on an idle agent.
        delivery.add_done_callback(lambda fut: self._done(batch, fut))
        self._pending.append(batch)
        waited = 0.0
        while self._pending and (self._pending[0].delivery.done() or len(self._pending) >= self.limit):
            started = time.perf_counter()
            await self._settle(self._pending.popleft())
            waited += time.perf_counter() - started
        return waited

    async def drain(self) -> None:
        """Wait for every outstanding delivery (raising the first failure)."""
        while self._pending:
            await self._settle(self._pending.popleft())

    @staticmethod
    async def _settle(batch: _Batch) -> None:
        await asyncio.shield(batch.delivery)  # raises the delivery's error; the batch stays unacked
        batch.ack()  # the callback may not have run yet

    def _done(self, batch: _Batch, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            batch.ack()
        else:
            self.on_failure(exc)


class _Batch:
    """One batch in flight; acked once only (a second ack would release a shared message early)."""

    __slots__ = ("acked", "delivery", "events")

    def __init__(self, events: Sequence[EventT], delivery: asyncio.Future[Any]) -> None:
        self.events = events
        self.delivery = delivery
        self.acked = False

    def ack(self) -> None:
        if not self.acked:
            self.acked = True
            ack(self.events)
