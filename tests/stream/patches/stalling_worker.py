"""A Faust worker whose agent stalls once for longer than ``broker_max_poll_interval``.

Not a test module: ``tests/stream/patches/test_poll_timeout.py`` runs it as a child
process (``python -m tests.stream.patches.stalling_worker BOOTSTRAP TOPIC OUT STALL_S``)
with the consumer fixes the engine applies (``stream.patches``). It appends the
value of every record it processes to OUT, one per line.

``FRAUDSTREAM_TEST_NO_REJOIN_FIX=1`` leaves out the rejoin fix, to see the test fail.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

__all__ = ["main"]


def main(argv: list[str]) -> int:
    import faust

    from stream import patches
    from stream.runtime.logs import service_worker

    bootstrap, topic, out_path, stall_text = argv
    stall_s = float(stall_text)
    patches.set_fetch_max_wait(10)
    patches.fetch_only_active_partitions()
    if os.environ.get("FRAUDSTREAM_TEST_NO_REJOIN_FIX") != "1":
        patches.rejoin_after_poll_timeout()
    if os.environ.get("FRAUDSTREAM_TEST_EMBEDDED") == "1":
        patches.enable_embedded_broker_compat(bootstrap)
    app = faust.App(f"stalling-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, autodiscover=False, value_serializer="raw", key_serializer="raw",
                    broker_session_timeout=6, broker_heartbeat_interval=1, broker_rebalance_timeout=6,
                    broker_max_poll_interval=2, broker_max_poll_records=2, stream_buffer_maxsize=4,
                    consumer_auto_offset_reset="earliest", datadir=f"/tmp/fraudstream-stalling-{uuid.uuid4().hex[:6]}")
    source = app.topic(topic, value_type=bytes, key_type=bytes)
    stalled = False
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - open for the worker's life, one line per record

    @app.agent(source)
    async def process(stream):  # type: ignore[no-untyped-def]
        nonlocal stalled
        async for event in stream.events():
            if not stalled:
                # The agent holds this event while the fetcher, its buffer full,
                # cannot fetch: past broker_max_poll_interval Kafka evicts the worker.
                stalled = True
                await asyncio.sleep(stall_s)
            out.write(event.value.decode() + "\n")

    service_worker(app, "info").execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
