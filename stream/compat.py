"""Workarounds for the embedded broker, for Faust/aiokafka consumer bugs, and one knob Faust does not expose.

:func:`apply_consumer_fixes` applies every consumer patch below that holds on
any broker; :func:`enable_embedded_broker_compat` the embedded broker's own.
Each patch has a test that fails without it (``tests/stream/``).

**Fetch wait.** Faust builds its consumer with ``fetch_max_wait_ms=1500``
and no setting to change it. Apache Kafka answers a fetch as soon as data
arrives, so that number only bounds idle polls; the embedded broker holds every
fetch for the full wait, which put a median of ~0.4 s (p95 ~0.7 s) between a
record's arrival and its delivery (measured: 1500 ms wait -> p50 395 ms; 10 ms
-> p50 3.6 ms). ``FRAUDSTREAM_FETCH_MAX_WAIT_MS`` sets it (0 keeps Faust's).

**End offsets.**

Tansu (the embedded broker) answers ListOffsets(latest) with the *first*
offset of the partition's last record batch plus one, instead of the offset
after the last record. Fetch responses carry the right high watermark; only
ListOffsets is off. Faust sizes changelog recovery with ListOffsets, so on
this broker a recovering worker would stop short of the last batch, and one
that had been a standby would crash with ``ConsistencyError`` ("persisted
offset ... is higher than the last offset in that topic").

With ``FRAUDSTREAM_EMBEDDED_BROKER_COMPAT=1`` (set by the demo and the tests)
the worker corrects those answers: it reads the last batch of each partition
and reports the offset after its last record. One extra fetch per partition,
only when Faust asks for end offsets (recovery, rebalances), never per event.

**Slow fetches.** Tansu answers a fetch with no records when finding the
offset takes longer than the fetch's max wait, which it does once a partition
holds tens of thousands of small batches; the consumer then never moves.
:func:`wait_longer_when_the_broker_is_slow` (also under the compat flag) lets
the wait grow while that happens.

**Fetch only what Faust asked for.** (A Faust/aiokafka bug, not the broker's:
applied on every broker.) Faust passes aiokafka its *live* set of active
partitions; table recovery pauses partitions (removes them from the set) while
a fetch waits, and aiokafka reads an *empty* set as "every partition". So one
fetch could hand over the records that the consumer had prefetched for paused
stream partitions, moving the position past them, and Faust dropped them
(they are not active). Faust then "seeks back to the committed offset", but
aiokafka's ``seek_to_committed`` does nothing for a partition with no committed
offset, so those records were never processed. That lost the kill -9 test's
transactions: the killed worker had not committed yet, and its successor
prefetched the partitions during recovery. A fast fetch makes it likely
(records already buffered when the set empties: ``FRAUDSTREAM_FETCH_MAX_WAIT_MS=10``
on the embedded broker, any fetch on Apache Kafka). :func:`fetch_only_active_partitions`
gives aiokafka a view of the set that never reads as empty.

**Rejoin after a poll timeout.** (Faust/aiokafka, every broker; aiokafka issue
#1187 describes the same check.) When a worker does not fetch for
``broker_max_poll_interval`` (one huge fetch drained slowly into a full agent
buffer, or an agent stuck on one batch), aiokafka leaves the group, as KIP-62
says. It rejoins only once the application fetches again, but Faust stops
fetching from the revocation until it is assigned partitions again: the worker
sat idle for good, holding nothing, no error logged (found in the 10-minute
soak: the engine stopped after ~78,000 records, Faust's own per-event agent
after 21,000-74,000). :func:`rejoin_after_poll_timeout` counts the end of
Faust's revocation handler, which returns only once every in-flight event is
acked, as that fetch. ``broker_max_poll_records`` (a setting) bounds a fetch so
the timeout is not reached in the first place. (On the embedded broker this
also needed :func:`_leave_group_in_generation_zero`, applied with the
end-offset correction.)

**Resume at once after a full buffer.** (Faust/aiokafka, every broker.) When
an agent's buffer passes its high-water mark Faust stops fetching that
partition (``on_buffer_full``) and resumes it once the agent has taken most of
the buffer (``on_buffer_drop``). Nothing told the fetch loop: with every
partition paused Faust's ``_wait_next_records`` sleeps a whole second, and a
poll already waiting inside aiokafka for the other partitions waits out its
timeout (1 s) or their next fetch. The agent meanwhile emptied its buffer and
sat idle: in the bench ~0.5 s of every ~2.2 s while a backlog waited
(the worker's CPU, sampled each second, alternated between ~100 % and ~50 %).
:func:`resume_fetching_promptly` makes a resume wake both waits.

**Seek before resuming.** (Faust, every broker.) After table recovery Faust
resumed the stream partitions and only then sought them to their committed
offsets; records fetched in between were lost on partitions that changed
hands. :func:`seek_before_resuming_streams` has the details.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = [
    "apply_consumer_fixes",
    "enable_embedded_broker_compat",
    "fetch_only_active_partitions",
    "rejoin_after_poll_timeout",
    "resume_fetching_promptly",
    "seek_before_resuming_streams",
    "set_fetch_max_wait",
    "true_end_offsets",
    "wait_longer_when_the_broker_is_slow",
]

log = logging.getLogger("fraudstream.compat")
_enabled = False


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


def set_fetch_max_wait(ms: int) -> None:
    """Make Faust's consumers use ``fetch_max_wait_ms=ms`` (idempotent; 0 = leave Faust's)."""
    if ms <= 0:
        return
    from faust.transport.drivers import aiokafka as driver

    original = getattr(driver.AIOKafkaConsumerThread, "_fraudstream_original_create", None)
    if original is None:
        original = driver.AIOKafkaConsumerThread._create_worker_consumer
        driver.AIOKafkaConsumerThread._fraudstream_original_create = original  # type: ignore[attr-defined]

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read by AIOKafkaConsumer.start() when it builds its fetcher
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


class _NeverEmpty:
    """A live view of a set for aiokafka's ``fetched_records``: truthy even when the set is empty."""

    __slots__ = ("live",)

    def __init__(self, live: Any) -> None:
        self.live = live

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self.live


def fetch_only_active_partitions() -> None:
    """Patch Faust's aiokafka driver so a fetch never hands over paused partitions' records (idempotent)."""
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    if getattr(thread_cls, "_fraudstream_fetch_fix", False):
        return
    original_fetch = thread_cls._fetch_records

    async def _fetch_records(self: Any, consumer: Any, active_partitions: Any, timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        if active_partitions is not None:
            # Faust passes its live set of active partitions, and recovery pauses
            # partitions (removes them) while this call waits for records. aiokafka
            # reads an *empty* set as "every partition": it would hand over, and move
            # past, records of paused partitions, which Faust then drops. Keep the
            # live membership test, but never let the set read as empty.
            if not active_partitions:
                return {}
            active_partitions = _NeverEmpty(active_partitions)
        return await original_fetch(self, consumer, active_partitions, timeout=timeout, max_records=max_records)

    thread_cls._fetch_records = _fetch_records  # type: ignore[method-assign]
    thread_cls._fraudstream_fetch_fix = True  # type: ignore[attr-defined]


def _leave_group_in_generation_zero() -> None:
    """Make aiokafka send LeaveGroup in the embedded broker's generation 0, as in any other.

    Kafka numbers a group's first generation 1; the embedded broker numbers it
    0, and aiokafka sends LeaveGroup only for ``generation > 0``. A worker
    evicted for a poll timeout in the first generation then rejoined under a
    new member id while the broker kept its old id as the group leader: the
    rejoined worker waited as a follower for an assignment that never came.
    """
    from aiokafka.consumer import group_coordinator as coordinator
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest

    cls = coordinator.GroupCoordinator
    if getattr(cls, "_fraudstream_leave_fix", False):
        return

    async def _maybe_leave_group(self: Any) -> None:
        if (self.generation >= 0 and self.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID
                and self._group_instance_id is None):
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as err:  # aiokafka's own "minimal effort": log, never retry
                log.error("LeaveGroup request failed: %s", err)
            else:
                log.info("left group %s (generation %d)", self.group_id, self.generation)
        self.reset_generation()

    cls._maybe_leave_group = _maybe_leave_group
    cls._fraudstream_leave_fix = True


def rejoin_after_poll_timeout() -> None:
    """Patch Faust's rebalance listener so a worker evicted for a poll timeout rejoins (idempotent)."""
    import time

    from faust.transport.drivers import aiokafka as driver

    listener_cls = driver.ConsumerRebalanceListener
    if getattr(listener_cls, "_fraudstream_rejoin_fix", False):
        return
    original_revoked = listener_cls.on_partitions_revoked

    def on_partitions_revoked(self: Any, revoked: Any) -> Any:
        handled = original_revoked(self, revoked)  # sync part first: Faust marks the rebalance start there

        async def then_count_as_polled() -> Any:
            try:
                return await handled
            finally:
                # Runs on the consumer thread, which owns the subscription state. Faust
                # finished its in-flight events and waits for an assignment: that is the
                # "application polled again" aiokafka waits for before it rejoins.
                consumer = self._thread._ensure_consumer()
                subscription = consumer._subscription
                idle_s, limit_s = subscription.fetcher_idle_time, consumer._coordinator._max_poll_interval
                if idle_s >= limit_s:  # aiokafka itself says nothing when it evicts the worker
                    log.warning("no fetch for %.0f s (broker_max_poll_interval is %.0f s): Kafka took this worker's "
                                "partitions; it rejoins the group now", idle_s, limit_s)
                if subscription._fetch_count == 0:
                    subscription._last_fetch_ended = time.monotonic()

        return then_count_as_polled()

    listener_cls.on_partitions_revoked = on_partitions_revoked  # type: ignore[method-assign]
    listener_cls._fraudstream_rejoin_fix = True


def seek_before_resuming_streams() -> None:
    """Patch Faust's recovery so no stream partition is fetched before it is sought to its committed offset.

    Idempotent. Faust's ``Recovery.on_recovery_completed`` resumes the stream
    partitions while the consumer's flow is still running from changelog
    recovery, *then* awaits ``perform_seek`` (a round trip to the broker). In
    between, the fetcher reads the new partitions from wherever aiokafka stands
    and the agent processes them; the seek then rewinds aiokafka and resets
    Faust's read offsets, records fetched before it keep arriving and push the
    read offset past records that the seek threw out of aiokafka's buffer,
    and Faust drops those as already read (``DROPPED MESSAGE ROFF``). They were
    never processed: the add-then-remove scale-out test lost 2-42 transactions
    this way in about 1 run in 3 (faust-streaming fixed the same order in the
    table-less path, #216/#217, not in this one).

    The patch holds the ``resume_partitions`` call back until ``perform_seek``
    is done. (Stopping the flow instead is not enough: a fetch already in
    flight then returns records that Faust drops, and its "seek back to
    committed" does nothing for a partition that was never committed.)
    """
    from faust.tables.recovery import Recovery

    if getattr(Recovery, "_fraudstream_seek_fix", False):
        return
    original = Recovery.on_recovery_completed

    async def on_recovery_completed(self: Any, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        resume, seek = consumer.resume_partitions, consumer.perform_seek
        held: list[Any] = []

        async def seek_then_resume() -> None:
            await seek()
            while held:
                resume(held.pop(0))

        # Instance attributes shadow the methods for this one call.
        consumer.resume_partitions, consumer.perform_seek = held.append, seek_then_resume
        try:
            await original(self, generation_id)
        finally:
            del consumer.resume_partitions, consumer.perform_seek
            # Not sought (no assignment, or another rebalance began): resume as Faust would have.
            while held:
                resume(held.pop(0))

    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]
    Recovery._fraudstream_seek_fix = True  # type: ignore[attr-defined]


def resume_fetching_promptly() -> None:
    """Patch Faust's consumer so resuming a partition after a full agent buffer wakes the fetch loop (idempotent).

    Faust pauses a partition whose agent buffer is nearly full and resumes it
    from ``on_buffer_drop``; the fetch loop only noticed a second later. With
    the patch a resume (1) ends the wait of ``_wait_next_records``, which with
    every partition paused slept a fixed second, and (2) wakes aiokafka's
    ``fetched_records`` if it is waiting in the consumer thread, so it looks at
    the resumed partition's buffered records now rather than at its timeout.
    (aiokafka re-reads the live set of active partitions when it wakes:
    :func:`fetch_only_active_partitions` keeps that view live.)
    """
    from faust.transport.consumer import Consumer

    if getattr(Consumer, "_fraudstream_resume_fix", False):
        return
    original_drop = Consumer.on_buffer_drop
    original_wait = Consumer._wait_next_records

    def on_buffer_drop(self: Any, tp: Any) -> None:
        resumed = tp in self._buffered_partitions
        original_drop(self, tp)
        if resumed:
            _resumed(self).set()
            _wake_fetch_waiters(self)

    async def _wait_next_records(self: Any, timeout: float) -> Any:
        if (self.flow_active and not self.app.client_only and not self.should_stop
                and not self._get_active_partitions()):
            # Faust would sleep a fixed second here. Every partition is paused (a full agent
            # buffer, or none assigned yet): wait for one to resume, at most that second.
            resumed = _resumed(self)
            resumed.clear()
            # Returns early if the consumer stops, as Faust's sleep does (or crashes: should_stop above
            # then sends the next call to Faust's own one-second sleep, not round this loop at once).
            await self.wait(resumed, timeout=1.0)
            if not self._get_active_partitions():
                return {}, self._get_active_partitions()
        return await original_wait(self, timeout)

    Consumer.on_buffer_drop = on_buffer_drop  # type: ignore[method-assign]
    Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
    Consumer._fraudstream_resume_fix = True  # type: ignore[attr-defined]


def _resumed(consumer: Any) -> Any:
    """The consumer's "a partition was resumed" event (made on first use, on the consumer's loop)."""
    import asyncio

    event = consumer.__dict__.get("_fraudstream_resumed")
    if event is None:
        event = consumer.__dict__["_fraudstream_resumed"] = asyncio.Event()
    return event


def _wake_fetch_waiters(consumer: Any) -> None:
    """Wake aiokafka's ``fetched_records`` if it waits in Faust's consumer thread (a no-op otherwise)."""
    thread = getattr(consumer, "_thread", None)
    fetcher = getattr(getattr(thread, "_consumer", None), "_fetcher", None)
    waiters = getattr(fetcher, "_fetch_waiters", None)
    loop = getattr(thread, "thread_loop", None)
    if waiters is None or loop is None or loop.is_closed():
        return

    def wake() -> None:  # on the consumer thread, which owns the waiters
        for waiter in list(waiters):
            if not waiter.done():
                waiter.set_result(None)  # what a completed fetch does; fetched_records then looks again

    try:
        loop.call_soon_threadsafe(wake)
    except RuntimeError:  # the consumer thread's loop closed meanwhile (shutting down): nobody to wake
        pass


def apply_consumer_fixes(fetch_max_wait_ms: int = 0) -> None:
    """Every consumer patch a Faust worker of ours needs, whatever the broker (idempotent).

    >>> apply_consumer_fixes()
    >>> from faust.transport.drivers.aiokafka import ConsumerRebalanceListener
    >>> ConsumerRebalanceListener._fraudstream_rejoin_fix
    True
    """
    set_fetch_max_wait(fetch_max_wait_ms)
    fetch_only_active_partitions()  # else a rebalance can skip records of a never-committed partition
    rejoin_after_poll_timeout()  # else a poll timeout leaves the worker idle for good
    seek_before_resuming_streams()  # else a rebalance can skip records of a partition that changed hands
    resume_fetching_promptly()  # else a full agent buffer idles the agent for up to a second


#: Longest fetch wait :func:`wait_longer_when_the_broker_is_slow` goes up to (ms).
SLOW_BROKER_MAX_WAIT_MS = 1000


def wait_longer_when_the_broker_is_slow() -> None:
    """Adapt aiokafka's fetch wait to a broker that gives up on a fetch before finding its records (idempotent).

    Tansu's in-memory storage finds a fetch offset by walking the partition's
    record batches, ~0.7 us each here; when that takes longer than the fetch's
    max wait it answers with no records (and the right high watermark). A
    partition of 40,000 single-record batches (what a producer with
    ``linger_ms=0`` writes at a steady 2,000/s in a few minutes) takes ~29 ms, so
    with ``FRAUDSTREAM_FETCH_MAX_WAIT_MS=10`` every fetch came back empty and the
    worker stopped for good (the bench's soak stalled this way). After a fetch
    that brought nothing for a partition whose high watermark is past the fetch
    offset, the wait doubles (up to :data:`SLOW_BROKER_MAX_WAIT_MS`); after one that
    brought records it halves back towards the configured wait. It settles near
    the broker's real fetch time; latency grows with it, which is that broker's.
    """
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.structs import TopicPartition

    original = Fetcher._proc_fetch_request
    if getattr(original, "_fraudstream_adaptive", False):
        return

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
        result = await original(self, assignment, node_id, request)
        base = self.__dict__.setdefault("_fraudstream_base_wait_ms", self._fetch_max_wait_ms)
        fed = starved = False
        for topic, partitions in request.topics:
            for partition, offset, *_ in partitions:
                tp = TopicPartition(topic, partition)
                if tp in self._records:
                    fed = True
                    continue
                state = assignment.state_value(tp)  # None once no longer assigned
                if state is not None and state.highwater is not None and state.highwater > offset:
                    starved = True
        if starved and not fed:
            self._fetch_max_wait_ms = min(2 * self._fetch_max_wait_ms, max(base, SLOW_BROKER_MAX_WAIT_MS))
        elif fed:
            self._fetch_max_wait_ms = max(base, self._fetch_max_wait_ms // 2)
        return result

    _proc_fetch_request._fraudstream_adaptive = True  # type: ignore[attr-defined]
    Fetcher._proc_fetch_request = _proc_fetch_request  # type: ignore[method-assign]


def enable_embedded_broker_compat(bootstrap_servers: str, client: Mapping[str, Any] | None = None) -> None:
    """Patch Faust's aiokafka driver to use :func:`true_end_offsets` (idempotent)."""
    global _enabled
    if _enabled:
        return
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: Any) -> Mapping[Any, int]:
        reported = await original(self, partitions)
        if self.consumer.in_transaction:
            return reported
        return await true_end_offsets(bootstrap_servers, reported, client=client)

    driver.AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
    _leave_group_in_generation_zero()
    wait_longer_when_the_broker_is_slow()
    _enabled = True
    log.info("embedded-broker compatibility on: end offsets corrected from the last record batch")
