"""Outbox: store writes happen under their own event's partition, in order per key.

The broker tests (test_recovery, test_scoring) run the outbox end to end; this
one checks what a RocksDB store depends on and a memory store cannot show:
the current event while each write reaches the store.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.streams import _current_event

from stream.kafka.outbox import Outbox


class RecordingStore(dict):
    """A store that notes which partition's event was current at every write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, Any, int]] = []

    def _partition(self) -> int:
        ref = _current_event.get(None)
        return ref().message.partition

    def __setitem__(self, key: bytes, value: Any) -> None:
        self.writes.append((key, value, self._partition()))
        super().__setitem__(key, value)

    def pop(self, key: bytes, default: Any = None) -> Any:
        self.writes.append((key, None, self._partition()))
        return super().pop(key, default)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass


class Producer:
    async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None,
                   headers: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(SimpleNamespace(partition=partition, offset=0))
        return fut


class Event:
    """What the outbox reads of a Faust event (weak-referenceable, as Faust's events are)."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def event(partition: int) -> Event:
    return Event(partition)


def table(name: str) -> Any:
    return SimpleNamespace(data=RecordingStore(), changelog_topic=SimpleNamespace(get_topic_name=lambda: name),
                           value_serializer="json")


def test_each_store_write_sees_its_own_partition_and_keys_keep_their_order():
    history, features = table("history-changelog"), table("features-changelog")
    e0, e1, e2 = event(0), event(1), event(2)
    outbox = Outbox(Producer(), bulk=True)
    # Interleaved partitions, a key written twice and deleted, another table in between.
    outbox.put(history, e1, b"card-a", [1])
    outbox.put(history, e0, b"card-b", [2])
    outbox.put(features, e1, b"tx-1", {"x": 1})
    outbox.put(history, e1, b"card-a", [1, 3])
    outbox.delete(features, e1, b"tx-1")
    outbox.put(history, e2, b"card-c", [4])

    async def run() -> None:
        await outbox.flush()

    asyncio.run(run())
    partition_of = {b"card-a": 1, b"card-b": 0, b"card-c": 2, b"tx-1": 1}
    for store in (history.data, features.data):
        assert all(partition == partition_of[key] for key, _, partition in store.writes), store.writes
    assert [v for k, v, _ in history.data.writes if k == b"card-a"] == [[1], [1, 3]]
    assert [v for _, v, _ in features.data.writes] == [{"x": 1}, None]
    assert history.data == {b"card-a": [1, 3], b"card-b": [2], b"card-c": [4]} and features.data == {}
    assert _current_event.get(None) is None  # nothing left current after the batch


def test_changelog_values_are_in_the_tables_codec():
    """JSON for the plain tables; the history table's own bytes for the history (what Faust's recovery decodes)."""
    from models.history import append, new_history
    from models.history_codec import decode
    from stream.contracts.records import Transaction
    from stream.kafka.state import HistoryCodec

    sent: dict[str, bytes | None] = {}

    class Recording(Producer):
        async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None,
                       headers: Any) -> asyncio.Future[Any]:
            sent[topic] = value
            return await super().send(topic, value, key, partition, headers)

    history, features = table("history-changelog"), table("features-changelog")
    history.value_serializer = HistoryCodec()
    h = append(new_history(), Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos"), 32)
    outbox = Outbox(Recording(), bulk=True)
    outbox.put(history, event(0), b"c1", h)
    outbox.put(features, event(0), b"t1", {"x": 1})
    asyncio.run(outbox.flush())
    assert decode(sent["history-changelog"]) == h and history.data[b"c1"] is h
    assert sent["features-changelog"] == b'{"x":1}'



def test_writes_and_records_given_together_go_out_as_one_at_a_time():
    """put_all / add_all (the score agent's micro-batch calls) send and store what put / add would, in order."""
    def run(together: bool) -> tuple[list[tuple[Any, ...]], list[tuple[bytes, Any, int]]]:
        sent: list[tuple[Any, ...]] = []

        class Recording(Producer):
            async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None,
                           headers: Any) -> asyncio.Future[Any]:
                sent.append((topic, partition, key, value, headers))
                return await super().send(topic, value, key, partition, headers)

        history = table("history-changelog")
        writes = [(event(i % 3), f"card-{i % 5}".encode(), [i]) for i in range(12)]
        rows = [(f"card-{i}".encode(), f"{{{i}}}".encode()) for i in range(7)]
        outbox = Outbox(Recording(), bulk=True)
        if together:
            outbox.put_all(history, writes)
            outbox.add_all("scores", None, rows)
            outbox.add_all("scores", 2, rows[:2])
        else:
            for e, key, value in writes:
                outbox.put(history, e, key, value)
            for key, value in rows:
                outbox.add("scores", None, key, value)
            for key, value in rows[:2]:
                outbox.add("scores", 2, key, value)
        assert outbox.pending() == 12 + 7 + 2
        asyncio.run(outbox.flush())
        return sent, history.data.writes

    assert run(together=True) == run(together=False)


class Later(Producer):
    """Hands out futures the test resolves afterwards, as a broker's produce responses would."""

    def __init__(self) -> None:
        self.futures: list[tuple[str, int | None, asyncio.Future[Any]]] = []

    async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None,
                   headers: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        self.futures.append((topic, partition, fut))
        return fut


def _put_three(outbox: Outbox, history: Any) -> None:
    outbox.put(history, event(0), b"card-a", [1])
    outbox.add("scores", None, b"card-a", b"{}")
    outbox.put(history, event(0), b"card-b", [2])


def test_delivery_lands_when_every_record_has_and_records_the_changelog_offsets():
    persisted: dict[Any, int] = {}
    history = table("history-changelog")
    history.data.set_persisted_offset = lambda tp, offset: persisted.__setitem__(tp, offset)
    producer = Later()
    outbox = Outbox(producer, bulk=True)
    _put_three(outbox, history)

    async def run() -> None:
        delivery = await outbox.send(last=True)
        changelog = [fut for topic, _, fut in producer.futures if topic == "history-changelog"]
        (score,) = [fut for topic, _, fut in producer.futures if topic == "scores"]
        score.set_result(SimpleNamespace(partition=3, offset=7))
        changelog[0].set_result(SimpleNamespace(partition=0, offset=10))
        await asyncio.sleep(0.01)
        assert not delivery.done(), "one record is still on its way"
        changelog[1].set_result(SimpleNamespace(partition=0, offset=11))
        await asyncio.wait_for(delivery, 1.0)

    asyncio.run(run())
    assert {(tp.topic, tp.partition): o for tp, o in persisted.items()} == {("history-changelog", 0): 11}


def test_one_failed_record_fails_the_batch_delivery():
    history = table("history-changelog")
    producer = Later()
    outbox = Outbox(producer, bulk=True)
    _put_three(outbox, history)

    async def run() -> None:
        delivery = await outbox.send(last=True)
        producer.futures[0][2].set_result(SimpleNamespace(partition=0, offset=0))
        producer.futures[1][2].set_exception(ConnectionError("broker gone"))
        producer.futures[2][2].set_exception(ConnectionError("broker gone"))
        with pytest.raises(ConnectionError, match="broker gone"):
            await asyncio.wait_for(delivery, 1.0)
        assert all(f.done() for _, _, f in producer.futures)

    asyncio.run(run())


@pytest.mark.broker
def test_the_last_send_of_a_micro_batch_does_not_wait_out_the_producers_linger(broker):
    """The agent waits for a batch's delivery before its next batch: lingering there is pure latency.

    Ordering, not timing: with a ten-minute linger, a micro-batch's last send is delivered while an earlier
    send of another micro-batch to another topic, not its last, is still lingering (what the linger does
    otherwise), so the last send did not wait out the linger, whatever the machine's speed.
    """
    from aiokafka import AIOKafkaProducer

    suffix = uuid.uuid4().hex[:8]
    lingering_topic, last_topic = f"outbox-linger-{suffix}", f"outbox-last-{suffix}"
    _create_topics(broker, lingering_topic, last_topic, partitions=2)

    async def run() -> bool:
        producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=600_000)
        await producer.start()
        try:
            await (await Outbox(producer, bulk=True).send(last=True))  # nothing queued: done at once
            earlier = Outbox(producer, bulk=True)
            for i in range(20):
                earlier.add(lingering_topic, None, b"k%d" % i, b"v%d" % i)
            lingering = await earlier.send(last=False)
            final = Outbox(producer, bulk=True)
            for i in range(20):
                final.add(last_topic, None, b"k%d" % i, b"v%d" % i)
            # Only a guard against hanging for the ten minutes: the order below is the assertion.
            await asyncio.wait_for(await final.send(last=True), 120)
            still_lingering = not lingering.done()
            # The earlier micro-batch's own last send ends its linger too (else the stop waits it out).
            await asyncio.wait_for(await earlier.send(last=True), 120)
            await asyncio.wait_for(lingering, 120)
        finally:
            await producer.stop()
        return still_lingering

    assert asyncio.run(run()), "the earlier, not-last send was delivered too: nothing here shows the linger"


def _create_topics(broker: str, *names: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        admin.close()


async def _counting_producer(broker: str, sends: list[str], **config: Any) -> Any:
    """A started aiokafka producer whose send() calls are noted (the records that did not go straight to a batch)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker, **config)
    await producer.start()
    original = producer.send

    async def send(topic: str, *args: Any, **kwargs: Any) -> Any:
        sends.append(topic)
        return await original(topic, *args, **kwargs)

    producer.send = send  # type: ignore[method-assign]
    return producer


def _two_partition_topics(broker: str, prefix: str) -> tuple[str, str, Any, dict[tuple[str, int], int]]:
    """A changelog and an output topic of two partitions, a table on the changelog, and where its persisted offsets land."""
    suffix = uuid.uuid4().hex[:8]
    changelog, out = f"{prefix}-cl-{suffix}", f"{prefix}-out-{suffix}"
    _create_topics(broker, changelog, out, partitions=2)
    persisted: dict[tuple[str, int], int] = {}
    history = table(changelog)
    history.data.set_persisted_offset = lambda tp, offset: persisted.__setitem__((tp.topic, tp.partition), offset)
    return changelog, out, history, persisted


@pytest.mark.broker
def test_records_appended_straight_to_aiokafkas_batches_arrive_in_order_with_their_offsets(broker):
    from aiokafka.partitioner import DefaultPartitioner

    from tests.support import consume_all

    changelog, out, history, persisted = _two_partition_topics(broker, "outbox")
    sends: list[str] = []

    async def run() -> None:
        producer = await _counting_producer(broker, sends, linger_ms=5)
        try:
            outbox = Outbox(producer, bulk=True)
            for batch in range(2):  # the second micro-batch appends behind the first's aiokafka batches
                for i in range(300):
                    outbox.put(history, event(i % 2), b"card-%d" % i, {"b": batch, "i": i})
                    outbox.add(out, None, b"card-%d" % i, b"%d-%d" % (batch, i))
                await (await outbox.send(last=True))
        finally:
            await producer.stop()

    asyncio.run(run())
    assert sends == [], f"records with a known partition went through send(): {sorted(set(sends))}"
    logged = consume_all(broker, changelog, until=lambda r: len(r) >= 600, decode=False)
    outputs = consume_all(broker, out, until=lambda r: len(r) >= 600, decode=False)
    assert len(logged) == 600 and len(outputs) == 600
    for p in (0, 1):  # each partition holds its records in the order they were queued
        mine = sorted((r for r in logged if r.partition == p), key=lambda r: r.offset)
        assert [(r.key, r.value) for r in mine] == [
            (b"card-%d" % i, b'{"b":%d,"i":%d}' % (b, i)) for b in range(2) for i in range(p, 300, 2)]
        assert persisted[(changelog, p)] == mine[-1].offset  # what a RocksDB store reads from on restart
    partitioner = DefaultPartitioner()
    for r in outputs:
        assert r.partition == partitioner(r.key, [0, 1], [0, 1])
    by_key = {}
    for r in sorted(outputs, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key, []).append(r.value)
    assert all(values == [b"0-" + k[5:], b"1-" + k[5:]] for k, values in by_key.items())


@pytest.mark.broker
def test_a_run_that_fills_its_batch_goes_on_through_send_and_back_to_direct_appends(broker):
    from tests.support import consume_all

    changelog, out, history, persisted = _two_partition_topics(broker, "outbox-full")
    sends: list[str] = []
    pad = "x" * 300

    async def run() -> None:
        # 4 kB batches: a few records each, so every run of 200 fills several.
        producer = await _counting_producer(broker, sends, linger_ms=5, max_batch_size=4096)
        try:
            outbox = Outbox(producer, bulk=True)
            for i in range(400):
                outbox.put(history, event(i % 2), b"card-%d" % i, {"i": i, "pad": pad})
                outbox.add(out, None, b"card-%d" % i, b"%d" % i + pad.encode())
            await (await outbox.send(last=True))
        finally:
            await producer.stop()

    asyncio.run(run())
    # A full batch sends its next record through send() (which waits for room); the records after it
    # go straight to the new batch again.
    assert 0 < sends.count(changelog) < 200 and 0 < sends.count(out) < 200, (sends.count(changelog), sends.count(out))
    logged = consume_all(broker, changelog, until=lambda r: len(r) >= 400, decode=False)
    outputs = consume_all(broker, out, until=lambda r: len(r) >= 400, decode=False)
    assert len(logged) == 400 and len(outputs) == 400
    for p in (0, 1):
        mine = sorted((r for r in logged if r.partition == p), key=lambda r: r.offset)
        assert [int(orjson.loads(r.value)["i"]) for r in mine] == list(range(p, 400, 2))
        assert persisted[(changelog, p)] == mine[-1].offset
    for p in (0, 1):  # keyed outputs: each partition's records in the order queued
        mine = [int(r.value[:-len(pad)]) for r in sorted(outputs, key=lambda r: r.offset) if r.partition == p]
        assert mine == sorted(mine) and mine


@pytest.mark.broker
def test_a_failed_aiokafka_batch_fails_the_micro_batch_delivery(broker):
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition

    topic = f"outbox-fail-{uuid.uuid4().hex[:8]}"
    _create_topics(broker, topic, partitions=1)
    sends: list[str] = []

    async def run() -> None:
        producer = await _counting_producer(broker, sends, linger_ms=4000)  # the batch waits for the test
        try:
            outbox = Outbox(producer, bulk=True)
            for i in range(10):
                outbox.add(topic, 0, b"k%d" % i, b"v")
            delivery = await outbox.send()
            (batch,) = producer._message_accumulator._batches[TopicPartition(topic, 0)]
            batch.failure(KafkaError("a fatal produce error"))  # what aiokafka's sender does with one
            batch._drain_waiter.exception()  # the sender would have taken the batch first: nobody waits on this
            with pytest.raises(KafkaError, match="a fatal produce error"):
                await asyncio.wait_for(delivery, 2.0)
        finally:
            await producer.stop()

    asyncio.run(run())
    assert sends == []
