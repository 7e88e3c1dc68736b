"""A worker evicted for a poll timeout must rejoin and go on (stream/patches/aiokafka_poll_timeout_rejoin.py).

Kafka evicts a consumer that has not fetched for ``broker_max_poll_interval``;
aiokafka rejoins only once the application fetches again, and Faust fetches
again only once it has partitions: unpatched, the worker sat idle for good with
no error (the 10-minute soak stopped after ~78,000 records this way).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.brokers import backend
from tests.support import REPO, produce, stop_child

pytestmark = pytest.mark.broker

N = 40


def test_worker_evicted_for_a_poll_timeout_rejoins_and_processes_everything(broker: str, tmp_path: Path) -> None:
    topic = f"poll-timeout-{uuid.uuid4().hex[:8]}"
    produce(broker, topic, [(b"k", b"%d" % i) for i in range(N)])  # one key: one partition, in order

    out = tmp_path / "processed.txt"
    log = tmp_path / "worker.log"
    env = {**os.environ, "FRAUDSTREAM_TEST_EMBEDDED": "1" if backend() == "embedded" else "0"}
    with open(log, "w") as log_fh:
        # The agent stalls 6 s on its first event; the worker is evicted after 2 s without a fetch.
        worker = subprocess.Popen([sys.executable, "-m", "tests.stream.patches.stalling_worker", broker, topic, str(out), "6"],
                                  cwd=REPO, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while time.monotonic() < deadline and len(seen) < N:
            time.sleep(0.5)
            seen = set(out.read_text().split()) if out.exists() else set()
            assert worker.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
        text = log.read_text()
        missing = sorted({str(i) for i in range(N)} - seen, key=int)
        assert not missing, f"never processed after the eviction: {missing[:10]}...\n{text[-3000:]}"
        assert "Kafka took this worker's partitions" in text, "the worker was never evicted: the test proves nothing"
    finally:
        stop_child(worker, timeout=20)
