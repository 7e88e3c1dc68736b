"""A fetch never hands over the records of partitions Faust has paused.

Symptom:
    Records of a partition that changed hands were never processed (the kill -9
    test lost transactions). Faust passes aiokafka its *live* set of active
    partitions; table recovery pauses partitions (removes them from the set)
    while a fetch waits, and aiokafka reads an *empty* set as "every partition".
    So one fetch could hand over the records the consumer had prefetched for
    paused stream partitions, moving the position past them, and Faust dropped
    them (they are not active). Faust then "seeks back to the committed offset",
    but aiokafka's ``seek_to_committed`` does nothing for a partition with no
    committed offset, so those records were lost: the killed worker had not
    committed yet, and its successor prefetched the partitions during recovery.
    A fast fetch makes it likely (records already buffered when the set empties:
    ``FRAUDSTREAM_FETCH_MAX_WAIT_MS=10`` on the embedded broker, any fetch on
    Apache Kafka). Applied on every broker.

Upstream:
    robinhood/faust#69 fixed the same two races in 2018 (``getmany`` with an
    empty set reads all partitions; a live set mutated during ``getmany``) with
    a lock around ``getmany`` and pause/resume; faust-streaming 0.15.3 passes the
    live set again without that lock. aio-libs/aiokafka#304 is where aiokafka's
    maintainer asked callers to pass the partitions to fetch on each call. No
    open issue for the regression found.

Test:
    tests/stream/patches/test_rebalance_offsets.py::test_fetch_hands_over_nothing_once_every_partition_is_paused
    tests/stream/runtime/test_scaleout.py::test_kill_9_mid_stream_loses_nothing

Versions:
    Written for faust-streaming 0.15.3 (``AIOKafkaConsumerThread._fetch_records``)
    and aiokafka 0.14.0 (``Fetcher.fetched_records`` tests membership with ``in``
    and emptiness with ``bool``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WRITTEN_FOR", "fetch_only_active_partitions"]

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


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
