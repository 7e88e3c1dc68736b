"""Test helpers: a worker in its own process, and Kafka clients that are not Faust.

Integration tests talk to the engine only through Kafka (kafka-python), the
way a producer or an alert subscriber in another team would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.contracts.settings import Settings
from tests.brokers import backend

__all__ = [
    "BASE_MS",
    "Trickle",
    "WorkerProcess",
    "as_records",
    "consume_all",
    "fast_settings",
    "header",
    "make_traffic",
    "produce",
    "stop_child",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[1]


def fast_settings(bootstrap: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for one test: its own topics and group, short group timeouts."""
    tag = uuid.uuid4().hex[:8]
    base: dict[str, Any] = {
        "app_id": f"fs-test-{tag}",
        "bootstrap_servers": bootstrap,
        "topic_partitions": 2,
        "topic_transactions": f"transactions-{tag}",
        "topic_feedback": f"feedback-{tag}",
        "topic_scores": f"scores-{tag}",
        "topic_alerts": f"alerts-{tag}",
        "topic_transactions_dlq": f"transactions.dlq-{tag}",
        "topic_feedback_dlq": f"feedback.dlq-{tag}",
        "topic_rules": f"rules-{tag}",
        "topic_ops": f"ops-{tag}",
        # Group membership settles in ~4 s on the embedded broker with these.
        "broker_session_timeout_s": 6.0,
        "broker_heartbeat_interval_s": 1.0,
        "broker_rebalance_timeout_s": 6.0,
        "broker_max_poll_interval_s": 6.0,
        "batch_timeout_s": 0.0,
        "data_dir": str(data_dir),
        "log_level": "info",
        "model_signing_key": "test-signing-key-" + tag,
        "web_token": "test-web-token-" + tag,
        "snapshot_interval_s": 0.2,
        "embedded_broker_compat": backend() == "embedded",
    }
    # Workers get their settings from to_env(), which would override the variable in
    # our own environment: pass it on, so `FRAUDSTREAM_FETCH_MAX_WAIT_MS=10 pytest` means it.
    if os.environ.get("FRAUDSTREAM_FETCH_MAX_WAIT_MS"):
        base["fetch_max_wait_ms"] = int(os.environ["FRAUDSTREAM_FETCH_MAX_WAIT_MS"])
    base.update(overrides)
    return Settings(**base)


def stop_child(proc: subprocess.Popen[Any], timeout: float = 30.0) -> int | None:
    """SIGTERM ``proc`` and wait; SIGKILL it if it is still there after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class WorkerProcess:
    """``fraudstream worker`` as a child process with ``settings`` in its environment."""

    def __init__(self, settings: Settings, log_path: Path, command: Sequence[str] = ("stream.tools.cli", "worker")) -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = list(command)  # what ``python -m`` runs: the real worker, or a test's variant of it
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the worker's output for its life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *self.command], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (Faust flushes and commits on the way out)."""
        if self.proc is None:
            return None
        return stop_child(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """GET a web view of the worker, with its service token when the settings have one."""
        url = f"http://{self.settings.web_host}:{self.settings.web_port}{path}"
        headers = {"Authorization": f"Bearer {self.settings.web_token}"} if self.settings.web_token else {}
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            return json.loads(resp.read())


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]],
            partition: int | None = None) -> int:
    """Send ``(key, value)`` pairs with kafka-python (to ``partition``, or by key) and flush; return the count."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024)
    n = 0
    for key, value in records:
        producer.send(topic, key=key, value=value, partition=partition)
        n += 1
    producer.flush()
    producer.close()
    return n


def consume_all(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout: float = 60.0,
    decode: bool = True,
) -> list[Any]:
    """Read ``topic`` from the start (no group) until ``until(records)`` or timeout.

    Records are decoded JSON values, or raw kafka-python records when
    ``decode=False``.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=500)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.2)
        if partitions is None:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        while time.monotonic() < deadline and not until(records):
            batch = consumer.poll(timeout_ms=300)
            for msgs in batch.values():
                for m in msgs:
                    records.append(json.loads(m.value) if decode else m)
    finally:
        consumer.close()
    return records


def read_to_end(bootstrap: str, topic: str, timeout: float = 60.0, decode: bool = True) -> list[Any]:
    """Every record of ``topic`` up to its end offsets as they are now (so duplicates show).

    The end offsets are the true ones: the embedded broker answers ListOffsets
    with the first offset of a partition's last batch plus one
    (docs/embedded-broker.md), which would stop the read short of that batch.
    """
    import asyncio

    from stream.patches.embedded_end_offsets import true_end_offsets

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = asyncio.run(true_end_offsets(bootstrap, consumer.end_offsets(tps)))
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic} not read to its end offsets {end} in {timeout} s"
            for messages in consumer.poll(timeout_ms=300).values():
                out.extend(json.loads(m.value) if decode else m for m in messages)
        return out
    finally:
        consumer.close()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def header(record: Any, name: str) -> str | None:
    for k, v in record.headers or []:
        if k == name:
            return v.decode() if isinstance(v, bytes) else v
    return None


BASE_MS = 1_740_830_400_000  # 2025-03-01T12:00:00Z


def make_traffic(n_cards: int, per_card: int, fraud_every: int = 0, seed: int = 7) -> list[dict[str, Any]]:
    """Simple labelled traffic in event-time order.

    Each card spends 5-80 at a few home merchants in FR every ~1-3 h. When
    ``fraud_every`` > 0, every ``fraud_every``-th transaction of a card (after
    its 5th) is fraud: 900-2000 in BR, e-commerce, a new merchant, minutes
    after the previous one. Records carry ``is_fraud`` (ignored by the engine).
    """
    import random

    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for c in range(n_cards):
        t = BASE_MS + rng.randint(0, 3_600_000)
        for i in range(per_card):
            fraud = fraud_every > 0 and i >= 5 and i % fraud_every == 0
            if fraud:
                t += rng.randint(60_000, 300_000)
                row = {"amount": round(rng.uniform(900, 2000), 2), "country": "BR", "channel": "ecom",
                           "merchant_id": f"shady-{rng.randint(0, 9)}", "mcc": "5732"}
            else:
                t += rng.randint(3_600_000, 3 * 3_600_000)
                row = {"amount": round(rng.uniform(5, 80), 2), "country": "FR", "channel": "pos",
                           "merchant_id": f"m{c % 40}-{rng.randint(0, 2)}", "mcc": "5411"}
            rows.append(dict(transaction_id=f"t{c}-{i}", card_id=f"card-{c}", timestamp=t,
                             currency="EUR", is_fraud=int(fraud), **row))
    rows.sort(key=lambda r: r["timestamp"])
    return rows


def as_records(rows: Iterable[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs keyed by card, the way a producer must send them."""
    return [(r["card_id"].encode(), json.dumps(r).encode()) for r in rows]


class Trickle:
    """A thin stream of extra transactions, one produce request each, while a test waits.

    The embedded broker hides the rest of a partition's last record batch from
    a consumer positioned inside it until another batch arrives (README, "The
    embedded broker"). After a rebalance a worker resumes from its committed
    offset, which can be inside that batch; a live stream always brings the next
    batch, and this stands in for it. Its cards are distinct from the test's.
    """

    def __init__(self, bootstrap: str, topic: str, timestamp_ms: int, cards: int = 16) -> None:
        import threading

        self.bootstrap, self.topic, self.timestamp_ms, self.cards = bootstrap, topic, timestamp_ms, cards
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        while not self._stop.wait(0.5):
            for c in range(self.cards):
                card = f"trickle-{c}"
                value = {"transaction_id": f"trickle-{c}-{self.sent}", "card_id": card,
                         "timestamp": self.timestamp_ms, "amount": 1.0}
                producer.send(self.topic, key=card.encode(), value=json.dumps(value).encode())
                producer.flush()
            self.sent += 1
        producer.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def scores_of(bootstrap: str, settings: Settings, rows: Sequence[dict[str, Any]], timeout: float = 120
              ) -> dict[str, dict[str, Any]]:
    """The score record of each of ``rows`` (by transaction id), waiting until every one is scored."""
    ids = {r["transaction_id"] for r in rows}
    records = consume_all(bootstrap, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids,
                          timeout=timeout)
    by_id = {s["transaction_id"]: s for s in records if s["transaction_id"] in ids}
    assert set(by_id) == ids, f"{len(ids - set(by_id))} of {len(ids)} not scored"
    return by_id
