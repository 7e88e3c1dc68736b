"""``fraudstream demo``: the whole engine on one machine, start to finish.

1. starts the embedded broker and creates the topics;
2. starts a worker process (``fraudstream worker``);
3. generates labelled transactions with the five fraud scenarios;
4. streams them in event-time order at a fixed rate, with each label sent to
   the feedback topic a (compressed) day after its transaction, so the online
   learner learns while it scores;
5. shows progress (sent, scored per second, alerts) and the first alerts;
6. evaluates the scores against the labels, writes the HTML report, and stops
   everything.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = []
    for topic in topics:
        for p in sorted(consumer.partitions_for_topic(topic) or ()):
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


def run_demo(seconds: float = 60.0, rate: float = 400.0, cards: int = 2000, out_dir: str = "demo-output") -> int:
    """Run the demo; returns a process exit code."""
    from kafka import KafkaProducer

    from replay.evaluate import Label, compute_curves, evaluate
    from replay.generate import GeneratorConfig, generate
    from replay.report import format_headline, write_report
    from stream.broker import EmbeddedBroker
    from stream.settings import Settings
    from stream.topics import ensure_topics

    n = max(int(seconds * rate), 1000)
    print(f"generating {n:,} labelled transactions over {cards:,} cards ...", flush=True)
    table = generate(GeneratorConfig(seed=42, n_transactions=n, n_cards=cards, n_merchants=max(cards // 4, 100),
                                     days=14, fraud_rate=0.01))
    rows = table.to_pylist()
    labels = {r["transaction_id"]: Label(int(r["is_fraud"]), r["scenario"]) for r in rows}

    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-demo-"))
    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    print(f"embedded broker on {broker.bootstrap_servers} (log {broker.log_path})", flush=True)
    settings = Settings.from_env(
        {},
        bootstrap_servers=broker.bootstrap_servers,
        topic_partitions=4,
        data_dir=str(workdir / "data"),
        broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0,
        broker_rebalance_timeout_s=6.0, broker_max_poll_interval_s=6.0,
        min_labels_for_online=0,
        model_signing_key=secrets.token_hex(32),
        embedded_broker_compat=True,
        fetch_max_wait_ms=10,
    )
    ensure_topics(settings)
    worker_log = workdir / "worker.log"
    with open(worker_log, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"],
                                  env={**os.environ, **settings.to_env()}, stdout=log, stderr=subprocess.STDOUT)
    print(f"worker pid {worker.pid} (log {worker_log}); waiting for it to join its group ...", flush=True)
    _wait_ready(worker, worker_log)
    progress = _Progress()
    watcher = threading.Thread(target=_watch, args=(broker.bootstrap_servers,
                               (settings.topic_scores, settings.topic_alerts), progress), daemon=True)
    watcher.start()
    try:
        _stream(rows, settings, rate, progress, worker, KafkaProducer(bootstrap_servers=broker.bootstrap_servers,
                                                                        linger_ms=5))
        deadline = time.monotonic() + 60
        while len(progress.scored) < len(rows) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
        print(f"scored {len(progress.scored):,} of {len(rows):,}; alerts {len(progress.alerts):,}", flush=True)
    finally:
        progress.stop.set()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        broker.stop()
    with progress.lock:
        scores = list(progress.scores)
    result = evaluate(scores, labels, k=50)
    json_path, html_path = write_report(result, compute_curves(scores, labels), out_dir)
    print(format_headline(result), flush=True)
    print(f"report: {html_path}  figures: {json_path}", flush=True)
    shutil.rmtree(workdir / "data", ignore_errors=True)
    return 0 if len(progress.scored) == len(rows) else 1


def _stream(rows: list[dict[str, Any]], settings: Any, rate: float, progress: _Progress,
            worker: subprocess.Popen[bytes], producer: Any) -> None:
    """Send transactions at ``rate``/s and each label one event-time day later."""
    import heapq

    from stream.records import format_rfc3339

    pending: list[tuple[int, int, dict[str, Any]]] = []  # (due event time, seq, label)
    started = time.monotonic()
    last_report = started
    shown = 0
    for i, r in enumerate(rows):
        while pending and pending[0][0] <= r["timestamp"]:
            _, _, label = heapq.heappop(pending)
            producer.send(settings.topic_feedback, key=label["card_id"].encode(), value=json.dumps(label).encode())
        producer.send(settings.topic_transactions, key=r["card_id"].encode(), value=json.dumps({
            k: r[k] for k in ("transaction_id", "card_id", "timestamp", "amount", "currency", "merchant_id",
                              "mcc", "country", "channel")}).encode())
        due = r["timestamp"] + _DAY_MS
        heapq.heappush(pending, (due, i, {"transaction_id": r["transaction_id"], "card_id": r["card_id"],
                                          "label": "fraud" if r["is_fraud"] else "legit", "source": "chargeback",
                                          "labelled_at": format_rfc3339(due)}))
        ahead = (i + 1) / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        now = time.monotonic()
        if now - last_report >= 2.0:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}; see its log")
            with progress.lock:
                scored, alerts = len(progress.scored), list(progress.alerts)
            print(f"[{now - started:5.1f}s] sent {i + 1:>7,}  scored {scored:>7,} "
                  f"({scored / (now - started):6.0f}/s)  alerts {len(alerts):>5,}", flush=True)
            for alert in alerts[shown:shown + 3]:
                _print_alert(alert)
            shown = len(alerts)
            last_report = now
    producer.flush()
