"""Following a one-partition topic through a broker: the backlog first, then the signal, then each new record."""

from __future__ import annotations

import asyncio

import pytest

from stream.kafka.follow import follow_topic
from stream.kafka.topics import ensure_topics
from tests.support import produce

pytestmark = pytest.mark.broker


def test_the_backlog_comes_before_the_signal_and_later_records_after_it(settings, broker) -> None:
    topic = settings.topic_rules
    ensure_topics(settings)
    produce(broker, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(3)], partition=0)
    seen: list[tuple[str, bytes]] = []

    async def run() -> None:
        caught = asyncio.Event()

        def caught_up() -> None:
            seen.append(("caught_up", b""))
            caught.set()

        task = asyncio.ensure_future(follow_topic(
            settings, topic, lambda m: seen.append(("backlog", m.value)), caught_up,
            lambda m: seen.append(("record", m.value))))
        await asyncio.wait_for(caught.wait(), timeout=30)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: produce(broker, topic, [(b"k3", b"v3"), (b"k4", b"v4")], partition=0))
        for _ in range(300):
            if len(seen) >= 6:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        outcome = (await asyncio.gather(task, return_exceptions=True))[0]
        assert isinstance(outcome, asyncio.CancelledError), outcome  # it follows until cancelled

    asyncio.run(run())
    assert seen == [("backlog", b"v0"), ("backlog", b"v1"), ("backlog", b"v2"), ("caught_up", b""),
                    ("record", b"v3"), ("record", b"v4")]
