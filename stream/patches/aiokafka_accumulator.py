"""Records appended straight to aiokafka's open batches, and a micro-batch's batches shipped without their linger.

Symptom:
    aiokafka's ``send`` is a coroutine per record (metadata check, serializer,
    partitioner, a future per record): paid again for each of the ~800 records a
    256-transaction micro-batch makes, when the partition is already known and
    the values are bytes. :class:`Appender` appends a run of one partition's
    records to the partition's open ``MessageBatch``, the call ``send`` ends in,
    and the caller waits for the batch's own future. And the producer holds each
    batch for its linger although the micro-batch waits for delivery before it
    takes the next: :func:`ship_now` ends the linger of the batches of the
    topics a micro-batch wrote. aiokafka has no public call for either; on an
    aiokafka without these internals :meth:`Appender.of` returns None (every
    record goes through ``send``) and :func:`ship_now` does nothing (the linger
    applies, which only costs latency). :func:`uses_default_partitioner` tells
    the outbox whether it may compute Kafka's default partition itself. Called
    once per micro-batch and partition, never per record.

Upstream:
    aio-libs/aiokafka#216 ("Allow direct batch access in the Producer") and
    aio-libs/aiokafka#215 (a batch-oriented producer, closed unmerged); the
    public ``create_batch``/``send_batch`` that came of them waits until the
    partition's previous batch has left, a round trip per micro-batch with one
    request in flight per broker (measured slower here). The per-batch
    ``_linger_time`` that :func:`ship_now` clears comes from
    aio-libs/aiokafka#1142 ("Use linger_ms to delay batches").

Test:
    tests/stream/kafka/test_outbox.py::test_the_last_send_of_a_micro_batch_does_not_wait_out_the_producers_linger
    tests/stream/kafka/test_outbox.py::test_records_appended_straight_to_aiokafkas_batches_arrive_in_order_with_their_offsets
    tests/stream/kafka/test_outbox.py::test_a_run_that_fills_its_batch_goes_on_through_send_and_back_to_direct_appends
    tests/stream/kafka/test_outbox.py::test_a_failed_aiokafka_batch_fails_the_micro_batch_delivery

Versions:
    Written for aiokafka 0.14.0 (``AIOKafkaProducer._message_accumulator``,
    ``_max_request_size``, ``_partitioner``, ``_key_serializer``,
    ``_value_serializer``; ``MessageAccumulator._batches``, ``_append_batch``,
    ``create_builder``, ``_closed``, ``_exception``, ``_waiter_future``;
    ``MessageBatch._builder``, ``_linger_time``, ``future``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

__all__ = ["WRITTEN_FOR", "Appender", "ship_now", "uses_default_partitioner"]

WRITTEN_FOR = {"aiokafka": "0.14.0"}

Header = tuple[str, bytes]
_Row = tuple[bytes | None, bytes | None, Sequence[Header]]  # key, value, headers


def uses_default_partitioner(producer: Any) -> bool:
    """True if ``producer`` partitions keyed records with Kafka's default partitioner (murmur2 of the key)."""
    return isinstance(getattr(producer, "_partitioner", None), DefaultPartitioner)


class Appender:
    """Appends records to their partition's open aiokafka batch: the end of ``AIOKafkaProducer.send``, minus its costs.

    ``send`` is a coroutine per record that checks metadata, serializes,
    partitions, then appends to the partition's open ``MessageBatch`` and
    gives the record a future that the batch's produce response resolves.
    Here the partition is already known, the values are bytes, and the caller
    waits for the batch's own future instead (it resolves with the batch's
    base offset, or fails, exactly when the record futures would). A record
    that does not fit (a full batch, or one too large for a request) is left
    to ``send``, which waits for room or raises as usual. It takes a run of
    one partition's records at a time: the partition's batch is looked up
    once, not per record.
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.accumulator = producer._message_accumulator
        self.max_request_size = producer._max_request_size
        self._tps: dict[tuple[str, int], TopicPartition] = {}

    @classmethod
    def of(cls, producer: Any) -> Appender | None:
        """An appender for ``producer``, or None if it is not an aiokafka producer with these internals."""
        accumulator = getattr(producer, "_message_accumulator", None)
        if (not isinstance(getattr(accumulator, "_batches", None), dict)
                or not all(hasattr(accumulator, name)
                           for name in ("create_builder", "_append_batch", "_closed", "_exception"))
                or not hasattr(producer, "_max_request_size") or not hasattr(producer, "partitions_for")
                or getattr(producer, "_key_serializer", None) is not None
                or getattr(producer, "_value_serializer", None) is not None):
            return None
        return cls(producer)

    def append_run(self, topic: str, partition: int, rows: Sequence[_Row], start: int) -> tuple[Any, int, int]:
        """Append ``rows[start:]`` in order to the partition's open batch, up to the first that does not fit.

        Returns ``(batch, last relative offset written there, rows appended)``;
        the row where it stopped (a full batch, one near the request size
        limit, or neither key nor value) is left to ``send``, which waits for
        room or raises the right error.
        """
        accumulator = self.accumulator
        if accumulator._closed or accumulator._exception is not None:
            return None, -1, 0
        room = self.max_request_size - 1024  # near the limit, send() measures exactly
        batch: Any = None
        offset = -1
        i, end = start, len(rows)
        while i < end:
            key, value, headers = rows[i]
            size = len(key or b"") + len(value or b"")
            if headers:
                size += sum(len(k) + len(v) for k, v in headers)
            if size > room or (key is None and value is None):
                break
            if batch is None:  # looked up (or opened) once a record is known to be appendable
                tp = self._tps.get((topic, partition))
                if tp is None:
                    tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
                queued = accumulator._batches.get(tp)
                batch = queued[-1] if queued else accumulator._append_batch(accumulator.create_builder(), tp)
            meta = batch._builder.append(timestamp=None, key=key, value=value, headers=list(headers))
            if meta is None:  # full: send() waits for the sender to take it and starts a new one
                break
            offset = meta.offset
            i += 1
        return batch, offset, i - start


def ship_now(producer: Any, topics: set[str]) -> None:
    """Make the producer send its open batches for ``topics`` without waiting out their linger.

    A batch whose linger is over is ready: the sender takes it on its next
    pass (after the broker's in-flight request, if any), and until then it
    still accepts records. (Closing the batches, as aiokafka's
    ``flush_for_commit`` does, would also make them ready, but a record for
    the same partition would then wait until the sender has taken the closed
    batch: a round trip for Faust's own sends.) aiokafka has no public call
    for this; on a version without these internals the linger applies, which
    only costs latency.
    """
    accumulator = getattr(producer, "_message_accumulator", None)
    batches = getattr(accumulator, "_batches", None)
    waiter = getattr(accumulator, "_waiter_future", None)
    if batches is None or waiter is None:
        return
    for tp, queued in batches.items():
        if tp.topic in topics:
            for batch in queued:
                batch._linger_time = 0.0
    if not waiter.done():
        waiter.set_result(None)  # wake the sender, which sleeps until data comes or a linger ends
