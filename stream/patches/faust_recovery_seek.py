"""After table recovery, stream partitions are sought to their committed offsets before they are resumed.

Symptom:
    The add-then-remove scale-out test lost 2-42 transactions in about 1 run
    in 3. Faust's ``Recovery.on_recovery_completed`` resumes the stream
    partitions while the consumer's flow is still running from changelog
    recovery, *then* awaits ``perform_seek`` (a round trip to the broker). In
    between, the fetcher reads the new partitions from wherever aiokafka stands
    and the agent processes them; the seek then rewinds aiokafka and resets
    Faust's read offsets, records fetched before it keep arriving and push the
    read offset past records that the seek threw out of aiokafka's buffer, and
    Faust drops those as already read (``DROPPED MESSAGE ROFF``): never
    processed. The patch holds the ``resume_partitions`` call back until
    ``perform_seek`` is done. (Stopping the flow instead is not enough: a fetch
    already in flight then returns records that Faust drops, and its "seek back
    to committed" does nothing for a partition that was never committed.)
    Applied on every broker.

Upstream:
    faust-streaming/faust#216 ("Recovery without tables resumes from kafka
    before seeking to committed offsets"), fixed by faust-streaming/faust#217
    for the table-less path (``Recovery._resume_streams``) only; the path with
    tables (``on_recovery_completed``) keeps the order in 0.15.3.

Test:
    tests/stream/patches/test_rebalance_offsets.py::test_recovery_seeks_stream_partitions_before_anything_can_fetch_them
    tests/stream/runtime/test_scaleout.py::test_worker_added_then_removed_mid_stream

Versions:
    Written for faust-streaming 0.15.3 (``faust.tables.recovery.Recovery.on_recovery_completed``
    calling ``consumer.resume_partitions`` and ``consumer.perform_seek``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WRITTEN_FOR", "seek_before_resuming_streams"]

WRITTEN_FOR = {"faust-streaming": "0.15.3"}


def seek_before_resuming_streams() -> None:
    """Patch Faust's recovery so no stream partition is fetched before it is sought to its committed offset.

    Idempotent. See the module's docstring for the race it closes.
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
