"""Shared fixtures: one real Kafka-protocol broker per test session.

``broker`` is the embedded Tansu broker (no Docker, no JVM). Each test gets
its own topics and consumer group from :func:`tests.support.fast_settings`,
so tests share the broker without sharing state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.broker import EmbeddedBroker
from stream.settings import Settings
from stream.topics import ensure_topics
from tests.support import WorkerProcess, fast_settings


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a broker that lives for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b.bootstrap_servers


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

    def start(settings: Settings, name: str = "worker") -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"{name}-{len(started)}.log").start()
        started.append(w)
        return w

    yield start  # type: ignore[misc]
    for w in started:
        w.kill()
