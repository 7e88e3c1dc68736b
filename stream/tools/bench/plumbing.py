"""The engine's plumbing floor: the score agent's consume and produce path with none of its work, as a child process.

Everything the score agent does to move records, and nothing it does to score
them: the same Faust app and consumer fixes (:func:`stream.runtime.engine.worker_app`),
the same worker process settings (:func:`stream.runtime.worker.run_worker`), micro-batches
straight off the agent's channel (:func:`stream.kafka.batches.micro_batches`), each
record decoded and encoded as JSON (as the bare loop (a) does) and handed to an
:class:`~stream.kafka.outbox.Outbox`, and every batch acked once the broker has its
outputs (:class:`~stream.kafka.batches.InFlight`). No validation, state, features,
models or tables.

Its rate is the most any engine built on this path can score here; the gap
between it and (c) is what the engine's own work costs, the gap between it and
(a) what Faust and the batching cost over a bare aiokafka loop.

Run as ``python -m stream.tools.bench.plumbing SINK N OUT.json`` with the worker's
settings in the environment (``FRAUDSTREAM_*``; it consumes
``FRAUDSTREAM_TOPIC_TRANSACTIONS``). It writes ``{"events", "seconds",
"events_per_s"}`` to OUT.json once it has forwarded N records, timed from the
first micro-batch it received, and the figures so far to OUT.json.partial after
every micro-batch, so a run that stops consuming still gives its rate until then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from stream.contracts.settings import Settings

__all__ = ["build", "main"]

log = logging.getLogger("fraudstream.bench.plumbing")


def build(settings: Settings, sink: str, n: int, out: Path) -> Any:
    """The worker app with a forwarding agent from the transactions topic to ``sink``."""
    from stream.contracts.codec import dumps, loads
    from stream.kafka.batches import InFlight, micro_batches
    from stream.runtime.engine import open_outbox, worker_app, worker_topic

    app = worker_app(settings)

    source, target = worker_topic(app, settings, settings.topic_transactions), worker_topic(app, settings, sink)

    async def forward(stream: Any) -> None:
        await target.maybe_declare()
        outbox = await open_outbox(app, settings)
        def delivery_failed(exc: BaseException) -> None:  # as the score agent: stop, the run has no figure
            log.critical("delivering a batch failed; stopping: %r", exc)
            asyncio.ensure_future(app.crash(exc))

        in_flight = InFlight(settings.batches_in_flight, on_failure=delivery_failed)
        count, started = 0, 0.0
        async for events in micro_batches(stream, settings.batch_size, within_s=settings.batch_timeout_s):
            if not count:
                started = time.perf_counter()
            for event in events:
                value = event.message.value
                outbox.add(sink, None, event.message.key, None if value is None else dumps(loads(value)))
            await in_flight.add(events, await outbox.send(last=True))
            count += len(events)
            if count >= n:
                await in_flight.drain()
                _write(out, count, time.perf_counter() - started)
            else:
                _write(out.with_name(out.name + ".partial"), count, time.perf_counter() - started)

    forward.__module__ = __name__
    app.agent(source, name=f"{__name__}.forward")(forward)
    return app


def _write(path: Path, events: int, seconds: float) -> None:
    path.write_text(json.dumps({"events": events, "seconds": seconds, "events_per_s": events / max(seconds, 1e-9)}))


def main(argv: list[str]) -> int:
    from stream.runtime.worker import run_worker

    sink, n_text, out_path = argv
    run_worker(Settings.from_env(), lambda settings: build(settings, sink, int(n_text), Path(out_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
