"""What one fetch costs the embedded broker, against how many record batches its partition holds.

The embedded broker (Tansu, memory storage) answers a fetch that has records
to return by listing every record batch the partition holds and picking
those at or after the fetch offset; Apache Kafka looks the offset up in its
index. A stream of small batches (a producer lingering 5 ms at 2,000
records a second puts up to ~200 batches a second into each partition) makes each
fetch costlier as a run goes on, until the broker takes a core by itself:
that is what the latency phases of ``fraudstream bench`` run into, the
bare-loop floor as much as the engine.

Run ``python -m stream.tools.bench.broker_fetch [BATCHES,...] [FETCHES]`` (default
``500,2000,8000 50``): for each size it fills one partition of a fresh
broker with that many single-record batches, then times FETCHES fetches of
the partition's last record and prints the wall time and the broker's CPU
per fetch. Figures are printed, never asserted. The fetches may wait up to
a second: with a short wait this broker answers *empty* once listing takes
longer than the wait, and a consumer that asks again gets nothing, for good
(docs/embedded-broker.md).

Example:
    >>> rows = measure([20, 60], fetches=3)
    >>> [row["batches"] for row in rows], all(row["wall_ms_per_fetch"] > 0 for row in rows)
    ([20, 60], True)
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from stream.tools.bench.proc import cpu_seconds

__all__ = ["main", "measure"]


def measure(sizes: list[int], fetches: int = 50,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """For each size (ascending), fill one partition to that many batches and time ``fetches`` fetches.

    ``on_row`` gets each row as it is measured (a large partition takes a while to fill).
    """
    from stream.tools.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        assert broker.pid is not None
        return asyncio.run(_measure(broker.bootstrap_servers, broker.pid, sorted(sizes), fetches, on_row))


async def _measure(bootstrap: str, pid: int, sizes: list[int], fetches: int,
                   on_row: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic, tp = "broker-fetch-cost", TopicPartition("broker-fetch-cost", 0)
    # linger 0 and one send awaited at a time: every record is a batch of its own, one object in the store.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=1000)
    await producer.start()
    await consumer.start()
    rows: list[dict[str, Any]] = []
    try:
        stored = 0
        for size in sizes:
            while stored < size:
                await (await producer.send(topic, b"x" * 300, partition=0))
                stored += 1
            if not rows:
                consumer.assign([tp])
            cpu, started = cpu_seconds(pid), time.perf_counter()
            for _ in range(fetches):
                consumer.seek(tp, stored - 1)  # the last record: one batch to return, all of them listed
                if not await consumer.getmany(tp, timeout_ms=30_000):
                    raise RuntimeError(f"no answer in 30 s to a fetch from a partition of {stored:,} batches")
            wall = (time.perf_counter() - started) / fetches
            rows.append({"batches": stored, "wall_ms_per_fetch": round(wall * 1000, 2),
                         "broker_cpu_ms_per_fetch": round((cpu_seconds(pid) - cpu) / fetches * 1000, 2)})
            if on_row is not None:
                on_row(rows[-1])
    finally:
        await consumer.stop()
        await producer.stop()
    return rows


def main(argv: list[str]) -> int:
    """Print the table (see the module docstring)."""
    sizes = [int(n) for n in argv[0].split(",")] if argv else [500, 2000, 8000]
    fetches = int(argv[1]) if len(argv) > 1 else 50
    print(f"{'batches in the partition':>24}  {'ms a fetch':>10}  {'broker CPU ms a fetch':>21}", flush=True)

    def show(row: dict[str, Any]) -> None:
        print(f"{row['batches']:>24,}  {row['wall_ms_per_fetch']:>10.2f}  {row['broker_cpu_ms_per_fetch']:>21.2f}",
              flush=True)

    measure(sizes, fetches, on_row=show)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
