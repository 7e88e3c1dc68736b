"""Orchestrates ``fraudstream bench`` on the embedded broker.

All runs read the same preloaded topic of generated transactions (realistic
per-card histories from :mod:`replay.generate`), so their rates compare:

(a) the bare aiokafka loop, (b) the Faust pass-through agent, (b') the
engine's plumbing without its work, (c) the engine with every model and
output, with one and with two worker processes, and (a) again, which shows
how much the machine's speed drifted while (c) ran; then the
end-to-end latency at a fixed offered load, next to the bare loop's latency at
the same load (the floor this broker and machine set), and the worker's
resident memory at the start and end of a long run. Figures are printed and written as JSON.

Each offered-load phase also reports the p99 of each third of the run and
the embedded broker's CPU at its start and end: on this broker a tail that
grows through the run while the broker's CPU climbs is the broker's fetches
listing more batches (``stream.bench.broker_fetch``), not the engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stream.bench.bare import bare_loop, percentile, tail_by_part
from stream.bench.proc import CpuSampler, rss_mb
from stream.children import die_with_parent

__all__ = ["BenchConfig", "run_bench"]

_FIELDS = ("transaction_id", "card_id", "timestamp", "amount", "currency", "merchant_id", "mcc", "country", "channel")


@dataclass
class BenchConfig:
    events: int = 200_000
    cards: int = 4_000  # 50 transactions a card: most are scored with a full window, as in production
    partitions: int = 4
    workers: tuple[int, ...] = (1, 2)
    latency_workers: int = 1  # which of the engine runs stays up for the latency and soak phases
    latency_rate: float = 2000.0
    latency_seconds: float = 30.0
    soak_seconds: float = 0.0  # after the latency run: a soak at soak_rate, for the memory figure
    soak_rate: float = 0.0  # 0: the latency rate
    batch_size: int = 512
    checkpoint: str = "auto"  # "auto": train a small sequence model first; "": online learner only
    sequence_precision: str = "float32"  # the workers' FRAUDSTREAM_SEQUENCE_PRECISION
    out: str = "bench-results.json"
    # An existing broker (Apache Kafka, say) instead of the embedded one; "" starts the embedded broker.
    bootstrap_servers: str = ""
    # Every topic the run creates is named bench-<run_id>-...: on a broker that outlives the run, a second run
    # reads none of the first's records, and nothing lands on the engine's own topics (scores, alerts, ...).
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    notes: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration no run could use."""
        if self.latency_workers not in self.workers:
            raise ValueError(f"latency_workers={self.latency_workers} must be one of the engine runs' worker counts "
                             f"{self.workers}")

    @classmethod
    def smoke(cls, out: str) -> BenchConfig:
        """A few seconds, to prove the benchmark works (CI)."""
        return cls(events=3000, cards=300, partitions=2, workers=(1,), latency_rate=300.0, latency_seconds=3.0,
                   soak_seconds=3.0, soak_rate=200.0, out=out)


_DAYS = 30  # of event time in every generated load


def _topic(cfg: BenchConfig, name: str) -> str:
    """The run's own topic for ``name``.

    >>> _topic(BenchConfig(run_id="abc123"), "tx")
    'bench-abc123-tx'
    """
    return f"bench-{cfg.run_id}-{name}"


def _topic_settings(bootstrap: str, cfg: BenchConfig, group: str) -> Any:
    """Settings naming every topic (and the app id, which names the models topics) under the run's prefix."""
    from stream.settings import Settings

    def own(name: str) -> str:
        return _topic(cfg, f"{group}-{name}")

    return Settings(app_id=own("app"), bootstrap_servers=bootstrap, topic_partitions=cfg.partitions,
                    topic_transactions=own("tx"), topic_feedback=own("fb"), topic_scores=own("out"),
                    topic_alerts=own("alerts"), topic_transactions_dlq=own("txdlq"), topic_feedback_dlq=own("fbdlq"),
                    topic_ops=own("ops"))


def _table(events: int, cards: int, seed: int, phase: int = 0) -> Any:
    """``events`` transactions over 30 days; ``phase`` k starts 30 k days after the preload's first day.

    The offered loads continue the preload's event time (and each other's), as
    a live stream does: the features table's event-time retention then
    expires entries as it would in production rather than all at once.
    """
    from replay.generate import GeneratorConfig, generate

    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=_DAYS * phase)
    return generate(GeneratorConfig(seed=seed, n_transactions=events, n_cards=cards, start=start.isoformat(),
                                    n_merchants=max(cards // 4, 100), days=_DAYS))


def _train_checkpoint(cfg: BenchConfig, workdir: Path) -> str:
    """A small sequence model (one short epoch) on data like the benchmark's: scoring cost, not quality."""
    from models.train import TrainConfig, train

    table = _table(min(cfg.events, 100_000), cfg.cards, seed=4)
    result = train(TrainConfig(table=table, out=workdir / "model", epochs=1, legit_per_epoch=10_000,
                               val_legit=5_000, threads=2, progress=False))
    print(f"trained a sequence model for the engine run: {result.version} ({result.seconds:.0f} s)", flush=True)
    return str(workdir / "model")


def _records(events: int, cards: int, prefix: str = "", seed: int = 5, phase: int = 0) -> list[tuple[bytes, bytes]]:
    table = _table(events, cards, seed, phase)
    cols = {name: table[name].to_pylist() for name in _FIELDS}
    out = []
    for i in range(table.num_rows):
        rec = {name: cols[name][i] for name in _FIELDS}
        rec["transaction_id"] = prefix + rec["transaction_id"]
        out.append((rec["card_id"].encode(), json.dumps(rec).encode()))
    return out


def _preload(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Write the records as fast as aiokafka goes; returns events/s."""
    from aiokafka import AIOKafkaProducer

    async def go() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
        await producer.start()
        started = time.perf_counter()
        try:
            for key, value in records:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        return len(records) / (time.perf_counter() - started)

    return asyncio.run(go())


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def _worker_settings(bootstrap: str, cfg: BenchConfig, tag: str) -> Any:
    """The settings of the bench's workers (and of the plumbing floor, which must run as they do)."""
    from stream.settings import Settings

    return Settings(
        app_id=_topic(cfg, tag), bootstrap_servers=bootstrap, topic_partitions=cfg.partitions,
        topic_transactions=_topic(cfg, "tx"), topic_feedback=_topic(cfg, f"fb-{tag}"),
        topic_scores=_topic(cfg, f"scores-{tag}"), topic_alerts=_topic(cfg, f"alerts-{tag}"),
        topic_transactions_dlq=_topic(cfg, f"txdlq-{tag}"), topic_feedback_dlq=_topic(cfg, f"fbdlq-{tag}"),
        topic_ops=_topic(cfg, f"ops-{tag}"),
        broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0, broker_rebalance_timeout_s=6.0,
        broker_max_poll_interval_s=30.0, embedded_broker_compat=not cfg.bootstrap_servers, fetch_max_wait_ms=10,
        model_signing_key=secrets.token_hex(16), batch_size=cfg.batch_size, web_enabled=True,
        sequence_model_path=cfg.checkpoint, sequence_precision=cfg.sequence_precision,
        log_level=os.environ.get("FRAUDSTREAM_BENCH_LOG_LEVEL", "warn"),
        # One day of scoring-time inputs (the default keeps 30): the generated data spans
        # 30 days of event time, so a soak reaches the retention's steady state and the
        # memory figure tells a leak from the retention filling up.
        feature_retention_s=86_400.0,
    )


class _Workers:
    """``fraudstream worker`` processes for one engine run."""

    def __init__(self, bootstrap: str, cfg: BenchConfig, workdir: Path, count: int) -> None:
        from stream.broker import free_port
        from stream.topics import ensure_topics

        tag = uuid.uuid4().hex[:6]
        self.base = _worker_settings(bootstrap, cfg, tag)
        ensure_topics(self.base)
        self.ports = [free_port() for _ in range(count)]
        self.procs = []
        for i, port in enumerate(self.ports):
            env = {**os.environ, **self.base.replace(web_port=port, data_dir=str(workdir / f"{tag}-{i}")).to_env()}
            log = open(workdir / f"worker-{tag}-{i}.log", "wb")  # noqa: SIM115 - the child's stdout for its life
            self.procs.append(subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env,
                                               stdout=log, stderr=subprocess.STDOUT,
                                               preexec_fn=die_with_parent()))  # noqa: PLW1509 - prctl only

    def stats(self) -> list[dict[str, Any]]:
        out = []
        for port in self.ports:
            try:
                out.append(_get(port, "/stats/")["stats"])
            except OSError:
                out.append({})
        return out

    def wait_scored(self, n: int, timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stats = self.stats()
            if sum(s.get("scored", 0) for s in stats) >= n:
                return stats
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError("a bench worker exited; see its log in the bench work directory")
            time.sleep(0.25)
        raise TimeoutError(f"engine did not score {n} transactions in {timeout_s:.0f} s")

    def state(self) -> dict[str, Any]:
        """What the first worker holds: keys per table and Python heap blocks (empty if it does not answer)."""
        try:
            got = _get(self.ports[0], "/stats/")
        except OSError:
            return {}
        return {"table_keys": got.get("table_keys", {}), "python_heap_blocks": got.get("python_heap_blocks")}

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _engine_run(bootstrap: str, cfg: BenchConfig, workdir: Path, count: int) -> tuple[dict[str, Any], _Workers]:
    workers = _Workers(bootstrap, cfg, workdir, count)
    try:
        stats = workers.wait_scored(cfg.events, timeout_s=max(120.0, cfg.events / 200.0))
    except BaseException:
        workers.stop()  # never leave workers behind: they would load the next runs' CPU
        raise
    first = min(s["first_scored_at"] for s in stats if s.get("first_scored_at"))
    last = max(s["last_scored_at"] for s in stats)
    scored = sum(s["scored"] for s in stats)
    stages: dict[str, float] = {}
    for s in stats:
        for stage, seconds in s.get("stage_seconds", {}).items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    total = sum(stages.values()) or 1.0
    result = {
        "workers": count,
        "events": scored,
        "seconds": (last - first) / 1000.0,
        "events_per_s": scored / max((last - first) / 1000.0, 1e-9),
        "stage_share": {k: round(v / total, 4) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "stage_us_per_event": {k: round(v / scored * 1e6, 2) for k, v in stages.items()},
        # Per-transaction cost grows with the card's history (features, windows): the mean says
        # how full the histories were, so runs on different data compare.
        "mean_history": round(sum(s.get("history_entries", 0) for s in stats) / max(scored, 1), 1),
        # Per-batch costs (a forward pass, a produce round) spread over this many transactions.
        "mean_batch": round(scored / max(sum(s.get("batches", 0) for s in stats), 1), 1),
    }
    return result, workers


async def _offered_load(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], rate: float) -> float:
    from aiokafka import AIOKafkaProducer

    # linger 5 ms, as a payment gateway would batch: part of the measured latency (the
    # timestamp is taken at send), and single-record batches are what slows the embedded
    # broker down (stream/compat.py: wait_longer_when_the_broker_is_slow).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        for i, (key, value) in enumerate(records):
            ahead = i / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


def _latencies(bootstrap: str, topic: str, prefix: str, expected: int,
               timeout_s: float) -> tuple[list[float], list[float], list[float]]:
    """End-to-end latency of each score, the part spent in its micro-batch (``processing_ms``), and when
    its transaction was produced (ms).

    The rest (latency minus processing) is the wait before the batch started:
    producer linger, broker, fetch, and the batches queued ahead.
    """
    from replay.evaluate import consume_scores

    scores = [s for s in consume_scores(bootstrap, topic, timeout_s=timeout_s, expected=None)
              if s["transaction_id"].startswith(prefix)][:expected]
    return ([float(s["latency_ms"]) for s in scores], [float(s["processing_ms"]) for s in scores],
            [float(s["scored_at"]) - float(s["latency_ms"]) for s in scores])


def _offered_phase(bootstrap: str, cfg: BenchConfig, keep: _Workers, rate: float, seconds: float, prefix: str,
                   seed: int, scored_before: int, phase: int, broker_pid: int | None) -> dict[str, Any]:
    """Offer ``rate`` transactions/s for ``seconds``: latency percentiles, and the worker's RSS over the run.

    The first worker's keys per table at the start and the end say how much
    of a change in RSS is state the engine keeps by design (histories
    filling up to ``history_length``, features within their retention); its
    Python heap blocks, whether Python objects grew at all.
    """
    n = int(rate * seconds)
    load = _records(n, cfg.cards, prefix=prefix, seed=seed, phase=phase)
    pid = keep.procs[0].pid
    state_before = keep.state()
    rss = [(0.0, rss_mb(pid))]
    states = [(0.0, state_before)]
    started = time.monotonic()

    async def sample() -> None:
        while time.monotonic() - started < seconds:
            await asyncio.sleep(min(10.0, max(seconds / 10, 1.0)))
            at = round(time.monotonic() - started, 1)
            rss.append((at, rss_mb(pid)))
            states.append((at, await asyncio.to_thread(keep.state)))  # off the load's event loop

    async def both() -> float:
        sampler = asyncio.create_task(sample())
        achieved = await _offered_load(bootstrap, _topic(cfg, "tx"), load, rate)
        await sampler
        return achieved

    with CpuSampler(broker_pid) as broker_cpu:
        achieved = asyncio.run(both())
    try:
        keep.wait_scored(scored_before + n, timeout_s=120)
        behind = 0
    except TimeoutError:  # the engine could not keep up: report by how much, do not stop
        behind = scored_before + n - sum(st.get("scored", 0) for st in keep.stats())
        print(f"the engine fell behind the offered load: {behind:,} transactions unscored 120 s after "
              f"it ended", flush=True)
    rss.append((round(time.monotonic() - started, 1), rss_mb(pid)))
    lat, processing, produced = _latencies(bootstrap, keep.base.topic_scores, prefix, n, timeout_s=10)
    waiting = [total - inside for total, inside in zip(lat, processing, strict=True)]
    return {"offered_per_s": rate, "achieved_per_s": round(achieved, 1), "seconds": seconds, "samples": len(lat),
            "unscored_after_120_s": behind, "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
            "p99_ms": percentile(lat, 0.99), "p99_by_third_ms": tail_by_part(list(zip(produced, lat, strict=True))),
            "broker_cpu_cores": broker_cpu.summary(), "rss_mb": rss, "transactions": n,
            "in_batch_ms": {"p50": percentile(processing, 0.5), "p99": percentile(processing, 0.99)},
            "before_batch_ms": {"p50": percentile(waiting, 0.5), "p99": percentile(waiting, 0.99)},
            "state": {"start": state_before, "end": keep.state(), "samples": states}}


def _latency_floor(bootstrap: str, cfg: BenchConfig, workdir: Path, broker_pid: int | None) -> dict[str, Any]:
    """The bare aiokafka loop's latency at ``cfg.latency_rate``: what the broker and clients alone cost.

    The loop runs in its own process, as the engine's worker does, on a topic
    of its own (the engine's idle worker does not see the load), with the
    engine's fetch wait and the same offered load (new transactions of the
    same cards).
    """
    from stream.topics import ensure_topics

    floor_topics = _topic_settings(bootstrap, cfg, "floor")
    ensure_topics(floor_topics)  # the sink too, up front
    source, sink = floor_topics.topic_transactions, floor_topics.topic_scores
    n = int(cfg.latency_rate * cfg.latency_seconds)
    load = _records(n, cfg.cards, prefix="floor-", seed=8, phase=1)
    out = workdir / "floor.json"
    ready = out.with_name(out.name + ".ready")
    timeout_s = cfg.latency_seconds + 120.0
    with open(workdir / "floor.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stream.bench.bare", bootstrap, source,
                                 sink, str(n), str(timeout_s), str(out)], stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=die_with_parent())  # noqa: PLW1509
        try:
            deadline = time.monotonic() + 60.0
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the latency floor's loop did not start; see {workdir / 'floor.log'}")
                time.sleep(0.05)
            with CpuSampler(broker_pid) as broker_cpu:
                achieved = asyncio.run(_offered_load(bootstrap, source, load, cfg.latency_rate))
            try:
                proc.wait(timeout=timeout_s + 30.0)  # the loop gives up by itself after timeout_s
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"the latency floor's loop did not finish; see {workdir / 'floor.log'}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if not out.exists():
        raise RuntimeError(f"the latency floor's loop wrote no figures; see {workdir / 'floor.log'}")
    floor = json.loads(out.read_text())
    if floor["events"] < n:
        print(f"the latency floor's loop forwarded {floor['events']:,} of {n:,} records before its deadline",
              flush=True)
    return {"offered_per_s": cfg.latency_rate, "achieved_per_s": round(achieved, 1), "seconds": cfg.latency_seconds,
            "samples": floor["events"], **{k: floor[k] and round(floor[k], 1) for k in ("p50_ms", "p95_ms", "p99_ms")},
            "p99_by_third_ms": [v and round(v, 1) for v in floor["p99_by_third_ms"]],
            "broker_cpu_cores": broker_cpu.summary()}


def _latency_and_memory(bootstrap: str, cfg: BenchConfig, keep: _Workers, results: dict[str, Any],
                        workdir: Path, broker_pid: int | None) -> None:
    """Latency at ``cfg.latency_rate`` (and the bare loop's, the floor); then, with ``cfg.soak_seconds``,
    a soak at ``cfg.soak_rate`` for memory."""
    floor = results["latency_floor"] = _latency_floor(bootstrap, cfg, workdir, broker_pid)
    print(f"latency floor at {cfg.latency_rate:,.0f}/s offered (bare aiokafka loop, own process): p50 "
          f"{_ms(floor['p50_ms'])} ms, p95 {_ms(floor['p95_ms'])} ms, p99 {_ms(floor['p99_ms'])} ms; {_drift(floor)}",
          flush=True)
    latency = _offered_phase(bootstrap, cfg, keep, cfg.latency_rate, cfg.latency_seconds, "lat-", 6, cfg.events,
                             phase=1, broker_pid=broker_pid)
    rss = latency.pop("rss_mb")
    results["latency"] = {"workers": len(keep.procs), **latency}
    print(f"latency at {cfg.latency_rate:,.0f}/s offered, {len(keep.procs)} worker(s): p50 {latency['p50_ms']} ms, "
          f"p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms; {_split(latency)}; {_drift(latency)}", flush=True)
    if cfg.soak_seconds > 0:
        rate = cfg.soak_rate or cfg.latency_rate
        soak = _offered_phase(bootstrap, cfg, keep, rate, cfg.soak_seconds, "soak-", 7,
                              cfg.events + latency["transactions"], phase=2, broker_pid=broker_pid)
        rss = soak.pop("rss_mb")
        results["soak"] = soak
        print(f"soak at {rate:,.0f}/s offered for {cfg.soak_seconds:.0f} s: p50 {soak['p50_ms']} ms, "
              f"p95 {soak['p95_ms']} ms, p99 {soak['p99_ms']} ms; {_split(soak)}; {_drift(soak)}", flush=True)
    last = results.get("soak", latency)
    memory = results["memory_rss_mb"] = _memory_summary(rss)
    print(f"worker RSS: {memory['start']:.0f} MB at start, {memory['middle']:.0f} MB half-way, "
          f"{memory['end']:.0f} MB after {rss[-1][0]:.0f} s; second half {memory['second_half_mb_per_min']:+.2f} "
          f"MB/min", flush=True)
    start, end = last["state"]["start"], last["state"]["end"]
    print(f"worker state: table keys {start.get('table_keys')} -> {end.get('table_keys')}, Python heap blocks "
          f"{start.get('python_heap_blocks')} -> {end.get('python_heap_blocks')}", flush=True)


def _stages(run: dict[str, Any]) -> str:
    """The engine's time per stage, largest first.

    >>> _stages({"stage_share": {"sequence": 0.6, "delivery": 0.4}, "stage_us_per_event": {"sequence": 90.0, "delivery": 60.0}})
    'sequence 90 µs (60 %), delivery 60 µs (40 %)'
    """
    us = run["stage_us_per_event"]
    return ", ".join(f"{stage} {us[stage]:.0f} µs ({share * 100:.0f} %)" for stage, share in run["stage_share"].items())


def _split(phase: dict[str, Any]) -> str:
    before, inside = phase["before_batch_ms"], phase["in_batch_ms"]
    return (f"before the batch started p50 {_ms(before['p50'])} / p99 {_ms(before['p99'])} ms, "
            f"in the batch p50 {_ms(inside['p50'])} / p99 {_ms(inside['p99'])} ms")


def _drift(phase: dict[str, Any]) -> str:
    """The tail through the run and the broker's CPU at its ends, as printed after each latency line.

    >>> _drift({"p99_by_third_ms": [31.0, 88.5, 201.0], "broker_cpu_cores": {"first": 0.41, "last": 0.93}})
    'p99 by thirds of the run 31 / 88 / 201 ms, embedded broker CPU 0.41 -> 0.93 cores (first -> last 5 s)'
    """
    thirds = " / ".join(_ms(v) for v in phase["p99_by_third_ms"])
    cpu = phase.get("broker_cpu_cores")
    broker = f", embedded broker CPU {cpu['first']:.2f} -> {cpu['last']:.2f} cores (first -> last 5 s)" if cpu else ""
    return f"p99 by thirds of the run {thirds} ms{broker}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _memory_summary(rss: list[tuple[float, float]]) -> dict[str, Any]:
    """RSS at the start, half-way and the end of a run, and the slope of its second half.

    The first half includes the state filling up (histories to their length,
    features to their retention); a leak shows as a slope that stays.

    >>> _memory_summary([(0.0, 400.0), (30.0, 450.0), (60.0, 460.0), (120.0, 461.0)])["second_half_mb_per_min"]
    1.0
    """
    end_t, end = rss[-1]
    mid_t, middle = next((t, m) for t, m in rss if t >= end_t / 2)
    slope = (end - middle) / ((end_t - mid_t) / 60.0) if end_t > mid_t else 0.0
    return {"start": rss[0][1], "middle": middle, "end": end, "second_half_mb_per_min": round(slope, 2),
            "samples": rss}


def _child_rate(command: list[str], env: dict[str, str], cfg: BenchConfig, stem: Path) -> dict[str, Any] | None:
    """Run a rate-measuring child (``stream.bench.passthrough`` / ``plumbing``) to completion; its figures.

    The child gets ``stem.json`` as its last argument, writes its result there
    and its progress to ``stem.json.partial``. A child that makes no progress
    for 30 s has stopped consuming: its rate until then, marked ``stalled``.
    None if it wrote nothing (its log is ``stem.log``).
    """
    out = stem.with_suffix(".json")
    partial = out.with_name(out.name + ".partial")
    with open(stem.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen([*command, str(out)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent())  # noqa: PLW1509 - only prctl before exec
        deadline = time.monotonic() + max(120.0, cfg.events / 500.0)
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            if partial.exists() and time.time() - partial.stat().st_mtime > 30:
                break  # no progress for 30 s: it has stopped consuming
            time.sleep(0.25)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # never leave it running: it would load the runs measured after it
            proc.kill()
            proc.wait()
    if out.exists():
        return dict(json.loads(out.read_text()))
    if partial.exists():  # it stopped consuming before N: its rate until then
        return {**json.loads(partial.read_text()), "stalled": True}
    return None


def _print_child(label: str, result: dict[str, Any] | None) -> None:
    if result is None:
        print(f"{label:<27}no figures (see its log in the bench's work directory)", flush=True)
        return
    note = f" (stalled after {result['events']:,} events)" if result.get("stalled") else ""
    print(f"{label:<27}{result['events_per_s']:>9,.0f} events/s{note}", flush=True)


def _run_on(bootstrap: str, broker_pid: int | None, cfg: BenchConfig, records: list[tuple[bytes, bytes]],
            results: dict[str, Any], workdir: Path) -> None:
    """Every phase, on the broker at ``bootstrap`` (``broker_pid``: the embedded broker's process, else None)."""
    from stream.topics import ensure_topics

    tx = _topic(cfg, "tx")
    ensure_topics(_topic_settings(bootstrap, cfg, "load").replace(topic_transactions=tx))
    results["preload_events_per_s"] = round(_preload(bootstrap, tx, records))
    print(f"preloaded {len(records):,} transactions ({results['preload_events_per_s']:,}/s)", flush=True)

    bare = asyncio.run(bare_loop(bootstrap, tx, _topic(cfg, "out-bare"), cfg.events))
    results["bare_aiokafka"] = bare
    print(f"(a) bare aiokafka loop     {bare['events_per_s']:>9,.0f} events/s", flush=True)

    results["faust_passthrough"] = _child_rate(
        [sys.executable, "-m", "stream.bench.passthrough", bootstrap, tx, _topic(cfg, "out-faust"),
         str(cfg.events)], dict(os.environ), cfg, workdir / "passthrough")
    _print_child("(b) Faust pass-through", results["faust_passthrough"])
    plumbing = _worker_settings(bootstrap, cfg, uuid.uuid4().hex[:6]).replace(
        web_enabled=False, data_dir=str(workdir / "plumbing"))
    results["engine_plumbing"] = _child_rate(
        [sys.executable, "-m", "stream.bench.plumbing", _topic(cfg, "out-plumbing"), str(cfg.events)],
        {**os.environ, **plumbing.to_env()}, cfg, workdir / "plumbing")
    _print_child("(b') engine plumbing", results["engine_plumbing"])

    engine_runs = []
    keep: _Workers | None = None
    for count in cfg.workers:
        try:
            run, workers = _engine_run(bootstrap, cfg, workdir, count)
        except BaseException:
            if keep is not None:
                keep.stop()
            raise
        engine_runs.append(run)
        print(f"(c) engine, {count} worker(s)     {run['events_per_s']:>9,.0f} events/s "
              f"(mean history {run['mean_history']:.1f} transactions, mean batch {run['mean_batch']:.0f})",
              flush=True)
        if count == cfg.latency_workers and keep is None:
            keep = workers
        else:
            workers.stop()
    results["engine"] = engine_runs
    # (a) again after the engine runs: this machine's speed drifts by a quarter within an hour, and the
    # bare loop's rate at both ends of the engine runs shows how far the run's c/a can be trusted.
    # (The kept worker idles beside it, fetching nothing new.)
    bare_after = asyncio.run(bare_loop(bootstrap, tx, _topic(cfg, "out-bare-after"), cfg.events))
    results["bare_aiokafka_after"] = bare_after
    print(f"(a) bare loop, again after (c) {bare_after['events_per_s']:>6,.0f} events/s", flush=True)
    one = next(r for r in engine_runs if r["workers"] == min(cfg.workers))
    results["ratio_engine_to_bare"] = round(one["events_per_s"] / bare["events_per_s"], 3)
    results["ratio_engine_to_bare_after"] = round(one["events_per_s"] / bare_after["events_per_s"], 3)
    if results["faust_passthrough"]:
        results["ratio_engine_to_faust"] = round(one["events_per_s"] / results["faust_passthrough"]["events_per_s"], 3)
    if results["engine_plumbing"]:
        results["ratio_engine_to_plumbing"] = round(
            one["events_per_s"] / results["engine_plumbing"]["events_per_s"], 3)
        results["us_per_event"] = {name: round(1e6 / rate, 1) for name, rate in (
            ("bare", bare["events_per_s"]), ("plumbing", results["engine_plumbing"]["events_per_s"]),
            ("engine", one["events_per_s"]))}
    print(f"c/a = {results['ratio_engine_to_bare']} ({results['ratio_engine_to_bare_after']} against (a) after (c)), "
          f"c/b = {results.get('ratio_engine_to_faust', '-')}, "
          f"c/b' = {results.get('ratio_engine_to_plumbing', '-')} ({one['workers']} worker(s))", flush=True)
    if "us_per_event" in results:
        us = results["us_per_event"]
        print(f"µs per transaction: bare loop {us['bare']}, engine plumbing {us['plumbing']}, engine {us['engine']} "
              f"(its work: {us['engine'] - us['plumbing']:.1f})", flush=True)
    print(f"engine time per transaction ({one['workers']} worker(s)): {_stages(one)}", flush=True)

    try:
        if keep is not None:
            _latency_and_memory(bootstrap, cfg, keep, results, workdir, broker_pid)
    finally:
        if keep is not None:
            keep.stop()


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run everything; return (and write) the figures."""
    from stream.broker import EmbeddedBroker

    cfg.validate()
    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-bench-"))
    results: dict[str, Any] = {"config": {k: v for k, v in asdict(cfg).items() if k != "notes"},
                               "machine": {"cpus": os.cpu_count()}, "workdir": str(workdir)}
    if cfg.checkpoint == "auto":
        cfg.checkpoint = results["config"]["checkpoint"] = _train_checkpoint(cfg, workdir)
    results["models"] = ["online", "sequence"] if cfg.checkpoint else ["online"]
    records = _records(cfg.events, cfg.cards)
    if cfg.bootstrap_servers:
        print(f"on the broker at {cfg.bootstrap_servers}; this run's topics are bench-{cfg.run_id}-*", flush=True)
        _run_on(cfg.bootstrap_servers, None, cfg, records, results, workdir)
    else:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            _run_on(broker.bootstrap_servers, broker.pid, cfg, records, results, workdir)
    Path(cfg.out).write_text(json.dumps(results, indent=2))
    return results
