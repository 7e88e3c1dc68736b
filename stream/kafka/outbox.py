"""Everything one micro-batch produces, handed to aiokafka together.

Faust sends each output and each table changelog record through its own
producer buffer and ``FutureMessage`` machinery, costly per record; a
micro-batch of 256 transactions makes some 800 (a score, a history, a
feature vector each, and the alerts). :class:`Outbox` collects them and
appends them straight to aiokafka's producer (an order of magnitude cheaper
each: docs/benchmark-history.md), whose sender
ships everything accumulated per partition in one request.
:meth:`Outbox.send` returns the delivery of the whole micro-batch as one
future, so the caller acks its source offsets only once everything the batch
caused is durable (at-least-once without relying on a flush before Faust's
commit).

Where a record's partition is known (table changelogs, and keyed outputs
under Kafka's default partitioner, computed for the whole micro-batch) it is
appended straight to the partition's open aiokafka batch, the call aiokafka's
own ``send`` ends in, without ``send``'s coroutine and without a future per
record: the micro-batch waits for the future of each aiokafka batch it wrote
to, which resolves when the broker acknowledges that batch (or fails, after
aiokafka's retries). Everything else, including a record for a full batch
and any aiokafka without those internals, goes through ``send``. (The code
that touches aiokafka's internals is in
:mod:`stream.patches.aiokafka_accumulator`.)

(Handing aiokafka ready-made ``BatchBuilder`` batches was tried and measured
slower: ``send_batch`` waits until the partition's previous batch has left,
which with one request in flight per broker is a round trip per micro-batch.)

The micro-batch's last :meth:`Outbox.send` (``last=True``) ends the linger
of the producer's open batches for the topics the micro-batch wrote, so its
sender ships them at once instead of after ``FRAUDSTREAM_PRODUCER_LINGER_S``:
the agent waits for their delivery before it takes the next micro-batch, so
the linger was pure latency. (Another agent's records already in one of those
batches leave with it; batches of other topics keep their linger.)

Table writes (:meth:`Outbox.put` / :meth:`Outbox.delete`) go to the table's
changelog partition, exactly the bytes Faust's own ``table[key] = value``
would send (raw key, the value in the table's codec, ``None`` tombstone), so
Faust's standard recovery rebuilds the table. The local store is written once the changelog
records are in the producer's queue, not before: another agent that reads
the new value (the learn agent joining a label) and rewrites the key through
Faust's producer then queues its record behind this one, never ahead. Once
the broker acknowledges the batch the store learns its persisted offset, as
Faust does, so a RocksDB worker restarting reads only the changelog tail.

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

from aiokafka.structs import TopicPartition
from faust.types import EventT

from stream.contracts.codec import dumps
from stream.kafka.partitioner import default_partitions
from stream.kafka.state import store_mapping, writing_for
from stream.patches.aiokafka_accumulator import Appender, ship_now, uses_default_partitioner

__all__ = ["Outbox"]

Header = tuple[str, bytes]
_Row = tuple[bytes | None, bytes | None, Sequence[Header]]  # key, value, headers


class Outbox:
    """Records for one micro-batch, produced together by :meth:`flush`."""

    def __init__(self, producer: Any, bulk: bool = True) -> None:
        self.producer = producer  # aiokafka's producer (bulk) or Faust's producer/transaction manager
        self.bulk = bulk
        self._records: dict[tuple[str, int | None], list[_Row]] = (
            defaultdict(list))
        self._tables: dict[str, Any] = {}  # changelog topic -> its table
        self._changelogs: dict[int, tuple[str, Any, Any]] = {}  # id(table) -> (changelog topic, value codec, table)
        self._store_writes: list[tuple[Any, EventT, bytes, Any, bool]] = []
        self._n = 0
        self._sent_topics: set[str] = set()  # since the micro-batch's last send
        # Keyed records without a partition get Kafka's default partition, computed for the whole
        # micro-batch (stream/kafka/partitioner.py), where the producer would have used that partitioner.
        self._by_key = bulk and uses_default_partitioner(producer)
        self._appender = Appender.of(producer) if bulk else None

    def pending(self) -> int:
        """Records waiting for :meth:`flush`."""
        return self._n

    def discard(self) -> None:
        """Drop everything queued (the batch failed; nothing of it may reach Kafka or the stores)."""
        self._records = defaultdict(list)
        self._store_writes = []
        self._n = 0
        self._sent_topics = set()

    def add(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
            headers: Sequence[Header] = ()) -> None:
        """Queue one record; ``partition=None`` picks it from the key like Kafka's default partitioner."""
        self._records[(topic, partition)].append((key, value, headers))
        self._n += 1

    def add_all(self, topic: str, partition: int | None, rows: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        """:meth:`add` of each ``(key, value)`` in ``rows``, without headers (a micro-batch's scores at once)."""
        self._records[(topic, partition)].extend([(key, value, ()) for key, value in rows])
        self._n += len(rows)

    def put(self, table: Any, event: EventT, key: bytes, value: Any, *, now: bool = False) -> None:
        """``table[key] = value`` on behalf of ``event`` (its partition), changelog record included.

        The store takes the value when the batch is sent (:meth:`send`), or
        at once with ``now``: for a table another agent reads while this
        batch is still being handed to the producer (a parked label the score
        agent must find).
        """
        self.put_all(table, [(event, key, value)], now=now)

    def put_all(self, table: Any, writes: Sequence[tuple[EventT, bytes, Any]], *, now: bool = False) -> None:
        """:meth:`put` of each ``(event, key, value)`` in ``writes``, in order (one lookup of the table's changelog)."""
        if not self.bulk:
            for event, key, value in writes:
                with writing_for(event):
                    table[key] = value
            return
        store_writes = [(table, event, key, value, False) for event, key, value in writes]
        if now:
            self._changelog_of(table)  # registers the table's store
            self._write_stores(store_writes)
        else:
            self._store_writes.extend(store_writes)
        topic, codec = self._changelog_of(table)
        encode = dumps if codec is None else codec.dumps
        records = self._records
        for event, key, value in writes:
            records[(topic, event.message.partition)].append((key, encode(value), ()))
        self._n += len(writes)

    def delete(self, table: Any, event: EventT, key: bytes, *, now: bool = False) -> None:
        """``del table[key]`` on behalf of ``event``: a tombstone on the changelog (``now``: as :meth:`put`)."""
        if not self.bulk:
            with writing_for(event):
                del table[key]
            return
        write = (table, event, key, None, True)
        if now:
            self._changelog_of(table)
            self._write_stores([write])
        else:
            self._store_writes.append(write)
        self.add(self._changelog_of(table)[0], event.message.partition, key, None)

    def _changelog_of(self, table: Any) -> tuple[str, Any]:
        """``table``'s changelog topic and value codec (None: JSON), looked up once per table (two writes a transaction)."""
        known = self._changelogs.get(id(table))
        if known is None or known[2] is not table:  # (an id is only unique among live objects)
            topic = table.changelog_topic.get_topic_name()
            codec = table.value_serializer  # "json", or a codec object of the table's own (the history's)
            known = self._changelogs[id(table)] = (topic, None if isinstance(codec, str) else codec, table)
            self._tables[topic] = table
        return known[0], known[1]

    async def flush(self) -> None:
        """Produce everything queued and wait until the broker has it all."""
        await (await self.send(last=True))

    async def send(self, *, last: bool = False) -> asyncio.Future[Any]:
        """Hand everything queued to the producer; returns the future of its delivery.

        Once this returns, the records are in the producer's queue ahead of any
        record sent later, and the local stores hold the new values (the same
        order as Faust's own table writes: store first, changelog on its way).
        The future fails if any batch cannot be delivered. ``last``: nothing
        more is coming for this micro-batch, so the producer ships what it
        holds now rather than after its linger.
        """
        if not self._n:
            if last and self.bulk:
                self._ship()  # what earlier sends of this micro-batch left lingering
            return asyncio.gather()  # already done
        records, self._records, self._n = self._records, defaultdict(list), 0
        store_writes, self._store_writes = self._store_writes, []
        if not self.bulk:
            futures = [await self.producer.send(topic, key, value, partition=partition, timestamp=None,
                                                headers=list(headers) or None)
                       for (topic, partition), rows in records.items() for key, value, headers in rows]
            return asyncio.gather(*futures)
        send = self.producer.send
        sent: list[tuple[str, asyncio.Future[Any]]] = []  # records that went through send()
        appended: dict[int, _Appended] = {}  # aiokafka batches written to directly, by id
        appender = self._appender
        for (topic, partition), rows in records.items():
            changelog = topic if topic in self._tables else ""
            chosen = await self._default_partitions(topic, rows) if partition is None and self._by_key else None
            direct = appender
            # partitions_for waits for metadata, as send does; send() raises for a partition the topic lacks.
            if (direct is not None and partition is not None
                    and partition not in await self.producer.partitions_for(topic)):
                direct = None
            if chosen is None:
                runs: list[tuple[int | None, list[_Row]]] = [(partition, rows)]
            else:  # one run per chosen partition, each in the order queued (Kafka orders per partition)
                by_chosen: dict[int | None, list[_Row]] = {}
                for p, row in zip(chosen, rows, strict=True):
                    by_chosen.setdefault(p, []).append(row)
                runs = list(by_chosen.items())
            for p, run in runs:
                i = 0
                while i < len(run):
                    if direct is not None and p is not None:
                        batch, offset, n = direct.append_run(topic, p, run, i)
                        if n:
                            mark = appended.get(id(batch))
                            if mark is None:
                                appended[id(batch)] = _Appended(batch, changelog, offset)
                            else:
                                mark.last_offset = offset  # relative offsets only grow within a batch
                            i += n
                            if i == len(run):
                                break
                    # What the direct path cannot take (a full batch, a record near the size limit, no
                    # partition): aiokafka's send, which waits for room or raises as usual. It appends to
                    # the partition's open batch and returns at once; its sender ships whatever has
                    # accumulated per partition in one request. partition=None (no key, or another
                    # partitioner): the producer's partitioner picks.
                    key, value, headers = run[i]
                    fut = await send(topic, value, key=key, partition=p, headers=list(headers) or None)
                    sent.append((changelog, fut))
                    i += 1
        self._write_stores(store_writes)
        self._sent_topics.update(topic for topic, _ in records)
        if last:
            self._ship()
        return asyncio.ensure_future(self._delivered(sent, list(appended.values())))

    async def _default_partitions(self, topic: str, rows: list[_Row]
                                  ) -> list[int | None]:
        """The partition aiokafka's default partitioner would give each keyed row (None for a row without a key)."""
        keyed = [(i, key) for i, (key, _, _) in enumerate(rows) if key is not None]
        chosen: list[int | None] = [None] * len(rows)
        if keyed:
            partitions = sorted(await self.producer.partitions_for(topic))  # waits for metadata, as send does
            for (i, _), p in zip(keyed, default_partitions([key for _, key in keyed], partitions), strict=True):
                chosen[i] = p
        return chosen

    def _write_stores(self, store_writes: list[tuple[Any, EventT, bytes, Any, bool]]) -> None:
        """The local stores take the writes (their changelog records are queued separately)."""
        # A RocksDB store picks its per-partition database from the current event: one
        # current event per source partition, not one per write (a key always comes from
        # the same partition, so each key's writes keep their order).
        by_partition: dict[int, list[tuple[Any, EventT, bytes, Any, bool]]] = defaultdict(list)
        for write in store_writes:
            by_partition[write[1].message.partition].append(write)
        stores = {id(table): store_mapping(table.data) for table in self._tables.values()}  # every table written
        for writes in by_partition.values():
            with writing_for(writes[0][1]):
                for table, _, key, value, delete in writes:
                    if delete:
                        stores[id(table)].pop(key, None)
                    else:
                        stores[id(table)][key] = value

    def _ship(self) -> None:
        """End the linger of what this micro-batch's sends left in the producer; the next batch starts afresh."""
        ship_now(self.producer, self._sent_topics)
        self._sent_topics = set()

    async def _delivered(self, sent: list[tuple[str, asyncio.Future[Any]]], appended: list[_Appended]) -> None:
        # Awaited one by one, not gathered: a produce response resolves a whole batch of these
        # futures at once, so this task wakes about once per response, and no future carries a
        # callback (asyncio.gather adds one to each and runs it when the future resolves, once per
        # record). The first failure raises, as gather's would.
        last: dict[tuple[str, int], int] = {}
        try:
            for changelog, fut in sent:
                meta = (await fut) if not fut.done() else fut.result()
                if changelog:
                    tp = (changelog, meta.partition)
                    last[tp] = max(last.get(tp, -1), meta.offset)
            for mark in appended:
                fut = mark.batch.future
                meta = (await fut) if not fut.done() else fut.result()  # the batch's base offset
                if mark.changelog:
                    tp = (mark.changelog, meta.partition)
                    last[tp] = max(last.get(tp, -1), meta.offset + mark.last_offset)
        except BaseException:
            for fut in [fut for _, fut in sent] + [mark.batch.future for mark in appended]:  # the batch failed: mark the other failures seen (no "never retrieved" noise)
                if not fut.done():
                    fut.add_done_callback(_seen)  # failing later, after this raised
                elif not fut.cancelled():
                    fut.exception()
            raise
        for (topic, partition), offset in last.items():
            self._tables[topic].data.set_persisted_offset(TopicPartition(topic, partition), offset)


def _seen(fut: asyncio.Future[Any]) -> None:
    """Retrieve a finished future's exception, if any, so asyncio does not log it as never retrieved."""
    if not fut.cancelled():
        fut.exception()


class _Appended:
    """An aiokafka batch this micro-batch appended to directly, and the last relative offset it wrote there."""

    __slots__ = ("batch", "changelog", "last_offset")

    def __init__(self, batch: Any, changelog: str, last_offset: int) -> None:
        self.batch = batch
        self.changelog = changelog  # the table changelog's topic, or "" for an output
        self.last_offset = last_offset
