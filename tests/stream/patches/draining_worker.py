"""A Faust worker that reads its topic in micro-batches and reports how records reached it.

Not a test module: ``tests/stream/patches/test_drain.py`` runs it as a child process
(``python -m tests.stream.patches.draining_worker BOOTSTRAP TOPIC N BUFFER DIRECT OUT [PROMPT]``).
The agent reads with the engine's :func:`stream.kafka.batches.micro_batches`, takes
5 ms per batch (the scoring it stands in for), and once it has N distinct
records writes ``{"records", "distinct", "batches", "wait_first", "idle_polls"}``
to OUT: ``wait_first`` counts the consumer's ``Service.wait_first`` calls,
Faust's two-task delivery of a record; ``idle_polls`` the polls that came back
empty although aiokafka held fetched records for the worker. ``DIRECT`` 1
installs :func:`stream.patches.faust_drain.deliver_directly`; ``PROMPT`` 0 leaves out
stream.patches.resume_fetching_promptly` (the other consumer fixes stay).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

__all__ = ["main"]


def main(argv: list[str]) -> int:
    import faust
    from faust.transport.consumer import Consumer

    from stream import patches
    from stream.kafka.batches import ack, micro_batches
    from stream.patches.faust_drain import deliver_directly
    from stream.runtime.logs import service_worker

    bootstrap, topic, n_text, buffer_text, direct, out_path, *rest = argv
    n = int(n_text)
    if not rest or rest[0] == "1":
        patches.apply_consumer_fixes(fetch_max_wait_ms=10)
    else:  # every fix but the one under test
        patches.set_fetch_max_wait(10)
        patches.fetch_only_active_partitions()
        patches.rejoin_after_poll_timeout()
        patches.seek_before_resuming_streams()
    if os.environ.get("FRAUDSTREAM_TEST_EMBEDDED") == "1":
        patches.enable_embedded_broker_compat(bootstrap)
    calls = {"wait_first": 0, "idle_polls": 0}
    original = Consumer.wait_first
    original_poll = Consumer._wait_next_records

    async def counting_wait_first(self, *coros, timeout=None):  # type: ignore[no-untyped-def]
        calls["wait_first"] += 1
        return await original(self, *coros, timeout=timeout)

    async def counting_poll(self, timeout):  # type: ignore[no-untyped-def]
        records, active = await original_poll(self, timeout)
        if not records and list(self._thread._consumer._fetcher._records):  # records were waiting
            calls["idle_polls"] += 1
        return records, active

    Consumer.wait_first = counting_wait_first  # type: ignore[method-assign]
    Consumer._wait_next_records = counting_poll  # type: ignore[method-assign]
    app = faust.App(f"draining-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, autodiscover=False, value_serializer="raw", key_serializer="raw",
                    broker_session_timeout=6, broker_heartbeat_interval=1, broker_rebalance_timeout=6,
                    stream_buffer_maxsize=int(buffer_text), consumer_auto_offset_reset="earliest",
                    broker_max_poll_records=100,  # many polls, as the engine's bounded ones
                    datadir=f"/tmp/fraudstream-draining-{uuid.uuid4().hex[:6]}")
    if direct == "1":
        deliver_directly(app)
    source = app.topic(topic, value_type=bytes, key_type=bytes)
    seen: set[bytes] = set()
    state = {"records": 0, "batches": 0}

    @app.agent(source)
    async def process(stream):  # type: ignore[no-untyped-def]
        async for events in micro_batches(stream, 512):
            await asyncio.sleep(0.005)
            state["records"] += len(events)
            state["batches"] += 1
            seen.update(e.value for e in events)
            ack(events)
            if len(seen) >= n:
                with open(out_path, "w") as fh:  # noqa: ASYNC230 - once, when the test is over
                    json.dump({**state, "distinct": len(seen), **calls}, fh)

    service_worker(app, "warn").execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
