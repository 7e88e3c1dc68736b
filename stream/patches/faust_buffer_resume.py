"""Resuming a partition after a full agent buffer wakes the fetch loop at once.

Symptom:
    When an agent's buffer passes its high-water mark Faust stops fetching that
    partition (``on_buffer_full``) and resumes it once the agent has taken most
    of the buffer (``on_buffer_drop``). Nothing told the fetch loop: with every
    partition paused Faust's ``_wait_next_records`` sleeps a whole second, and a
    poll already waiting inside aiokafka for the other partitions waits out its
    timeout (1 s) or their next fetch. The agent meanwhile emptied its buffer and
    sat idle: in the bench ~0.5 s of every ~2.2 s while a backlog waited (the
    worker's CPU, sampled each second, alternated between ~100 % and ~50 %).
    With the patch a resume (1) ends the wait of ``_wait_next_records`` and (2)
    wakes aiokafka's ``fetched_records`` if it is waiting in the consumer
    thread, so it looks at the resumed partition's buffered records now rather
    than at its timeout. (aiokafka re-reads the live set of active partitions
    when it wakes: :mod:`stream.patches.faust_paused_partitions` keeps that
    view live.) Applied on every broker.

Upstream:
    No upstream issue found (faust-streaming/faust, aio-libs/aiokafka).
    faust-streaming/faust#53 introduced the pause on a full buffer and the
    resume from ``on_buffer_drop``; the fixed one-second sleep is in
    ``Consumer._wait_next_records`` (``faust/transport/consumer.py``).

Test:
    tests/stream/patches/test_drain.py::test_a_resumed_partition_is_polled_at_once
    tests/stream/patches/test_drain.py::test_a_resumed_partition_is_polled_at_once_while_another_is_idle

Versions:
    Written for faust-streaming 0.15.3 (``Consumer.on_buffer_drop``,
    ``_wait_next_records``, ``_buffered_partitions``, ``_thread``) and aiokafka
    0.14.0 (``Fetcher._fetch_waiters``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WRITTEN_FOR", "resume_fetching_promptly"]

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def resume_fetching_promptly() -> None:
    """Patch Faust's consumer so resuming a partition after a full agent buffer wakes the fetch loop (idempotent)."""
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
