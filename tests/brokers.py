"""The two broker backends of the test suite: the embedded one, or real Apache Kafka.

``FRAUDSTREAM_TEST_BROKER=kafka`` runs the integration tests against Apache
Kafka (``apache/kafka``, KRaft, one node) in a container started through
testcontainers. Without a reachable Docker engine those tests are skipped
with the reason, or fail when ``REQUIRE_DOCKER=1``. The default is the
embedded broker (``stream/tools/broker.py``). testcontainers' ``KafkaContainer``
expects ``confluentinc/cp-kafka``, so ``apache/kafka`` runs as a generic
container with its listeners set for the mapped port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stream.tools.broker import EmbeddedBroker, free_port

__all__ = ["KAFKA_IMAGE", "backend", "docker_unavailable", "running_broker"]

KAFKA_IMAGE = os.environ.get("FRAUDSTREAM_TEST_KAFKA_IMAGE", "apache/kafka:3.9.1")


def backend() -> str:
    """``embedded`` (default) or ``kafka``."""
    value = os.environ.get("FRAUDSTREAM_TEST_BROKER", "embedded")
    if value not in ("embedded", "kafka"):
        raise ValueError(f"FRAUDSTREAM_TEST_BROKER must be embedded or kafka, got {value!r}")
    return value


def docker_unavailable() -> str | None:
    """Why no Docker engine can be used, or None when one answers."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:  # noqa: BLE001 - the docker SDK raises several unrelated types here
        return f"no Docker engine reachable ({type(exc).__name__}: {exc})"
    return None


@contextmanager
def _real_kafka() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@contextmanager
def running_broker(log_dir: Path) -> Iterator[str]:
    """Bootstrap servers of the selected backend, for the whole test session."""
    if backend() == "kafka":
        with _real_kafka() as bootstrap:
            yield bootstrap
    else:
        with EmbeddedBroker(log_path=log_dir / "broker.log") as b:
            yield b.bootstrap_servers
