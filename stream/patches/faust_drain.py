"""Faust's fetch loop, handing each record to its agent without two tasks per record.

Symptom:
    Faust's consumer (``Consumer._drain_messages``) delivers every fetched
    record with ``wait_first(callback(message), suspend_flow.wait())``: two new
    tasks and an ``asyncio.wait`` per record, so that a rebalance (which sets
    ``suspend_flow``) can abandon a delivery blocked on a full agent buffer.
    That is most of Faust's per-record cost, and because each record takes
    several event-loop turns, the agent found only the ~50 records delivered
    while it awaited its previous batch's produce: batches of 32-64 where 512
    were allowed, so every per-batch cost was paid ten times over.

    :func:`deliver_directly` installs a copy of the same loop with one change:
    when the delivery cannot block (flow active, Faust's producer buffer below
    its limit, room in every queue the record goes to), the callback is awaited
    directly; it then finishes without suspending, as the original would have.
    Otherwise the original ``wait_first`` path runs, so a rebalance still
    interrupts a blocked delivery. Offsets, gaps, commits and the periodic yield
    are Faust's.

    Whether a delivery can block is worked out once for a run of records, not
    for each (:func:`_room`; checking every channel's queue per record was a
    sizeable share of the engine's plumbing): nothing but this loop fills the queues, and
    nothing else runs until the loop suspends, so the free space found shrinks
    by at most one a record until then. Once it is used up (or some queue is
    full, perhaps another agent's), each record's own channels are checked, as
    before, until the loop next suspends.

    **The partition's handler, straight away.** Faust's conductor hands each
    record to its partition's handler under an asyncio lock (held while it
    resubscribes); when the loop has found that lock free it calls the handler
    itself, one lock round trip a record less.

    **One high-water mark per partition per fetch.** Faust's ``getmany`` asks
    the consumer for a partition's high-water mark for every record it yields,
    to keep the monitor's end offsets (consumer lag) current: a call a record
    through three layers of consumer. The direct loop has the consumer answer
    from the first read of each partition until its next fetch
    (:class:`_PerFetchHighwater`): the lag it reports is at most one fetch
    behind, as it could already be between fetches.

    The loop is installed on Faust's ``Consumer`` class; only apps passed to
    :func:`deliver_directly` take the direct path (``FRAUDSTREAM_DIRECT_DELIVERY=0``
    keeps Faust's own behaviour for the engine). :func:`deliver_directly` also
    applies :mod:`stream.patches.faust_settings_once`.

Upstream:
    No upstream issue found (faust-streaming/faust): a performance
    replacement, not a bug fix. robinhood/faust#563 ("Message consumption is
    slow") reports the per-record cost it removes.

Test:
    tests/stream/patches/test_drain.py::test_records_reach_the_agent_without_a_task_pair_each
    tests/stream/patches/test_drain.py::test_a_full_agent_buffer_falls_back_to_faust_and_loses_nothing
    tests/stream/patches/test_drain.py::test_room_is_the_least_free_space_of_any_channel_queue_and_none_while_faust_would_wait

Versions:
    Written for faust-streaming 0.15.3: ``_drain_messages_direct`` is
    ``Consumer._drain_messages`` of that release, unchanged but for the lines
    marked "changed"; it reads ``app.topics._tp_index``, ``_tp_to_callback`` and
    ``_tp_to_callback_lock``.

Example:
    >>> import faust
    >>> app = faust.App("doc-drain", broker="kafka://localhost:9092")
    >>> deliver_directly(app)
    >>> from faust.transport.consumer import Consumer
    >>> Consumer._drain_messages.__name__
    '_drain_messages_direct'
"""

from __future__ import annotations

import asyncio
from typing import Any

from stream.patches.faust_settings_once import read_settings_once

__all__ = ["WRITTEN_FOR", "deliver_directly"]

WRITTEN_FOR = {"faust-streaming": "0.15.3"}


def deliver_directly(app: Any) -> None:
    """Use the direct loop for ``app``'s consumer (other apps in the process keep Faust's behaviour)."""
    from faust.transport.consumer import Consumer

    app._fraudstream_direct_delivery = True
    if Consumer._drain_messages is not _drain_messages_direct:
        Consumer._drain_messages = _drain_messages_direct  # type: ignore[method-assign]
    read_settings_once(app)


def _faust_would_wait(app: Any) -> bool:
    """True while Faust's ``on_message`` would suspend whatever the record: see :func:`_room`."""
    if not app.flow_control.is_active():
        return True
    buffer = app.producer.buffer
    if buffer.size > buffer.max_messages:
        return True
    lock = getattr(app.topics, "_tp_to_callback_lock", None)
    return lock is not None and lock.locked()


def _room(app: Any, tp_index: Any) -> int:
    """How many records Faust's ``on_message`` can take now without suspending, whatever their partitions.

    ``on_message`` suspends while the flow is stopped (a rebalance), while
    Faust's producer buffer is over its limit, while the conductor
    resubscribes (it holds the lock ``on_message`` takes), or for a channel
    whose queue is full; it puts a record into each of its partition's
    channels once. So until something else runs, the smallest free space among
    all channel queues is a safe count. 0: check each record's own channels
    (:func:`_can_deliver_now`).
    """
    if _faust_would_wait(app):
        return 0
    free = _UNBOUNDED
    seen: set[int] = set()
    for channels in list(tp_index.values()):
        for channel in channels:
            queue = channel.queue
            if id(queue) not in seen:
                seen.add(id(queue))
                if queue.maxsize > 0:
                    free = min(free, queue.maxsize - queue.qsize())
    return max(free, 0)


def _can_deliver_now(app: Any, tp_index: Any, tp: Any) -> bool:
    """True if Faust's ``on_message`` for ``tp`` would finish without suspending (one record's check)."""
    return not _faust_would_wait(app) and not any(channel.queue.full() for channel in tp_index.get(tp, ()))


_UNBOUNDED = 1 << 30


class _PerFetchHighwater:
    """A consumer's ``highwater(tp)``, read once per partition until :meth:`clear` (the next fetch).

    >>> reads = []
    >>> highwater = _PerFetchHighwater(lambda tp: reads.append(tp) or 10 * len(reads))
    >>> highwater("p0"), highwater("p0"), highwater("p1")
    (10, 10, 20)
    >>> highwater.clear(); highwater("p0"), reads
    (30, ['p0', 'p1', 'p0'])
    """

    __slots__ = ("_known", "_read")

    def __init__(self, read: Any) -> None:
        self._read = read
        self._known: dict[Any, int] = {}

    def __call__(self, tp: Any) -> int:
        known = self._known.get(tp)
        if known is None:
            known = self._known[tp] = self._read(tp)
        return known

    def clear(self) -> None:
        self._known.clear()


async def _drain_messages_direct(self: Any, fetcher: Any) -> None:  # pragma: no cover (runs in workers)
    # Faust's Consumer._drain_messages (0.15.3), unchanged but for the marked lines.
    from faust.transport.consumer import CONSUMER_FETCHING

    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    app = self.app
    tp_index = app.topics._tp_index  # changed: the queues (topic channels) records go to
    # changed: each partition's own handler, which the conductor's on_message looks up under its lock
    tp_handlers = app.topics._tp_to_callback
    direct = getattr(app, "_fraudstream_direct_delivery", False)  # changed
    room = -1  # changed: records that can be delivered directly before anything else runs (_room); -1: not known
    suspend_flow = self.suspend_flow

    # changed: getmany reads each partition's high-water mark once per fetch, not per record
    highwater = _PerFetchHighwater(type(self).highwater.__get__(self)) if direct else None
    if highwater is not None:
        self.highwater = highwater

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            if highwater is not None:  # changed
                highwater.clear()
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            room = -1  # changed: getmany waits for records before its first (then yields without suspending)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                        room = -1  # changed: other tasks ran
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                            room = -1  # changed: it may sleep(0)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                            room = -1  # changed: other tasks ran
                        # changed: direct when it cannot block, Faust's wait_first otherwise
                        if direct and room < 0:
                            room = _room(app, tp_index)
                        # Counted down while there is room, then (some queue full) the record's own channels.
                        if direct and not suspend_flow.is_set() and (
                                room > 0 or _can_deliver_now(app, tp_index, tp)):
                            room = max(room - 1, 0)
                            # The conductor's lock is free (_room), so its on_message would only look the
                            # handler up: called straight away, without the lock's enter and exit.
                            handler = tp_handlers.get(tp)
                            await (callback(message) if handler is None else handler(message))
                        else:
                            room = -1
                            await self.wait_first(callback(message), suspend_flow.wait())
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception:
        self.log.exception("Drain messages raised")
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)
        if highwater is not None and self.__dict__.get("highwater") is highwater:  # changed
            del self.highwater
