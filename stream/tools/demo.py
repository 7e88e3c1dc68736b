"""``fraudstream demo``: the whole engine on one machine, start to finish, in about two minutes.

1. generates a labelled history with the five fraud scenarios (``replay.generate``);
2. trains the sequence model on its first days (``models.train``);
3. starts the embedded broker, creates the topics, and starts a worker process
   (``fraudstream worker``) with that model;
4. replays the whole history into Kafka at a fixed rate (``replay.replay``),
   each label reaching the feedback topic a day (event time) after its
   transaction, so the online learner learns while the engine scores;
5. shows progress (sent, scored per second, alerts) and the first alerts;
6. evaluates the scores of the days after training against the labels,
   prints the headline figures and the report's path, and stops everything.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.tools.children import die_with_parent, stop_children

__all__ = ["run_demo"]

_DAY_MS = 86_400_000


@dataclass
class _Progress:
    scored: set[str] = field(default_factory=set)
    scores: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def _watch(bootstrap: str, topics: tuple[str, str], progress: _Progress) -> None:
    """Read scores and alerts as a subscriber would (no consumer group)."""
    from kafka import KafkaConsumer, TopicPartition

    from stream.kafka import clients

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = []
    for topic in topics:
        for p in sorted(clients.wait_for_partitions(consumer, topic, 30.0, stop=progress.stop)):
            tps.append(TopicPartition(topic, p))
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    while not progress.stop.is_set():
        for tp, msgs in consumer.poll(timeout_ms=200).items():
            with progress.lock:
                for m in msgs:
                    record = json.loads(m.value)
                    if tp.topic == topics[0]:
                        if record["transaction_id"] not in progress.scored:
                            progress.scored.add(record["transaction_id"])
                            progress.scores.append(record)
                    else:
                        progress.alerts.append(record)
    consumer.close()


def _wait_ready(worker: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    """Faust logs "[^Worker]: Ready" once partitions are assigned and tables recovered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}; see {log}")
        if b"Worker]: Ready" in log.read_bytes():
            return
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready after {timeout:.0f} s; see {log}")


def _print_alert(alert: dict[str, Any]) -> None:
    t = alert["transaction"]
    reasons = "; ".join(r["text"] for r in alert["reasons"][:2]) or "-"
    print(f"  ALERT {t['timestamp'][:16]} card {alert['card_id']:<7} {t['amount']:>9.2f} {t['currency']} "
          f"{t['country']}/{t['channel']:<11} score {alert['score']:.2f}  {reasons}", flush=True)


def run_demo(rows: int = 30_000, cards: int = 1500, days: int = 12, train_days: int = 9, rate: float = 1000.0,
             out_dir: str = "demo-output") -> int:
    """Run the demo; returns a process exit code."""
    from models.train import TrainConfig, train
    from replay.curves import compute_curves
    from replay.evaluate import evaluate
    from replay.generate import GeneratorConfig, generate, write
    from replay.inputs import Label
    from replay.plan import LabelPolicy
    from replay.progress import Pace
    from replay.replay import ReplayConfig, run_replay
    from replay.report import format_headline, write_report
    from stream.contracts.settings import Settings
    from stream.kafka.topics import ensure_topics
    from stream.tools.broker import EmbeddedBroker

    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-demo-"))
    print(f"1/5 generating {rows:,} labelled transactions over {cards:,} cards and {days} days ...", flush=True)
    gen = GeneratorConfig(seed=42, n_transactions=rows, n_cards=cards, n_merchants=max(cards // 4, 100), days=days,
                          fraud_rate=0.01)
    table = generate(gen)
    history = write(table, workdir / "history.parquet")
    cutoff = gen.start_ms + train_days * _DAY_MS
    print(f"2/5 training the sequence model on the first {train_days} days ...", flush=True)
    import pyarrow.compute as pc

    trained = train(TrainConfig(table=table.filter(pc.less(table["timestamp"], cutoff)), out=workdir / "model",
                                epochs=2, legit_per_epoch=20_000, val_legit=10_000, threads=2))
    print(f"    {trained.version}: validation AP {trained.val_ap:.3f} ({trained.seconds:.0f} s)", flush=True)

    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    print(f"3/5 embedded broker on {broker.bootstrap_servers} (log {broker.log_path})", flush=True)
    settings = Settings.from_env(
        {},
        bootstrap_servers=broker.bootstrap_servers,
        topic_partitions=4,
        data_dir=str(workdir / "data"),
        broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0,
        broker_rebalance_timeout_s=6.0, broker_max_poll_interval_s=60.0,
        model_signing_key=secrets.token_hex(32),
        embedded_broker_compat=True,
        fetch_max_wait_ms=10,
        sequence_model_path=str(workdir / "model"),
        entities="merchant_id",  # terminal profiles: the breached-terminal fraud is most of the generated fraud
    )
    ensure_topics(settings)
    worker_log = workdir / "worker.log"
    with open(worker_log, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "stream.tools.cli", "worker"],
                                  env={**os.environ, **settings.to_env()}, stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=die_with_parent())  # noqa: PLW1509 - only prctl before exec
    print(f"    worker pid {worker.pid} (log {worker_log}); waiting for it to join its group ...", flush=True)
    progress = _Progress()
    try:
        _wait_ready(worker, worker_log)
        watcher = threading.Thread(target=_watch, args=(broker.bootstrap_servers,
                                   (settings.topic_scores, settings.topic_alerts), progress), daemon=True)
        watcher.start()
        print(f"4/5 replaying {rows:,} transactions and their labels (1 day late) at {rate:,.0f} events/s ...",
              flush=True)
        done = threading.Event()
        summary: list[Any] = []

        def replay() -> None:
            try:
                summary.append(run_replay(ReplayConfig(
                    input=history, settings=settings, quiet=True, restart=True,
                    checkpoint=workdir / "replay-checkpoint.json",
                    labels=LabelPolicy(delay_ms=_DAY_MS), pace=Pace(mode="rate", value=rate),
                    # Each day scored by trees that know the labels received until then, as live (replay/refits.py).
                    wait_for_refits=((settings.topic_ops, settings.app_id),))))
            finally:
                done.set()

        threading.Thread(target=replay, daemon=True).start()
        _show_progress(progress, worker, done, rows)
        if summary:
            print("    " + summary[0].line(), flush=True)
    finally:
        progress.stop.set()
        stop_children([worker], timeout=30)
        broker.stop()
    with progress.lock:
        scores = [s for s in progress.scores if s["event_time"] >= cutoff]
    ids, fraud, scenario = (table[c].to_pylist() for c in ("transaction_id", "is_fraud", "scenario"))
    labels = {i: Label(int(f), sc) for i, f, sc in zip(ids, fraud, scenario, strict=True)}
    result = evaluate(scores, labels, k=50)
    json_path, html_path = write_report(result, compute_curves(scores, labels), out_dir)
    print(f"5/5 detection on the {days - train_days} days after training ({len(scores):,} transactions):", flush=True)
    print(format_headline(result), flush=True)
    print(f"report: {html_path}  figures: {json_path}", flush=True)
    shutil.rmtree(workdir / "data", ignore_errors=True)
    return 0 if len(progress.scored) == rows else 1


def _show_progress(progress: _Progress, worker: subprocess.Popen[bytes], done: threading.Event, rows: int) -> None:
    """Every 2 s: scored so far, rate, alerts, and the newest alerts; until all is scored."""
    started = time.monotonic()
    shown = 0
    deadline = None
    while True:
        time.sleep(2.0)
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.returncode}; see its log")
        with progress.lock:
            scored, alerts = len(progress.scored), list(progress.alerts)
        elapsed = time.monotonic() - started
        print(f"    [{elapsed:5.1f}s] scored {scored:>7,} of {rows:,} ({scored / elapsed:6.0f}/s)  "
              f"alerts {len(alerts):>5,}", flush=True)
        for alert in alerts[shown:shown + 2]:
            _print_alert(alert)
        shown = len(alerts)
        if scored >= rows:
            return
        if done.is_set():
            deadline = deadline or time.monotonic() + 60
            if time.monotonic() > deadline:
                print("    gave up waiting for the last scores", flush=True)
                return
