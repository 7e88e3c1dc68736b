"""micro_batches: what a batch holds, and that only processed batches are acked."""

from __future__ import annotations

import asyncio

import pytest
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from stream.batches import micro_batches


class FakeEvent:
    def __init__(self, n: int) -> None:
        self.n = n
        self.acked = False

    def ack(self) -> bool:
        self.acked = True
        return True


class FakeStream:
    """Just the channel queue Faust's conductor fills for an agent."""

    def __init__(self) -> None:
        self.channel = type("Channel", (), {})()
        self.channel.queue = ThrowableQueue(maxsize=100, flow_control=FlowControlEvent())

    def put(self, *events: FakeEvent) -> None:
        for e in events:
            self.channel.queue.put_nowait(e)


def test_takes_what_has_arrived_up_to_max_and_acks_on_resume():
    async def go():
        stream = FakeStream()
        events = [FakeEvent(i) for i in range(7)]
        stream.put(*events)
        batches = micro_batches(stream, 5)
        first = await batches.__anext__()
        assert [e.n for e in first] == [0, 1, 2, 3, 4]
        assert not any(e.acked for e in events), "nothing acked while the batch is processed"
        second = await batches.__anext__()
        assert [e.n for e in second] == [5, 6]
        assert all(e.acked for e in first) and not any(e.acked for e in second)
        await batches.aclose()
        assert not any(e.acked for e in second), "a batch the agent abandons is not acked"

    asyncio.run(go())


def test_failed_batch_is_not_acked():
    async def go():
        stream = FakeStream()
        events = [FakeEvent(i) for i in range(3)]
        stream.put(*events)
        with pytest.raises(RuntimeError):
            async for _ in micro_batches(stream, 10):
                raise RuntimeError("model exploded")
        assert not any(e.acked for e in events)

    asyncio.run(go())


def test_within_waits_for_a_batch_to_fill():
    async def go():
        stream = FakeStream()
        stream.put(FakeEvent(0))

        async def later():
            await asyncio.sleep(0.05)
            stream.put(FakeEvent(1), FakeEvent(2))

        task = asyncio.create_task(later())
        batches = micro_batches(stream, 3, within_s=2.0)
        batch = await asyncio.wait_for(batches.__anext__(), 1.0)  # full before the 2 s are up
        assert [e.n for e in batch] == [0, 1, 2]
        await task
        await batches.aclose()

    asyncio.run(go())


def test_without_within_an_idle_stream_event_is_not_held_back():
    async def go():
        stream = FakeStream()
        stream.put(FakeEvent(0))
        batch = await asyncio.wait_for(micro_batches(stream, 100).__anext__(), 0.5)
        assert [e.n for e in batch] == [0]

    asyncio.run(go())


def test_stop_signal_ends_the_batches():
    async def go():
        stream = FakeStream()
        await stream.channel.queue.throw(StopAsyncIteration())
        assert [b async for b in micro_batches(stream, 10)] == []

    asyncio.run(go())
