"""Shared fixtures: one real Kafka-protocol broker per test session.

``broker`` is the embedded Tansu broker (no Docker, no JVM), or real Apache
Kafka in a container with ``FRAUDSTREAM_TEST_BROKER=kafka`` (``tests/brokers.py``):
one fixture, two backends, the same tests. Each test gets its own topics and
consumer group from :func:`tests.support.fast_settings`, so tests share the
broker without sharing state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.contracts.settings import Settings
from stream.kafka.topics import ensure_topics
from tests import brokers
from tests.support import WorkerProcess, fast_settings


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a broker that lives for the whole session."""
    if brokers.backend() == "kafka":
        reason = brokers.docker_unavailable()
        if reason is not None:
            if os.environ.get("REQUIRE_DOCKER") == "1":
                pytest.fail(f"REQUIRE_DOCKER=1 but {reason}")
            pytest.skip(f"FRAUDSTREAM_TEST_BROKER=kafka: {reason}; unset it to use the embedded broker")
    with brokers.running_broker(tmp_path_factory.mktemp("broker")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def embedded_only() -> None:
    """Skip tests about the embedded broker's own behaviour when running on real Kafka."""
    if brokers.backend() != "embedded":
        pytest.skip("checks a quirk of the embedded broker")


@pytest.fixture
def settings(broker: str, tmp_path: Path) -> Settings:
    """Fresh topics (created up front) and group for one test."""
    s = fast_settings(broker, tmp_path / "data")
    ensure_topics(s)
    return s


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[type]:
    """Start workers with ``worker_factory(settings)``; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "worker",
              command: tuple[str, ...] = ("stream.tools.cli", "worker")) -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"{name}-{len(started)}.log", command).start()
        started.append(w)
        return w

    yield start  # type: ignore[misc]
    for w in started:
        w.kill()
