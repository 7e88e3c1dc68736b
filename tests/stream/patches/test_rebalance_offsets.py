"""Records must not be skipped when Faust drops prefetched records in a rebalance (stream/patches/faust_paused_partitions.py, faust_recovery_seek.py).

The kill -9 test lost transactions this way: the new owner of a partition with
no committed offset had aiokafka hand over its prefetched records while Faust
had the partition paused (an empty set of active partitions reads as "all" to
aiokafka); Faust dropped them, and its "seek back to committed" did nothing
because nothing was committed. This pins the first half through a real broker.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from stream.patches import fetch_only_active_partitions

pytestmark = pytest.mark.broker


def _topic_with(broker: str, n: int) -> str:
    topic = f"rebalance-offsets-{uuid.uuid4().hex[:8]}"
    _topic_append(broker, topic, n)
    return topic


def test_fetch_hands_over_nothing_once_every_partition_is_paused(broker):
    fetch_only_active_partitions()
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    async def scenario() -> None:
        topic = _topic_with(broker, 1)
        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([tp])
            first = await consumer.getmany(tp, timeout_ms=10_000)
            assert [r.offset for r in first[tp]] == [0]
            thread = SimpleNamespace(consumer=SimpleNamespace(flow_active=True))
            # Nothing active at the call: nothing handed over.
            assert await AIOKafkaConsumerThread._fetch_records(thread, consumer, set(), timeout=0.2) == {}
            # Active at the call, paused (removed) while it waits for records, as table
            # recovery does; then records arrive. Unpatched, aiokafka reads the emptied
            # set as "every partition" and hands them over (Faust then drops them).
            active = {tp}
            call = asyncio.ensure_future(
                AIOKafkaConsumerThread._fetch_records(thread, consumer, active, timeout=3.0))
            await asyncio.sleep(0.2)
            active.clear()
            await asyncio.get_running_loop().run_in_executor(None, _topic_append, broker, topic, 10)
            assert await call == {}
            assert await consumer.position(tp) == 1, "records of a paused partition were handed over"
        finally:
            await consumer.stop()

    asyncio.run(scenario())


def _topic_append(broker: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=0)
    for i in range(n):
        producer.send(topic, key=b"k", value=b"%d" % i, partition=0)
    producer.flush()
    producer.close()


class _RecordingConsumer:
    """Records what Faust's recovery does to the consumer, and in which order."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.flow_active = True

    def stop_flow(self) -> None:
        self.flow_active = False
        self.events.append("stop_flow")

    def resume_flow(self) -> None:
        self.flow_active = True
        self.events.append("resume_flow")

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("transactions", 0)}

    def resume_partitions(self, tps: object) -> None:
        self.events.append("resume_partitions")

    async def perform_seek(self) -> None:
        self.events.append("seek started")
        await asyncio.sleep(0)  # a broker round trip: the fetcher runs meanwhile
        self.events.append("seek done")


def test_recovery_seeks_stream_partitions_before_anything_can_fetch_them():
    """Faust resumed the stream partitions, then awaited their seek: a window to fetch them from the wrong place."""
    from faust.tables.recovery import Recovery

    from stream.patches import seek_before_resuming_streams

    seek_before_resuming_streams()
    events: list[str] = []
    consumer = _RecordingConsumer(events)

    async def _noop(*_: object, **__: object) -> None:
        return None

    async def _wait(coro: object, timeout: float | None = None) -> None:
        await coro  # type: ignore[misc]

    signal = SimpleNamespace(send=_noop)
    app = SimpleNamespace(consumer=consumer, on_rebalance_complete=signal, consumer_generation_id=3,
                          conf=SimpleNamespace(broker_request_timeout=5.0),
                          flow_control=SimpleNamespace(resume=lambda: None), _fetcher=SimpleNamespace(maybe_start=_noop),
                          assignor=SimpleNamespace(assigned_standbys=set), on_rebalance_end=lambda: None)
    recovery = SimpleNamespace(
        app=app, log=SimpleNamespace(info=lambda *a: None, dev=lambda *a: None, warning=lambda *a: None),
        tables=SimpleNamespace(values=list, on_actives_ready=lambda: None, on_standbys_ready=lambda: None),
        _set_recovery_ended=lambda: None, _is_changelog_tp=lambda tp: False, _wait=_wait,
        completed=SimpleNamespace(set=lambda: None), actives_for_table={}, standbys_for_table={},
    )
    asyncio.run(Recovery.on_recovery_completed(recovery, 3))
    # A resumed partition is fetched at once: only once it stands at its committed offset.
    assert events.index("seek done") < events.index("resume_partitions"), events
    # No flow stop: a fetch in flight would hand over records that Faust then drops.
    assert "stop_flow" not in events, events
