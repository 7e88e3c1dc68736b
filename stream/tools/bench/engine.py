"""The engine under test: ``fraudstream worker`` processes, and its rate over a preloaded topic (c)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from stream.tools.bench.config import BenchConfig, worker_settings
from stream.tools.children import die_with_parent, stop_children

__all__ = ["Workers", "engine_rate"]


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


class Workers:
    """``fraudstream worker`` processes for one engine run, on the run's transactions topic."""

    def __init__(self, bootstrap: str, cfg: BenchConfig, workdir: Path, count: int) -> None:
        from stream.kafka.topics import ensure_topics
        from stream.tools.broker import free_port

        tag = uuid.uuid4().hex[:6]
        self.base = worker_settings(bootstrap, cfg, tag)
        ensure_topics(self.base)
        if cfg.rules:  # on the topic before the workers start: they read it whole before their first batch
            from stream.tools.bench.config import bench_rules
            from stream.tools.rules import write_rules

            write_rules(self.base, bench_rules(cfg.rules))
        self.ports = [free_port() for _ in range(count)]
        self.procs = []
        for i, port in enumerate(self.ports):
            env = {**os.environ, **self.base.replace(web_port=port, data_dir=str(workdir / f"{tag}-{i}")).to_env()}
            log = open(workdir / f"worker-{tag}-{i}.log", "wb")  # noqa: SIM115 - the child's stdout for its life
            self.procs.append(subprocess.Popen([sys.executable, "-m", "stream.tools.cli", "worker"], env=env,
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
        stop_children(self.procs, timeout=30)


def engine_rate(bootstrap: str, cfg: BenchConfig, workdir: Path, count: int) -> tuple[dict[str, Any], Workers]:
    """Start ``count`` workers on the preloaded topic and wait until they scored it: their rate and stage costs.

    Returns the workers still running (the latency phase offers its load to
    them); the caller stops them. Workers that fail to score are stopped here.
    """
    workers = Workers(bootstrap, cfg, workdir, count)
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
        # The dynamic rules evaluated on every transaction, and their cost (the "rules" stage, per transaction).
        "rules": cfg.rules,
        "rules_us_per_event": round(stages.get("rules", 0.0) / max(scored, 1) * 1e6, 2),
        # Per-transaction cost grows with the card's history (features, windows): the mean says
        # how full the histories were, so runs on different data compare.
        "mean_history": round(sum(s.get("history_entries", 0) for s in stats) / max(scored, 1), 1),
        # Per-batch costs (a forward pass, a produce round) spread over this many transactions.
        "mean_batch": round(scored / max(sum(s.get("batches", 0) for s in stats), 1), 1),
    }
    return result, workers
