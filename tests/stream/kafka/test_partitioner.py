"""The micro-batch partitioner equals Kafka's default partitioner (aiokafka's murmur2) key for key."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from stream.kafka.outbox import Outbox
from stream.kafka.partitioner import default_partitions, murmur2_many


def test_murmur2_equals_aiokafkas_for_every_length_and_byte() -> None:
    rng = random.Random(3)
    keys = [bytes(rng.randrange(256) for _ in range(length)) for length in range(65) for _ in range(40)]
    keys += [b"", b"\x00", b"\xff\xff\xff\xff", "carte-é-ü".encode()]  # sign bits, non-ASCII
    assert murmur2_many(keys).tolist() == [murmur2(k) for k in keys]


@pytest.mark.parametrize("count", [1, 3, 4, 12])
def test_partitions_equal_the_default_partitioners(count: int) -> None:
    rng = random.Random(count)
    keys = [f"card-{rng.randrange(10**9)}".encode() for _ in range(2000)]
    partitions = list(range(count))
    assert default_partitions(keys, partitions) == [DefaultPartitioner()(k, partitions, partitions) for k in keys]


class RecordingProducer:
    """aiokafka's producer as the outbox uses it, noting the partition every record was given."""

    def __init__(self, partitioner: Any) -> None:
        self._partitioner = partitioner
        self.sent: list[tuple[str, bytes | None, int | None]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3, 4}

    async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None,
                   headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, key, partition))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(SimpleNamespace(partition=partition, offset=0))
        return fut


def _send(producer: RecordingProducer) -> list[tuple[str, bytes | None, int | None]]:
    async def run() -> None:
        outbox = Outbox(producer)
        for card in range(50):
            outbox.add("scores", None, f"card-{card}".encode(), b"{}")
        outbox.add("scores", None, None, b"{}")  # no key: the producer picks
        outbox.add("changelog", 2, b"card-1", b"{}")  # a partition given stays
        await (await outbox.send(last=True))

    asyncio.run(run())
    return producer.sent


def test_outbox_gives_keyed_records_the_default_partition() -> None:
    sent = _send(RecordingProducer(DefaultPartitioner()))
    partitions = [0, 1, 2, 3, 4]
    keyed = [(key, p) for topic, key, p in sent if topic == "scores" and key is not None]
    assert len(keyed) == 50 and all(p == DefaultPartitioner()(key, partitions, partitions) for key, p in keyed)
    assert ("scores", None, None) in sent and ("changelog", b"card-1", 2) in sent


def test_outbox_leaves_another_partitioner_its_choice() -> None:
    sent = _send(RecordingProducer(lambda key, all_partitions, available: 0))
    assert all(p is None for topic, _, p in sent if topic == "scores")
