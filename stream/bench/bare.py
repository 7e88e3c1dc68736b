"""The limit: consume, decode, encode, produce with plain aiokafka, nothing else.

Example:
    >>> import asyncio
    >>> from stream.broker import EmbeddedBroker
    >>> from kafka import KafkaProducer
    >>> with EmbeddedBroker() as b:
    ...     p = KafkaProducer(bootstrap_servers=b.bootstrap_servers)
    ...     for i in range(50):
    ...         _ = p.send("doc-in", b'{"i": %d}' % i, partition=0)
    ...     p.flush(); p.close()
    ...     result = asyncio.run(bare_loop(b.bootstrap_servers, "doc-in", "doc-out", 50))
    >>> result["events"]
    50
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

__all__ = ["bare_loop"]


async def bare_loop(bootstrap: str, source: str, sink: str, n: int, timeout_s: float = 300.0) -> dict[str, Any]:
    """Process ``n`` records from ``source`` to ``sink``; return events and events/s.

    The clock starts at the first record received, so connection set-up is
    not counted (as for the Faust runs).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=10, max_partition_fetch_bytes=4 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        partitions = consumer.partitions_for_topic(source) or set()
        while not partitions:
            await asyncio.sleep(0.1)
            partitions = consumer.partitions_for_topic(source) or set()
        tps = [TopicPartition(source, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        done = 0
        started: float | None = None
        deadline = time.monotonic() + timeout_s
        while done < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if batch and started is None:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value)
                    value["seen"] = True
                    await producer.send(sink, json.dumps(value).encode(), key=record.key)
                    done += 1
        await producer.flush()
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
        await producer.stop()
    return {"events": done, "seconds": elapsed, "events_per_s": done / elapsed if elapsed else 0.0}
