"""Everything one micro-batch produces, sent as one record batch per partition.

Faust sends each output and each table changelog record on its own through
its producer buffer, about 50 µs a record here; a micro-batch of 256
transactions makes some 800 (a score, a history, a feature vector each, and
the alerts). :class:`Outbox` collects them and hands aiokafka one
``BatchBuilder`` per topic-partition, then waits for every batch to be
acknowledged by the broker, so the caller acks its source offsets only once
everything the batch caused is durable (at-least-once without relying on a
flush before Faust's commit).

Table writes (:meth:`Outbox.put` / :meth:`Outbox.delete`) go to the table's
changelog partition, exactly the bytes Faust's own ``table[key] = value``
would send (raw key, JSON value, ``None`` tombstone), so Faust's standard
recovery rebuilds the table. The local store is written once the changelog
batch is acknowledged: another agent never reads a value the changelog does
not have yet (the learn agent would otherwise join a label with it and send
its own rewrite of the key, which could overtake this one), and a failed
flush leaves the store as the changelog is. The store then learns its
persisted offset, as Faust does, so a RocksDB worker restarting reads only
the changelog tail.

Under ``exactly_once`` (``bulk=False``) every record goes through Faust's
own path instead, so it joins the transaction of its source partition.

Example:
    >>> outbox = Outbox(producer=None, bulk=True)
    >>> outbox.add("scores", 0, b"card-1", b"{}")
    >>> outbox.pending()
    1
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition
from faust.types import EventT

from stream.codec import dumps
from stream.state import writing_for

__all__ = ["Outbox"]

Header = tuple[str, bytes]


class Outbox:
    """Records for one micro-batch, produced together by :meth:`flush`."""

    def __init__(self, producer: Any, bulk: bool = True, max_batch_bytes: int = 512 * 1024) -> None:
        self.producer = producer  # aiokafka's producer (bulk) or Faust's producer/transaction manager
        self.bulk = bulk
        self.max_batch_bytes = max_batch_bytes
        self._records: dict[tuple[str, int | None], list[tuple[bytes | None, bytes | None, Sequence[Header]]]] = (
            defaultdict(list))
        self._tables: dict[str, Any] = {}
        self._store_writes: list[tuple[Any, EventT, bytes, Any, bool]] = []
        self._partitions: dict[str, int] = {}
        self._n = 0

    def pending(self) -> int:
        """Records waiting for :meth:`flush`."""
        return self._n

    def add(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
            headers: Sequence[Header] = ()) -> None:
        """Queue one record; ``partition=None`` picks it from the key like Kafka's default partitioner."""
        self._records[(topic, partition)].append((key, value, headers))
        self._n += 1

    def put(self, table: Any, event: EventT, key: bytes, value: Any) -> None:
        """``table[key] = value`` on behalf of ``event`` (its partition), changelog record included."""
        if not self.bulk:
            with writing_for(event):
                table[key] = value
            return
        self._store_writes.append((table, event, key, value, False))
        self._changelog(table, event.message.partition, key, dumps(value))

    def delete(self, table: Any, event: EventT, key: bytes) -> None:
        """``del table[key]`` on behalf of ``event``: a tombstone on the changelog."""
        if not self.bulk:
            with writing_for(event):
                del table[key]
            return
        self._store_writes.append((table, event, key, None, True))
        self._changelog(table, event.message.partition, key, None)

    def _changelog(self, table: Any, partition: int, key: bytes, value: bytes | None) -> None:
        topic = table.changelog_topic.get_topic_name()
        self._tables[topic] = table
        self.add(topic, partition, key, value)

    async def flush(self) -> None:
        """Produce everything queued and wait until the broker has it all."""
        if not self._n:
            return
        records, self._records, self._n = self._records, defaultdict(list), 0
        store_writes, self._store_writes = self._store_writes, []
        if not self.bulk:
            futures = [await self.producer.send(topic, key, value, partition=partition, timestamp=None,
                                                headers=list(headers) or None)
                       for (topic, partition), rows in records.items() for key, value, headers in rows]
            await asyncio.gather(*futures)
            return
        by_tp: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Sequence[Header]]]] = defaultdict(list)
        for (topic, partition), rows in records.items():
            if partition is not None:
                by_tp[(topic, partition)].extend(rows)
                continue
            count = await self._partition_count(topic)
            for row in rows:
                p = (murmur2(row[0]) & 0x7FFFFFFF) % count if row[0] is not None else 0
                by_tp[(topic, p)].append(row)
        sent: list[tuple[str, int, int, asyncio.Future[Any]]] = []
        for (topic, partition), rows in by_tp.items():
            for batch, n in self._batches(rows):
                sent.append((topic, partition, n, await self.producer.send_batch(batch, topic, partition=partition)))
        results = await asyncio.gather(*(fut for *_, fut in sent))
        last: dict[tuple[str, int], int] = {}
        for (topic, partition, n, _), meta in zip(sent, results, strict=True):
            last[(topic, partition)] = max(last.get((topic, partition), -1), meta.offset + n - 1)
        for table, event, key, value, delete in store_writes:
            with writing_for(event):  # a RocksDB store picks its per-partition database from the current event
                if delete:
                    table.data.pop(key, None)
                else:
                    table.data[key] = value
        for (topic, partition), offset in last.items():
            table = self._tables.get(topic)
            if table is not None:
                table.data.set_persisted_offset(TopicPartition(topic, partition), offset)

    def _batches(self, rows: list[tuple[bytes | None, bytes | None, Sequence[Header]]]) -> Any:
        from aiokafka.producer.message_accumulator import BatchBuilder

        def new() -> Any:
            # Built directly, not with producer.create_batch(): that one is capped at
            # the producer's max_batch_size (16 KiB with Faust's defaults), which
            # would queue several batches per partition, each waiting for the last.
            return BatchBuilder(self.max_batch_bytes, 0)  # 0: no compression

        batch, n = new(), 0
        for key, value, headers in rows:
            if batch.append(timestamp=None, key=key, value=value, headers=list(headers)) is None:
                if n == 0:
                    raise ValueError(f"a record of {len(value or b'')} bytes does not fit a batch")
                yield batch, n
                batch, n = new(), 0
                batch.append(timestamp=None, key=key, value=value, headers=list(headers))
            n += 1
        if n:
            yield batch, n

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = len(await self.producer.partitions_for(topic))
        return count
