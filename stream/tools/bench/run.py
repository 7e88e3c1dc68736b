"""Orchestrates ``fraudstream bench``: every phase ``--repeat`` times, each from the same conditions.

A repetition runs three phases; every measurement in them runs on its own
fresh embedded broker (or, with ``--bootstrap-servers``, on fresh topics of
that broker), preloaded with the same generated transactions, with fresh
processes:

1. throughput: (a) the bare aiokafka loop, (b) the Faust pass-through agent,
   (b') the engine's plumbing without its work, (c) the engine with every
   model and output, with each ``--workers`` count, and (a) again, which
   shows how much the machine's speed drifted while (c) ran (brokers
   ``a``, ``b``, ``b2``, ``c<workers>``, ``a2``);
2. the latency floor: the bare loop in its own process under the offered
   load (:func:`stream.tools.bench.latency.latency_floor`);
3. the engine's latency: fresh workers score the preload (so the cards'
   histories are full, as in production), then take the same offered load;
   in the last repetition a soak follows, for the memory figure.

A fresh broker per measurement because the embedded broker lists every batch a
partition holds on each fetch (:mod:`stream.tools.bench.broker_fetch`): on a shared
broker each phase's tail would depend on how many ran before it. The phases
are interleaved (throughput, floor, engine, throughput, floor, engine, ...)
so the machine's drift hits the floor and the engine alike; ratios are taken
within a repetition. The figures of every repetition, and their median and
spread (:mod:`stream.tools.bench.summary`), are printed and written as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stream.tools.bench.bare import bare_loop
from stream.tools.bench.config import (
    BenchConfig,
    phase_config,
    preload,
    records,
    topic,
    train_checkpoint,
    worker_settings,
)
from stream.tools.bench.engine import engine_rate
from stream.tools.bench.latency import drift, latency_floor, memory_summary, ms, offered_phase, split
from stream.tools.bench.summary import summarise, summary_lines
from stream.tools.children import die_with_parent, stop_children

__all__ = ["BenchConfig", "run_bench"]


@contextmanager
def _broker(cfg: BenchConfig, repetition: int, phase: str,
            workdir: Path) -> Iterator[tuple[str, int | None, BenchConfig]]:
    """A phase's broker: a fresh embedded one (and its pid), or ``cfg.bootstrap_servers``; and its own topics."""
    from stream.tools.broker import EmbeddedBroker

    own = phase_config(cfg, repetition, phase)
    if cfg.bootstrap_servers:
        yield cfg.bootstrap_servers, None, own
        return
    with EmbeddedBroker(log_path=workdir / f"broker-{repetition}{phase}.log") as broker:
        yield broker.bootstrap_servers, broker.pid, own


def _stages(run: dict[str, Any]) -> str:
    """The engine's time per stage, largest first.

    >>> _stages({"stage_share": {"sequence": 0.6, "delivery": 0.4}, "stage_us_per_event": {"sequence": 90.0, "delivery": 60.0}})
    'sequence 90 µs (60 %), delivery 60 µs (40 %)'
    """
    us = run["stage_us_per_event"]
    return ", ".join(f"{stage} {us[stage]:.0f} µs ({share * 100:.0f} %)" for stage, share in run["stage_share"].items())


def _child_rate(command: list[str], env: dict[str, str], cfg: BenchConfig, stem: Path) -> dict[str, Any] | None:
    """Run a rate-measuring child (``stream.tools.bench.passthrough`` / ``plumbing``) to completion; its figures.

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
        stop_children([proc], timeout=30)  # never leave it running: it would load the runs measured after it
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


@contextmanager
def _preloaded(cfg: BenchConfig, repetition: int, phase: str, data: list[tuple[bytes, bytes]], workdir: Path,
               run: dict[str, Any]) -> Iterator[tuple[str, int | None, BenchConfig]]:
    """:func:`_broker`, its transactions topic preloaded with ``data``; the preload's rate kept in ``run``."""
    with _broker(cfg, repetition, phase, workdir) as (bootstrap, pid, own):
        rate = round(preload(bootstrap, own, "tx", data))
        run.setdefault("preload_events_per_s", {})[phase] = rate
        yield bootstrap, pid, own


def _throughput(cfg: BenchConfig, repetition: int, data: list[tuple[bytes, bytes]], run: dict[str, Any],
                workdir: Path) -> None:
    """(a), (b), (b'), (c) for each worker count and (a) again, each over the preload of a fresh broker of its own.

    A broker per measurement, not one for them all: each starts from the same
    conditions (the same batches in the partition it reads, no other run's
    topics, groups or changelogs on the broker), as the latency phases do.
    """
    with _preloaded(cfg, repetition, "a", data, workdir, run) as (bootstrap, _, own):
        print(f"preloaded {len(data):,} transactions ({run['preload_events_per_s']['a']:,}/s)", flush=True)
        bare = run["bare_aiokafka"] = asyncio.run(bare_loop(bootstrap, topic(own, "tx"), topic(own, "out-bare"),
                                                            cfg.events))
    print(f"(a) bare aiokafka loop     {bare['events_per_s']:>9,.0f} events/s", flush=True)

    with _preloaded(cfg, repetition, "b", data, workdir, run) as (bootstrap, _, own):
        run["faust_passthrough"] = _child_rate(
            [sys.executable, "-m", "stream.tools.bench.passthrough", bootstrap, topic(own, "tx"),
             topic(own, "out-faust"), str(cfg.events)], dict(os.environ), cfg, workdir / f"passthrough-{own.run_id}")
    _print_child("(b) Faust pass-through", run["faust_passthrough"])

    with _preloaded(cfg, repetition, "b2", data, workdir, run) as (bootstrap, _, own):
        plumbing = worker_settings(bootstrap, own, uuid.uuid4().hex[:6]).replace(
            web_enabled=False, data_dir=str(workdir / f"plumbing-{own.run_id}"))
        run["engine_plumbing"] = _child_rate(
            [sys.executable, "-m", "stream.tools.bench.plumbing", topic(own, "out-plumbing"), str(cfg.events)],
            {**os.environ, **plumbing.to_env()}, cfg, workdir / f"plumbing-{own.run_id}")
    _print_child("(b') engine plumbing", run["engine_plumbing"])

    engine_runs = run["engine"] = []
    for count in cfg.workers:
        with _preloaded(cfg, repetition, f"c{count}", data, workdir, run) as (bootstrap, _, own):
            result, workers = engine_rate(bootstrap, own, workdir, count)
            workers.stop()
        engine_runs.append(result)
        print(f"(c) engine, {count} worker(s)     {result['events_per_s']:>9,.0f} events/s "
              f"(mean history {result['mean_history']:.1f} transactions, mean batch {result['mean_batch']:.0f})",
              flush=True)
    # (a) again after the engine runs: this machine's speed drifts by a quarter within an hour, and the
    # bare loop's rate at both ends of the engine runs shows how far the run's c/a can be trusted.
    with _preloaded(cfg, repetition, "a2", data, workdir, run) as (bootstrap, _, own):
        after = run["bare_aiokafka_after"] = asyncio.run(
            bare_loop(bootstrap, topic(own, "tx"), topic(own, "out-bare-after"), cfg.events))
    print(f"(a) bare loop, again after (c) {after['events_per_s']:>6,.0f} events/s", flush=True)
    _ratios(run)


def _ratios(run: dict[str, Any]) -> None:
    """This repetition's c/a, c/b, c/b' (the fewest workers' run) and cost per transaction, added and printed."""
    bare, after = run["bare_aiokafka"], run["bare_aiokafka_after"]
    one = min(run["engine"], key=lambda r: r["workers"])
    run["ratio_engine_to_bare"] = round(one["events_per_s"] / bare["events_per_s"], 3)
    run["ratio_engine_to_bare_after"] = round(one["events_per_s"] / after["events_per_s"], 3)
    if run["faust_passthrough"]:
        run["ratio_engine_to_faust"] = round(one["events_per_s"] / run["faust_passthrough"]["events_per_s"], 3)
    if run["engine_plumbing"]:
        run["ratio_engine_to_plumbing"] = round(one["events_per_s"] / run["engine_plumbing"]["events_per_s"], 3)
        run["us_per_event"] = {name: round(1e6 / rate, 1) for name, rate in (
            ("bare", bare["events_per_s"]), ("plumbing", run["engine_plumbing"]["events_per_s"]),
            ("engine", one["events_per_s"]))}
    print(f"c/a = {run['ratio_engine_to_bare']} ({run['ratio_engine_to_bare_after']} against (a) after (c)), "
          f"c/b = {run.get('ratio_engine_to_faust', '-')}, "
          f"c/b' = {run.get('ratio_engine_to_plumbing', '-')} ({one['workers']} worker(s))", flush=True)
    if "us_per_event" in run:
        us = run["us_per_event"]
        print(f"µs per transaction: bare loop {us['bare']}, engine plumbing {us['plumbing']}, engine {us['engine']} "
              f"(its work: {us['engine'] - us['plumbing']:.1f})", flush=True)
    print(f"engine time per transaction ({one['workers']} worker(s)): {_stages(one)}", flush=True)
    hops = [stage for stage in one["stage_us_per_event"] if stage == "route" or stage.startswith("entity_")]
    if hops:
        cost = sum(one["stage_us_per_event"][stage] for stage in hops)
        print(f"entity hops ({', '.join(hops)}): {cost:.1f} µs per transaction (their work and handing it to the "
              f"producer, which waits while its buffer is full); their latency: the latency phase", flush=True)
    if one.get("rules"):
        print(f"rules: {one['rules']} evaluated on every transaction, {one['rules_us_per_event']} µs per transaction "
              f"({one['rules_us_per_event'] / one['rules']:.2f} µs a rule)", flush=True)


def _floor(cfg: BenchConfig, repetition: int, data: list[tuple[bytes, bytes]], load: list[tuple[bytes, bytes]],
           run: dict[str, Any], workdir: Path) -> None:
    """The latency floor on a fresh broker holding the same preload as the engine's latency phase."""
    with _preloaded(cfg, repetition, "floor", data, workdir, run) as (bootstrap, pid, own):
        floor = run["latency_floor"] = latency_floor(bootstrap, own, load, workdir, pid)
    print(f"latency floor at {cfg.latency_rate:,.0f}/s offered (bare aiokafka loop, own process): p50 "
          f"{ms(floor['p50_ms'])} ms, p95 {ms(floor['p95_ms'])} ms, p99 {ms(floor['p99_ms'])} ms; {drift(floor)}",
          flush=True)


def _engine_latency(cfg: BenchConfig, repetition: int, data: list[tuple[bytes, bytes]],
                    load: list[tuple[bytes, bytes]], run: dict[str, Any], workdir: Path, soak: bool) -> None:
    """Fresh workers on a fresh broker score the preload, then take the offered load (and, with ``soak``, a soak)."""
    with _preloaded(cfg, repetition, "lat", data, workdir, run) as (bootstrap, pid, own):
        warmup, workers = engine_rate(bootstrap, own, workdir, cfg.latency_workers)
        try:
            run["latency_warmup"] = warmup
            latency = offered_phase(bootstrap, own, workers, load, cfg.latency_rate, "lat-", cfg.events, pid)
            rss = latency.pop("rss_mb")
            run["latency"] = latency
            print(f"latency at {cfg.latency_rate:,.0f}/s offered, {latency['workers']} worker(s), after scoring the "
                  f"preload at {warmup['events_per_s']:,.0f}/s: p50 {ms(latency['p50_ms'])} ms, p95 "
                  f"{ms(latency['p95_ms'])} ms, p99 {ms(latency['p99_ms'])} ms; {split(latency)}; {drift(latency)}",
                  flush=True)
            hops = next((s["hop_ms"] for s in workers.stats() if s.get("hop_ms")), None)
            if hops:  # the workers' last 5,000 transactions: the offered load's, not the preload's backlog
                latency["hop_ms"] = hops
                print(f"of which the entity hops (arrival to enriched record, first worker, its last {hops['n']:,} "
                      f"transactions): p50 {hops['p50']} ms, p99 {hops['p99']} ms", flush=True)
            if soak and cfg.soak_seconds > 0:
                rate = cfg.soak_rate or cfg.latency_rate
                soak_load = records(int(rate * cfg.soak_seconds), cfg.cards, prefix="soak-", seed=7, phase=2)
                result = offered_phase(bootstrap, own, workers, soak_load, rate, "soak-", cfg.events + len(load), pid)
                rss = result.pop("rss_mb")
                run["soak"] = result
                print(f"soak at {rate:,.0f}/s offered for {cfg.soak_seconds:.0f} s: p50 {ms(result['p50_ms'])} ms, "
                      f"p95 {ms(result['p95_ms'])} ms, p99 {ms(result['p99_ms'])} ms; {split(result)}; "
                      f"{drift(result)}", flush=True)
        finally:
            workers.stop()
    last = run.get("soak", latency)
    memory = run["memory_rss_mb"] = memory_summary(rss)
    print(f"worker RSS: {memory['start']:.0f} MB at start, {memory['middle']:.0f} MB half-way, "
          f"{memory['end']:.0f} MB after {rss[-1][0]:.0f} s; second half {memory['second_half_mb_per_min']:+.2f} "
          f"MB/min", flush=True)
    start, end = last["state"]["start"], last["state"]["end"]
    print(f"worker state: table keys {start.get('table_keys')} -> {end.get('table_keys')}, Python heap blocks "
          f"{start.get('python_heap_blocks')} -> {end.get('python_heap_blocks')}", flush=True)


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every phase ``cfg.repeat`` times; return (and write) every repetition's figures and their summary."""
    cfg.validate()
    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-bench-"))
    results: dict[str, Any] = {"config": {k: v for k, v in asdict(cfg).items() if k != "notes"},
                               "command": cfg.command_line(), "machine": {"cpus": os.cpu_count()},
                               "workdir": str(workdir)}
    setup_started = time.monotonic()
    if cfg.checkpoint == "auto":
        cfg.checkpoint = results["config"]["checkpoint"] = train_checkpoint(cfg, workdir)
    results["models"] = ["online", "sequence"] if cfg.checkpoint else ["online"]
    data = records(cfg.events, cfg.cards)
    # One offered load for the floor and the engine, continuing the preload's event time.
    load = records(int(cfg.latency_rate * cfg.latency_seconds), cfg.cards, prefix="lat-", seed=6, phase=1)
    results["setup_seconds"] = round(time.monotonic() - setup_started, 1)  # training and generating the data
    if cfg.bootstrap_servers:
        print(f"on the broker at {cfg.bootstrap_servers}; this run's topics are bench-{cfg.run_id}-*", flush=True)
    runs: list[dict[str, Any]] = []
    results["runs"] = runs
    for repetition in range(1, cfg.repeat + 1):
        if cfg.repeat > 1:
            print(f"-- repetition {repetition} of {cfg.repeat}", flush=True)
        run: dict[str, Any] = {"repetition": repetition}
        runs.append(run)
        # How long each phase took (not a figure: what sizing a run's --events and --repeat needs).
        seconds = run["phase_seconds"] = {}
        started = time.monotonic()
        _throughput(cfg, repetition, data, run, workdir)
        seconds["throughput"], started = round(time.monotonic() - started, 1), time.monotonic()
        _floor(cfg, repetition, data, load, run, workdir)
        seconds["floor"], started = round(time.monotonic() - started, 1), time.monotonic()
        _engine_latency(cfg, repetition, data, load, run, workdir, soak=repetition == cfg.repeat)
        seconds["latency"] = round(time.monotonic() - started, 1)
        results["summary"] = summarise(runs)
        Path(cfg.out).write_text(json.dumps(results, indent=2))  # after each repetition: a cut-short run keeps its own
    print(f"-- every figure over {cfg.repeat} repetition(s): median, min-max, interquartile range (4 or more)",
          flush=True)
    for line in summary_lines(results["summary"]):
        print(line, flush=True)
    return results
