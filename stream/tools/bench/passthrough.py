"""Faust's floor: a per-event agent that forwards each record, as a child process.

Run as ``python -m stream.tools.bench.passthrough BOOTSTRAP SOURCE SINK N OUT.json``;
it writes ``{"events", "seconds", "events_per_s"}`` to OUT.json once it has
forwarded N records, timed from the first record it received, and the same
figures so far to OUT.json.partial every 1,000 records, so that a run that
stops consuming still gives its rate until then (before the poll-timeout fix
in ``stream/patches/`` it stopped after 21,000-74,000 of 200,000 records).
"""

from __future__ import annotations

import json
import sys
import time
import uuid

__all__ = ["main"]


def main(argv: list[str]) -> int:
    import faust

    from stream.contracts.settings import Settings
    from stream.patches import apply_consumer_fixes, enable_embedded_broker_compat
    from stream.runtime.logs import service_worker

    bootstrap, source, sink, n_text, out_path = argv
    n = int(n_text)
    apply_consumer_fixes(fetch_max_wait_ms=10)  # the same consumer the engine runs
    enable_embedded_broker_compat(bootstrap)
    app = faust.App(f"bench-passthrough-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, autodiscover=False, value_serializer="raw", key_serializer="raw",
                    broker_session_timeout=6, broker_heartbeat_interval=1, broker_rebalance_timeout=6,
                    broker_max_poll_interval=6, broker_max_poll_records=Settings.broker_max_poll_records,
                    consumer_auto_offset_reset="earliest",
                    datadir=f"/tmp/fraudstream-bench-{uuid.uuid4().hex[:6]}")
    src = app.topic(source, value_type=bytes, key_type=bytes)
    dst = app.topic(sink, value_type=bytes, key_type=bytes)
    state = {"count": 0, "started": 0.0}

    @app.agent(src)
    async def forward(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            if state["count"] == 0:
                state["started"] = time.perf_counter()
            await dst.send(key=event.key, value=event.value)
            state["count"] += 1
            if state["count"] % 1000 == 0 and state["count"] < n:
                _write(out_path + ".partial", state["count"], time.perf_counter() - state["started"])
            if state["count"] == n:
                await app.producer.flush()
                _write(out_path, n, time.perf_counter() - state["started"])

    service_worker(app, "warn").execute_from_commandline()  # logged as the engine's worker is
    return 0


def _write(path: str, events: int, seconds: float) -> None:
    with open(path, "w") as fh:
        json.dump({"events": events, "seconds": seconds, "events_per_s": events / seconds}, fh)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
