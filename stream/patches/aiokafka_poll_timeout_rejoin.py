"""A worker evicted for a poll timeout rejoins its group.

Symptom:
    When a worker does not fetch for ``broker_max_poll_interval`` (one huge
    fetch drained slowly into a full agent buffer, or an agent stuck on one
    batch), aiokafka leaves the group, as KIP-62 says. It rejoins only once the
    application fetches again, but Faust stops fetching from the revocation
    until it is assigned partitions again: the worker sat idle for good,
    holding nothing, no error logged (the 10-minute soak: the engine stopped
    after ~78,000 records, Faust's own per-event agent after 21,000-74,000).
    The patch counts the end of Faust's revocation handler, which returns only
    once every in-flight event is acked, as that fetch, and logs the eviction.
    ``broker_max_poll_records`` (a setting) bounds a fetch so the timeout is not
    reached in the first place. Applied on every broker.

Upstream:
    aio-libs/aiokafka#1187 ("Consumer holding no partitions can never rejoin
    after max_poll_interval_ms", open) describes the same check in
    ``GroupCoordinator.ensure_active_group``: ``fetcher_idle_time`` is reset only
    by ``getone``/``getmany``. aio-libs/aiokafka#625 reports the symptom.

Test:
    tests/stream/patches/test_poll_timeout.py::test_worker_evicted_for_a_poll_timeout_rejoins_and_processes_everything

Versions:
    Written for faust-streaming 0.15.3 (``ConsumerRebalanceListener.on_partitions_revoked``)
    and aiokafka 0.14.0 (``SubscriptionState._fetch_count``, ``_last_fetch_ended``,
    ``fetcher_idle_time``; ``GroupCoordinator._max_poll_interval``).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["WRITTEN_FOR", "rejoin_after_poll_timeout"]

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

log = logging.getLogger("fraudstream.compat")


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
