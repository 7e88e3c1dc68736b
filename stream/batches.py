"""Micro-batches straight off an agent's channel, acked only once processed.

Faust's ``Stream.take_events`` costs about 20 µs per event on top of Faust's
consumer (a ``wait_first`` with fresh tasks for every event), and it acks its
batch in a ``finally``, so a batch abandoned by a cancelled agent is marked
done as if it had been processed. :func:`micro_batches` reads the same
channel queue that Faust's conductor fills for the agent, takes whatever has
arrived (at most ``max_events``), and acks a batch only when the agent asks
for the next one: if processing raises or the agent is cancelled, nothing is
acked and Kafka redelivers the batch after a restart or rebalance.

Partition assignment, offsets, commits and rebalances stay Faust's and
Kafka's: the events are Faust's own, with their Faust acks.

Example (an agent):

    async def score(stream):
        async for events in micro_batches(stream, 256, within_s=0.0):
            await process(events)   # acked when the loop asks for more
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from faust.types import EventT

__all__ = ["micro_batches"]


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
        # Reached only when the agent comes back for more, i.e. the batch was
        # processed (or dead-lettered). An exception or a cancellation closes
        # this generator at the ``yield`` instead, and nothing is acked.
        for event in batch:
            event.ack()


def _drain(queue: Any, batch: list[EventT], max_events: int) -> None:
    while len(batch) < max_events and not queue.empty():
        batch.append(queue.get_nowait())
