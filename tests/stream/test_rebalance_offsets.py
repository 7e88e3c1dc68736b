"""Records must not be skipped when Faust drops prefetched records in a rebalance (stream/compat.py).

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

from stream.compat import fetch_only_active_partitions

pytestmark = pytest.mark.broker


def _topic_with(broker: str, n: int) -> str:
    topic = f"rebalance-offsets-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=0)
    for i in range(n):
        producer.send(topic, key=b"k", value=b"%d" % i, partition=0)
    producer.flush()
    producer.close()
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
