"""micro_batches and InFlight: what a batch holds, and that only delivered batches are acked."""

from __future__ import annotations

import asyncio

import pytest
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from stream.batches import InFlight, ack, micro_batches


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


def test_takes_what_has_arrived_up_to_max_and_acks_nothing_itself():
    async def go():
        stream = FakeStream()
        events = [FakeEvent(i) for i in range(7)]
        stream.put(*events)
        batches = micro_batches(stream, 5)
        first = await batches.__anext__()
        assert [e.n for e in first] == [0, 1, 2, 3, 4]
        second = await batches.__anext__()
        assert [e.n for e in second] == [5, 6]
        assert not any(e.acked for e in events), "acking is the agent's call"
        ack(first)
        assert all(e.acked for e in first) and not any(e.acked for e in second)
        await batches.aclose()

    asyncio.run(go())


def test_in_flight_acks_a_batch_when_its_delivery_lands_and_never_when_it_fails():
    async def go():
        failures = []
        in_flight = InFlight(2, on_failure=failures.append)
        loop = asyncio.get_running_loop()
        ok, bad, later = loop.create_future(), loop.create_future(), loop.create_future()
        a, b, c = [FakeEvent(1)], [FakeEvent(2)], [FakeEvent(3)]
        await in_flight.add(a, ok)
        await in_flight.add(b, bad)
        assert len(in_flight) == 2 and not a[0].acked, "outstanding until the broker has it"
        ok.set_result(None)
        bad.set_exception(ConnectionError("broker gone"))
        waiter = asyncio.ensure_future(in_flight.add(c, later))  # a third waits for room
        await asyncio.sleep(0.01)  # done-callbacks run on the loop's next turns
        assert a[0].acked and not b[0].acked
        assert [type(e) for e in failures] == [ConnectionError]
        later.set_result(None)
        await waiter
        await in_flight.drain()
        assert c[0].acked and len(in_flight) == 0

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
