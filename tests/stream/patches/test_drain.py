"""Direct delivery (stream/patches/faust_drain.py): records reach the agent without two tasks each, and none is lost.

Each test runs a real Faust worker (``tests/stream/patches/draining_worker.py``) on the
broker over the same preloaded topic, once with Faust's own fetch loop where
the contrast is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import backend
from tests.support import REPO, produce, stop_child, wait_for

pytestmark = pytest.mark.broker

N = 3000


def _run(broker: str, topic: str, tmp_path: Path, buffer: int, direct: bool, prompt: bool = True) -> dict[str, Any]:
    out = tmp_path / f"drain-{buffer}-{int(direct)}-{int(prompt)}.json"
    log = tmp_path / f"drain-{buffer}-{int(direct)}-{int(prompt)}.log"
    env = {**os.environ, "FRAUDSTREAM_TEST_EMBEDDED": "1" if backend() == "embedded" else "0"}
    with open(log, "w") as log_fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.stream.patches.draining_worker", broker, topic, str(N), str(buffer),
             "1" if direct else "0", str(out), "1" if prompt else "0"],
            cwd=REPO, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    report: dict[str, Any] = {}

    def reported() -> bool:
        # The worker rewrites the file after every batch once it has N records: an open() that truncated
        # it, or a write still under way, reads as a file that is not JSON yet; wait for a whole report.
        assert worker.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
        try:
            report.update(json.loads(out.read_text()))
        except (FileNotFoundError, ValueError):
            return False
        return True

    try:
        assert wait_for(reported, timeout=90), f"worker did not receive all {N} records:\n{log.read_text()[-3000:]}"
        return report
    finally:
        stop_child(worker, timeout=20)


@pytest.fixture
def topic(broker: str) -> str:
    name = f"drain-{uuid.uuid4().hex[:8]}"
    produce(broker, name, [(b"k%d" % (i % 8), b"%d" % i) for i in range(N)])
    return name


def test_records_reach_the_agent_without_a_task_pair_each(broker: str, topic: str, tmp_path: Path) -> None:
    faust_loop = _run(broker, topic, tmp_path, buffer=4096, direct=False)
    direct = _run(broker, topic, tmp_path, buffer=4096, direct=True)
    assert direct["distinct"] == N and direct["records"] == N, direct  # nothing lost, nothing twice
    assert faust_loop["wait_first"] >= N, f"Faust's loop should wait_first per record: {faust_loop}"
    assert direct["wait_first"] < N // 10, f"direct delivery still used Faust's per-record path: {direct}"


def test_a_full_agent_buffer_falls_back_to_faust_and_loses_nothing(broker: str, topic: str, tmp_path: Path) -> None:
    # An 8-record buffer against a 5 ms batch: the queue is full most of the time.
    result = _run(broker, topic, tmp_path, buffer=8, direct=True)
    assert result["distinct"] == N and result["records"] == N, result
    assert result["wait_first"] > 0, f"the buffer never filled, the fallback was not exercised: {result}"


def test_a_resumed_partition_is_polled_at_once(broker: str, topic: str, tmp_path: Path) -> None:
    # A 64-record buffer: Faust pauses every partition over and over while fetched records wait.
    # Unpatched, the poll then sleeps (or waits in aiokafka) a whole second and returns nothing
    # while the agent idles (stream/patches/faust_buffer_resume.py).
    prompt = _run(broker, topic, tmp_path, buffer=64, direct=True)
    assert prompt["distinct"] == N and prompt["records"] == N, prompt
    assert prompt["idle_polls"] == 0, f"a poll came back empty while fetched records waited: {prompt}"
    unpatched = _run(broker, topic, tmp_path, buffer=64, direct=True, prompt=False)
    assert unpatched["distinct"] == N, unpatched
    # If this ever fails, Faust or aiokafka wakes the poll itself now and the patch can go.
    assert unpatched["idle_polls"] > 0, f"the unpatched consumer never idled with records waiting: {unpatched}"


def test_a_resumed_partition_is_polled_at_once_while_another_is_idle(broker: str, tmp_path: Path) -> None:
    # Every record on partition 0, partition 1 empty: when Faust pauses partition 0, a poll for the idle
    # partition 1 waits inside aiokafka, which unpatched noticed the resume only at its timeout.
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"drain-idle-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    produce(broker, name, [(None, b"%d" % i) for i in range(N)], partition=0)
    prompt = _run(broker, name, tmp_path, buffer=64, direct=True)
    assert prompt["distinct"] == N and prompt["records"] == N, prompt
    assert prompt["idle_polls"] == 0, f"a poll came back empty while fetched records waited: {prompt}"


def test_room_is_the_least_free_space_of_any_channel_queue_and_none_while_faust_would_wait() -> None:
    from types import SimpleNamespace

    from stream.patches.faust_drain import _can_deliver_now, _room

    def queue(maxsize: int, size: int) -> Any:
        return SimpleNamespace(maxsize=maxsize, qsize=lambda: size, full=lambda: 0 < maxsize <= size)

    shared, roomy, unbounded = queue(10, 7), queue(100, 0), queue(0, 5_000)
    chan = [SimpleNamespace(queue=q) for q in (shared, roomy, unbounded)]
    index = {"tp0": [chan[0], chan[1]], "tp1": [chan[0]], "tp2": [chan[2]]}  # Faust's are sets of channels
    active, buffer, resubscribing = [True], SimpleNamespace(size=0, max_messages=1000), [False]
    app = SimpleNamespace(flow_control=SimpleNamespace(is_active=lambda: active[0]),
                          producer=SimpleNamespace(buffer=buffer),
                          topics=SimpleNamespace(_tp_to_callback_lock=SimpleNamespace(locked=lambda: resubscribing[0])))
    assert _room(app, index) == 3  # the shared queue's 3 free places, counted once
    resubscribing[0] = True  # the conductor holds the lock on_message takes
    assert _room(app, index) == 0 and not _can_deliver_now(app, index, "tp2")
    resubscribing[0] = False
    full = queue(10, 10)
    index["tp3"] = [SimpleNamespace(queue=full)]  # another agent's queue is full: no count, but ...
    assert _room(app, index) == 0
    assert _can_deliver_now(app, index, "tp0") and not _can_deliver_now(app, index, "tp3")  # ... per record
    del index["tp3"]
    buffer.size = 1001  # on_message would wait for Faust's producer buffer to ebb
    assert _room(app, index) == 0
    buffer.size, active[0] = 0, False  # a rebalance stopped the flow
    assert _room(app, index) == 0
    active[0] = True
    assert _room(app, {"tp2": [chan[2]]}) > 1_000_000  # unbounded queues never block


def test_each_record_reads_no_faust_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding a record into an event and checking the producer buffer read app.conf per record (~5 µs)."""
    import asyncio

    import faust
    from faust.types import Message
    from faust.types.settings.base import SettingsRegistry

    from stream.patches.faust_drain import deliver_directly

    app = faust.App(f"drain-{uuid.uuid4().hex[:6]}", broker="kafka://localhost:9092")
    deliver_directly(app)
    topic = app.topic("t", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    buffer = app.producer.buffer
    reads: list[str] = []
    plain = SettingsRegistry.__getattribute__

    def counting(self: Any, key: str) -> Any:
        if not key.startswith("_"):
            reads.append(key)
        return plain(self, key)

    monkeypatch.setattr(SettingsRegistry, "__getattribute__", counting)

    async def deliver(n: int) -> list[Any]:
        events = []
        for i in range(n):
            assert buffer.size == len(buffer.pending._queue) == 0
            events.append(await topic.decode(Message("t", 0, i, 0.0, 0, None, b"card", b"value-%d" % i, None)))
        return events

    first = asyncio.run(deliver(1))
    reads.clear()
    events = asyncio.run(deliver(50))
    assert reads == []  # Faust's own path reads producer_threaded and Event once each per record
    assert all(isinstance(e, app.conf.Event) for e in first + events)
    assert [(e.key, e.value, e.message.offset) for e in events] == [(b"card", b"value-%d" % i, i) for i in range(50)]


def test_raw_bytes_topics_decode_as_faust_raw_serializer_does() -> None:
    import asyncio

    from faust.types import Message

    from stream.contracts.settings import Settings
    from stream.runtime.engine import worker_app, worker_topic

    settings = Settings(model_signing_key="k" * 16)
    app = worker_app(settings)
    ours = worker_topic(app, settings, "ours")
    faust_raw = app.topic("theirs", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    assert type(ours.schema).__name__ == "RawBytes" and (ours.key_type, ours.value_type) == (bytes, bytes)
    assert (ours.key_serializer, ours.value_serializer) == ("raw", "raw")  # what Faust encodes a send with

    async def decoded(topic: Any) -> list[tuple[Any, Any]]:
        out = []
        for key, value in ((b"card", b'{"a": 1}'), (None, b"v"), (b"k", None), (b"", b""), (None, None)):
            event = await topic.decode(Message("t", 0, 0, 0.0, 0, None, key, value, None))
            out.append((event.key, event.value))
        return out

    assert asyncio.run(decoded(ours)) == asyncio.run(decoded(faust_raw))
