"""The offered-load phases of ``fraudstream bench``: end-to-end latency at a fixed rate, its floor, and memory.

The floor is the bare aiokafka loop (:mod:`stream.tools.bench.bare`) in its own
process, as a worker is, under the same offered load (the same records) on a
broker holding the same preload. Each offered-load phase also reports the p99
of each third of the run and the embedded broker's CPU at its start and end:
on this broker a tail that grows through the run while the broker's CPU
climbs is the broker's fetches listing more batches
(:mod:`stream.tools.bench.broker_fetch`), not the engine.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stream.core.latency import percentile
from stream.tools.bench.bare import tail_by_part
from stream.tools.bench.config import BenchConfig, topic, topic_settings
from stream.tools.bench.engine import Workers
from stream.tools.bench.proc import CpuSampler, rss_mb
from stream.tools.children import die_with_parent, stop_children

__all__ = ["drift", "latency_floor", "memory_summary", "ms", "offered_phase", "split"]


async def _offered_load(bootstrap: str, target: str, load: list[tuple[bytes, bytes]], rate: float) -> float:
    from aiokafka import AIOKafkaProducer

    # linger 5 ms, as a payment gateway would batch: part of the measured latency (the
    # timestamp is taken at send), and single-record batches are what slows the embedded
    # broker down (stream/patches/embedded_slow_fetch.py).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        for i, (key, value) in enumerate(load):
            ahead = i / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            await producer.send(target, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(load) / (time.perf_counter() - started)


def _latencies(bootstrap: str, scores_topic: str, prefix: str, expected: int,
               timeout_s: float) -> tuple[list[float], list[float], list[float]]:
    """End-to-end latency of each score, the part spent in its micro-batch (``processing_ms``), and when
    its transaction was produced (ms).

    The rest (latency minus processing) is the wait before the batch started:
    producer linger, broker, fetch, and the batches queued ahead.
    """
    from replay.inputs import consume_scores

    scores = [s for s in consume_scores(bootstrap, scores_topic, timeout_s=timeout_s, expected=None)
              if s["transaction_id"].startswith(prefix)][:expected]
    return ([float(s["latency_ms"]) for s in scores], [float(s["processing_ms"]) for s in scores],
            [float(s["scored_at"]) - float(s["latency_ms"]) for s in scores])


def offered_phase(bootstrap: str, cfg: BenchConfig, workers: Workers, load: list[tuple[bytes, bytes]], rate: float,
                  prefix: str, scored_before: int, broker_pid: int | None) -> dict[str, Any]:
    """Offer ``load`` at ``rate`` transactions/s: latency percentiles, and the first worker's RSS over the run.

    ``prefix`` starts the load's transaction ids. The first worker's keys per
    table at the start and the end say how much of a change in RSS is state
    the engine keeps by design (histories filling up to ``history_length``,
    features within their retention); its Python heap blocks, whether Python
    objects grew at all.
    """
    n, seconds = len(load), len(load) / rate
    pid = workers.procs[0].pid
    state_before = workers.state()
    rss = [(0.0, rss_mb(pid))]
    states = [(0.0, state_before)]
    started = time.monotonic()

    async def sample() -> None:
        while time.monotonic() - started < seconds:
            await asyncio.sleep(min(10.0, max(seconds / 10, 1.0)))
            at = round(time.monotonic() - started, 1)
            rss.append((at, rss_mb(pid)))
            states.append((at, await asyncio.to_thread(workers.state)))  # off the load's event loop

    async def both() -> float:
        sampler = asyncio.create_task(sample())
        achieved = await _offered_load(bootstrap, topic(cfg, "tx"), load, rate)
        await sampler
        return achieved

    with CpuSampler(broker_pid) as broker_cpu:
        achieved = asyncio.run(both())
    try:
        workers.wait_scored(scored_before + n, timeout_s=120)
        behind = 0
    except TimeoutError:  # the engine could not keep up: report by how much, do not stop
        behind = scored_before + n - sum(st.get("scored", 0) for st in workers.stats())
        print(f"the engine fell behind the offered load: {behind:,} transactions unscored 120 s after "
              f"it ended", flush=True)
    rss.append((round(time.monotonic() - started, 1), rss_mb(pid)))
    lat, processing, produced = _latencies(bootstrap, workers.base.topic_scores, prefix, n, timeout_s=10)
    waiting = [total - inside for total, inside in zip(lat, processing, strict=True)]
    return {"workers": len(workers.procs), "offered_per_s": rate, "achieved_per_s": round(achieved, 1),
            "seconds": seconds, "samples": len(lat), "unscored_after_120_s": behind,
            "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95), "p99_ms": percentile(lat, 0.99),
            "p99_by_third_ms": tail_by_part(list(zip(produced, lat, strict=True))),
            "broker_cpu_cores": broker_cpu.summary(), "rss_mb": rss, "transactions": n,
            "in_batch_ms": {"p50": percentile(processing, 0.5), "p99": percentile(processing, 0.99)},
            "before_batch_ms": {"p50": percentile(waiting, 0.5), "p99": percentile(waiting, 0.99)},
            "state": {"start": state_before, "end": workers.state(), "samples": states}}


def latency_floor(bootstrap: str, cfg: BenchConfig, load: list[tuple[bytes, bytes]], workdir: Path,
                  broker_pid: int | None) -> dict[str, Any]:
    """The bare aiokafka loop's latency under ``load`` at ``cfg.latency_rate``: what the broker and clients cost.

    The loop runs in its own process, as the engine's worker does, from the
    end of the phase's (preloaded) transactions topic, with the engine's fetch
    wait.
    """
    from stream.kafka.topics import ensure_topics

    source = topic(cfg, "tx")
    sink = topic_settings(bootstrap, cfg, "floor").topic_scores
    ensure_topics(topic_settings(bootstrap, cfg, "floor").replace(topic_transactions=source))  # the sink, up front
    n = len(load)
    seconds = n / cfg.latency_rate
    out = workdir / f"floor-{cfg.run_id}.json"
    ready = out.with_name(out.name + ".ready")
    log_path = out.with_suffix(".log")
    timeout_s = seconds + 120.0
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stream.tools.bench.bare", bootstrap, source,
                                 sink, str(n), str(timeout_s), str(out)], stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=die_with_parent())  # noqa: PLW1509
        try:
            deadline = time.monotonic() + 60.0
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the latency floor's loop did not start; see {log_path}")
                time.sleep(0.05)
            with CpuSampler(broker_pid) as broker_cpu:
                achieved = asyncio.run(_offered_load(bootstrap, source, load, cfg.latency_rate))
            try:
                proc.wait(timeout=timeout_s + 30.0)  # the loop gives up by itself after timeout_s
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"the latency floor's loop did not finish; see {log_path}") from None
        finally:
            stop_children([proc], timeout=5)
    if not out.exists():
        raise RuntimeError(f"the latency floor's loop wrote no figures; see {log_path}")
    floor = json.loads(out.read_text())
    if floor["events"] < n:
        print(f"the latency floor's loop forwarded {floor['events']:,} of {n:,} records before its deadline",
              flush=True)
    return {"offered_per_s": cfg.latency_rate, "achieved_per_s": round(achieved, 1), "seconds": seconds,
            "samples": floor["events"], **{k: floor[k] and round(floor[k], 1) for k in ("p50_ms", "p95_ms", "p99_ms")},
            "p99_by_third_ms": [v and round(v, 1) for v in floor["p99_by_third_ms"]],
            "broker_cpu_cores": broker_cpu.summary()}


def split(phase: dict[str, Any]) -> str:
    """Where an offered-load phase's latency went: before its micro-batch started, and inside it."""
    before, inside = phase["before_batch_ms"], phase["in_batch_ms"]
    return (f"before the batch started p50 {ms(before['p50'])} / p99 {ms(before['p99'])} ms, "
            f"in the batch p50 {ms(inside['p50'])} / p99 {ms(inside['p99'])} ms")


def drift(phase: dict[str, Any]) -> str:
    """The tail through the run and the broker's CPU at its ends, as printed after each latency line.

    >>> drift({"p99_by_third_ms": [31.0, 88.5, 201.0], "broker_cpu_cores": {"first": 0.41, "last": 0.93}})
    'p99 by thirds of the run 31 / 88 / 201 ms, embedded broker CPU 0.41 -> 0.93 cores (first -> last 5 s)'
    """
    thirds = " / ".join(ms(v) for v in phase["p99_by_third_ms"])
    cpu = phase.get("broker_cpu_cores")
    broker = f", embedded broker CPU {cpu['first']:.2f} -> {cpu['last']:.2f} cores (first -> last 5 s)" if cpu else ""
    return f"p99 by thirds of the run {thirds} ms{broker}"


def ms(value: float | None) -> str:
    """A latency as printed: whole milliseconds, ``-`` for none."""
    return "-" if value is None else f"{value:.0f}"


def memory_summary(rss: list[tuple[float, float]]) -> dict[str, Any]:
    """RSS at the start, half-way and the end of a run, and the slope of its second half.

    The first half includes the state filling up (histories to their length,
    features to their retention); a leak shows as a slope that stays.

    >>> memory_summary([(0.0, 400.0), (30.0, 450.0), (60.0, 460.0), (120.0, 461.0)])["second_half_mb_per_min"]
    1.0
    """
    end_t, end = rss[-1]
    mid_t, middle = next((t, m) for t, m in rss if t >= end_t / 2)
    slope = (end - middle) / ((end_t - mid_t) / 60.0) if end_t > mid_t else 0.0
    return {"start": rss[0][1], "middle": middle, "end": end, "second_half_mb_per_min": round(slope, 2),
            "samples": rss}
