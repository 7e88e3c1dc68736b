"""The limit: consume, decode, encode, produce with plain aiokafka, nothing else.

Two uses in ``fraudstream bench``: (a) its rate over the preloaded topic, and
the latency floor: the same loop, in its own process as the engine's worker
is, under the same offered load, so the engine's latency percentiles can be
read against what the broker and the clients alone cost on this machine.

Run as ``python -m stream.tools.bench.bare BOOTSTRAP SOURCE SINK N TIMEOUT_S OUT.json``
for the latency floor: it positions at the end of SOURCE, writes
OUT.json.ready, forwards the next N records (or what arrives in TIMEOUT_S)
and writes ``{"events", "seconds", "events_per_s", "p50_ms", "p95_ms",
"p99_ms", "p99_by_third_ms"}`` to OUT.json.

Example:
    >>> import asyncio
    >>> from stream.tools.broker import EmbeddedBroker
    >>> from kafka import KafkaProducer
    >>> with EmbeddedBroker() as b:
    ...     p = KafkaProducer(bootstrap_servers=b.bootstrap_servers)
    ...     for i in range(50):
    ...         _ = p.send("doc-in", b'{"i": %d}' % i, partition=0)
    ...     p.flush(); p.close()
    ...     result = asyncio.run(bare_loop(b.bootstrap_servers, "doc-in", "doc-out", 50))
    >>> result["events"]
    50
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream.core.latency import percentile
from stream.kafka import clients

__all__ = ["bare_loop", "main", "tail_by_part"]


async def bare_loop(bootstrap: str, source: str, sink: str, n: int, timeout_s: float = 300.0, *,
                    from_end: bool = False, ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """Process ``n`` records from ``source`` to ``sink``; return events and events/s.

    The clock starts at the first record received, so connection set-up is
    not counted (as for the Faust runs). With ``from_end`` the loop starts at
    the end of ``source`` (calling ``ready`` once it is positioned) and also
    returns latency percentiles: the time a fetched batch is ready to encode
    minus each record's timestamp, as the engine's scores measure theirs
    (``scored_at_ms`` is stamped once per micro-batch, before encoding), and
    the p99 of each third of the run (:func:`tail_by_part`).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=10, max_partition_fetch_bytes=4 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    latencies: list[tuple[float, float]] = []  # (record timestamp, latency), both ms
    try:
        # In a thread, so the event loop goes on refreshing the metadata it reads.
        partitions = await asyncio.to_thread(clients.wait_for_partitions, consumer, source, None, interval_s=0.1)
        tps = [TopicPartition(source, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_end:
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolved now, not at the first fetch (after the load began)
        else:
            await consumer.seek_to_beginning(*tps)
        # With from_end, records produced before the loop was positioned are not the run's: on a preloaded
        # partition the embedded broker's end offset is its last batch's first offset, so the loop's first fetch
        # returns that whole batch of the preload.
        since_ms = time.time() * 1000.0 if from_end else float("-inf")
        if ready is not None:
            ready()
        done = 0
        started: float | None = None
        deadline = time.monotonic() + timeout_s
        while done < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            if batch and started is None:
                started = time.perf_counter()
            now_ms = time.time() * 1000.0  # once per fetch, before encoding, as the engine stamps its scores
            for records in batch.values():
                for record in records:
                    if record.timestamp < since_ms:
                        continue
                    value = json.loads(record.value)
                    value["seen"] = True
                    await producer.send(sink, json.dumps(value).encode(), key=record.key)
                    if from_end:
                        latencies.append((record.timestamp, now_ms - record.timestamp))
                    done += 1
        await producer.flush()
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
        await producer.stop()
    result: dict[str, Any] = {"events": done, "seconds": elapsed, "events_per_s": done / elapsed if elapsed else 0.0}
    if from_end:
        result.update({f"p{q}_ms": percentile([lat for _, lat in latencies], q / 100) for q in (50, 95, 99)})
        result["p99_by_third_ms"] = tail_by_part(latencies)
    return result


def tail_by_part(timed: list[tuple[float, float]], parts: int = 3, q: float = 0.99) -> list[float | None]:
    """The ``q`` quantile of the values in each of ``parts`` equal slices of a run, in time order.

    ``timed`` holds (time, value) pairs. A tail that grows from slice to slice
    is something filling up during the run (on the embedded broker: the
    batches each fetch lists, see ``stream.tools.bench.broker_fetch``); a tail that
    does not is spread through the run.

    >>> tail_by_part([(t, float(t)) for t in range(90, 0, -1)], q=1.0)
    [30.0, 60.0, 90.0]
    >>> tail_by_part([])
    [None, None, None]
    """
    values = [value for _, value in sorted(timed, key=lambda pair: pair[0])]
    size = len(values) / parts
    return [percentile(values[round(i * size):round((i + 1) * size)], q) for i in range(parts)]


def main(argv: list[str]) -> int:
    """The latency floor as a child process (see the module docstring)."""
    bootstrap, source, sink, n_text, timeout_text, out_text = argv
    out = Path(out_text)
    ready = out.with_name(out.name + ".ready")
    result = asyncio.run(bare_loop(bootstrap, source, sink, int(n_text), float(timeout_text), from_end=True,
                                   ready=ready.touch))
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
