"""The fetch wait adapts to the embedded broker, which gives up on a fetch before finding its records.

Symptom:
    Tansu's in-memory storage finds a fetch offset by walking the partition's
    record batches; when that takes longer than the fetch's max wait it answers
    with no records (and the right high watermark). The walk grows with the
    partition: the single-record batches a producer with ``linger_ms=0`` writes
    at a steady rate for a few minutes take longer to walk than a 10 ms wait, so
    with ``FRAUDSTREAM_FETCH_MAX_WAIT_MS=10`` every fetch came back empty and the
    worker stopped for good (the bench's soak stalled this way;
    ``python -m stream.tools.bench.broker_fetch`` measures the walk). After a fetch
    that brought nothing for a partition whose high watermark is past the fetch
    offset, the wait doubles (up to :data:`SLOW_BROKER_MAX_WAIT_MS`); after one
    that brought records it halves back towards the configured wait. It settles
    near the broker's real fetch time. Applied with
    ``FRAUDSTREAM_EMBEDDED_BROKER_COMPAT=1`` only.

Upstream:
    No upstream issue found: a broker behaviour (searched aio-libs/aiokafka and
    the Tansu tracker). aiokafka behaves as Kafka's protocol says.

Test:
    tests/stream/patches/test_compat.py::test_fetch_wait_grows_until_a_slow_broker_finds_the_records

Versions:
    Written for aiokafka 0.14.0 (``Fetcher._proc_fetch_request``, ``_records``,
    ``_fetch_max_wait_ms``; ``assignment.state_value(tp).highwater``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SLOW_BROKER_MAX_WAIT_MS", "WRITTEN_FOR", "wait_longer_when_the_broker_is_slow"]

WRITTEN_FOR = {"aiokafka": "0.14.0"}

#: Longest fetch wait :func:`wait_longer_when_the_broker_is_slow` goes up to (ms).
SLOW_BROKER_MAX_WAIT_MS = 1000


def wait_longer_when_the_broker_is_slow() -> None:
    """Adapt aiokafka's fetch wait to a broker that gives up on a fetch before finding its records (idempotent)."""
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
