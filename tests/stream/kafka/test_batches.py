"""micro_batches: what a batch holds, what is skipped and tracked, and that it acks nothing itself; InFlight's acks."""

from __future__ import annotations

import asyncio

import pytest
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from stream.kafka.batches import InFlight, ack, micro_batches


class FakeMessage:
    def __init__(self, generation_id: int) -> None:
        self.topic = "transactions"
        self.generation_id = generation_id
        self.tracked = False


class FakeEvent:
    def __init__(self, n: int, generation_id: int = 1) -> None:
        self.n = n
        self.acked = False
        self.acks = 0
        self.message = FakeMessage(generation_id)

    def ack(self) -> bool:
        self.acked = True
        self.acks += 1
        return True


class FakeApp:
    """What micro_batches reads of Faust's app: flow control, consumer generation, tracking."""

    def __init__(self) -> None:
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.consumer_generation_id = 1
        self.tracked: list = []
        self.consumer = type("Consumer", (), {"track_message": self.tracked.append})()
        self.topics = type("Topics", (), {"acking_topics": {"transactions"}})()


class FakeStream:
    """Just the channel queue Faust's conductor fills for an agent, and the app."""

    def __init__(self) -> None:
        self.app = FakeApp()
        self.channel = type("Channel", (), {})()
        self.channel.queue = ThrowableQueue(maxsize=100, flow_control=self.app.flow_control)

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


def test_events_from_before_a_rebalance_are_skipped_and_the_rest_tracked():
    async def go():
        stream = FakeStream()
        stale, fresh = FakeEvent(0, generation_id=1), FakeEvent(1, generation_id=2)
        stream.app.consumer_generation_id = 2  # a rebalance happened after `stale` was fetched
        stream.put(stale, fresh)
        batch = await micro_batches(stream, 10).__anext__()
        assert [e.n for e in batch] == [1]
        assert stale.acked, "skipped and acked, as Faust's stream does (re-read from the committed offset)"
        assert stream.app.tracked == [fresh.message], "pending until acked: a rebalance waits for it"

    asyncio.run(go())


def test_no_batch_while_flow_is_stopped_for_a_rebalance():
    async def go():
        stream = FakeStream()
        stream.app.flow_control.suspend()
        event = FakeEvent(0)
        stream.put(event)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(micro_batches(stream, 10).__anext__(), 0.2)
        assert event.acked and not stream.app.tracked

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


def _flight(limit):
    failures: list[BaseException] = []
    return InFlight(limit, on_failure=failures.append), failures


def test_in_flight_one_waits_for_each_delivery_before_returning():
    async def go():
        flight, _ = _flight(1)
        events = [FakeEvent(0)]
        delivery = asyncio.get_running_loop().create_future()
        adding = asyncio.create_task(flight.add(events, delivery))
        await asyncio.sleep(0.05)
        assert not adding.done() and not events[0].acked
        delivery.set_result(None)
        assert await asyncio.wait_for(adding, 1.0) > 0.0  # the seconds it waited
        assert events[0].acked and len(flight) == 0

    asyncio.run(go())


def test_in_flight_two_returns_at_once_then_waits_for_the_oldest():
    async def go():
        flight, _ = _flight(2)
        loop = asyncio.get_running_loop()
        first, second = [FakeEvent(0)], [FakeEvent(1)]
        d1, d2 = loop.create_future(), loop.create_future()
        assert await asyncio.wait_for(flight.add(first, d1), 1.0) == 0.0  # scored next while on the wire
        adding = asyncio.create_task(flight.add(second, d2))
        await asyncio.sleep(0.05)
        assert not adding.done(), "two outstanding: waits for the oldest"
        d1.set_result(None)
        await asyncio.wait_for(adding, 1.0)
        assert first[0].acked and not second[0].acked and len(flight) == 1

    asyncio.run(go())


def test_in_flight_acks_from_the_callback_even_when_the_agent_is_idle():
    async def go():
        flight, _ = _flight(3)
        events = [FakeEvent(0), FakeEvent(1)]
        delivery = asyncio.get_running_loop().create_future()
        await flight.add(events, delivery)
        delivery.set_result(None)
        await asyncio.sleep(0)  # the done-callback runs; the agent never came back
        assert all(e.acked for e in events), "a rebalance waiting for these acks must not wait on the agent"

    asyncio.run(go())


def test_in_flight_failed_delivery_is_not_acked_and_reported_once_per_batch():
    async def go():
        flight, failures = _flight(2)
        loop = asyncio.get_running_loop()
        bad, good = [FakeEvent(0)], [FakeEvent(1)]
        d_bad, d_good = loop.create_future(), loop.create_future()
        await flight.add(bad, d_bad)
        d_bad.set_exception(ConnectionError("broker gone"))
        d_good.set_result(None)
        with pytest.raises(ConnectionError, match="broker gone"):
            await flight.add(good, d_good)  # settling the oldest raises its error
        await asyncio.sleep(0)  # the done-callbacks run
        assert not bad[0].acked
        assert good[0].acked, "acked; Faust still commits only up to the first unacked offset"
        assert [type(e) for e in failures] == [ConnectionError]

    asyncio.run(go())


def test_in_flight_refuses_a_limit_below_one():
    with pytest.raises(ValueError, match="limit must be >= 1"):
        InFlight(0, on_failure=print)


def test_in_flight_acks_each_batch_once():
    """Faust counts acks against a message's references: a second ack would release it for another reader."""

    async def go():
        flight, _ = _flight(1)
        events = [FakeEvent(0)]
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(None)  # already delivered: the callback and the settling both see it
        await flight.add(events, delivery)
        await asyncio.sleep(0)
        assert events[0].acks == 1

    asyncio.run(go())
