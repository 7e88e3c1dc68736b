"""The one place that builds Kafka clients, so every tool talks to Kafka as the worker does.

Two client libraries are used outside Faust: kafka-python (blocking: topics,
the alerts tail, the evaluator) and aiokafka (asyncio: replay, its resume scan,
the model follower). Each client built here gets the bootstrap servers and the
TLS / SASL options of the settings (:func:`stream.kafka.security.client_kwargs`); a
tool cannot forget them, and a caller cannot override them by accident.

Example (the configuration a client is given; nothing connects):
    >>> from stream.contracts.settings import Settings
    >>> s = Settings(bootstrap_servers="k1:9092, k2:9092", security_protocol="SASL_PLAINTEXT",
    ...              sasl_username="fraud", sasl_password="pw")
    >>> cfg = client_config(s, client_id="fraudstream-alerts")
    >>> cfg["bootstrap_servers"], cfg["security_protocol"], cfg["sasl_plain_username"], cfg["client_id"]
    (['k1:9092', 'k2:9092'], 'SASL_PLAINTEXT', 'fraud', 'fraudstream-alerts')
    >>> client_config(s, security_protocol="PLAINTEXT")
    Traceback (most recent call last):
    ...
    ValueError: security_protocol comes from the settings (FRAUDSTREAM_SECURITY_PROTOCOL), not from the caller
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from stream.contracts.settings import Settings
from stream.kafka.security import client_kwargs

__all__ = [
    "admin",
    "aio_consumer",
    "aio_producer",
    "client_config",
    "consumer",
    "consumer_supports",
    "producer",
    "wait_for_partitions",
]

# Options that only the settings may set (what client_kwargs can return).
_SECURITY_OPTIONS = ("security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
                     "sasl_plain_password")

# kind -> (module, class). Resolved at call time: the offline paths of the tools never import kafka.
_CLASSES = {
    "consumer": ("kafka", "KafkaConsumer"),
    "producer": ("kafka", "KafkaProducer"),
    "admin": ("kafka", "KafkaAdminClient"),
    "aio_consumer": ("aiokafka", "AIOKafkaConsumer"),
    "aio_producer": ("aiokafka", "AIOKafkaProducer"),
}


def client_config(settings: Settings, **config: Any) -> dict[str, Any]:
    """Bootstrap servers and security options of ``settings``, plus the caller's own ``config``."""
    clash = sorted(set(config) & {"bootstrap_servers", *_SECURITY_OPTIONS})
    if clash:
        name = clash[0]
        raise ValueError(f"{name} comes from the settings (FRAUDSTREAM_{name.upper()}), not from the caller")
    servers = [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]
    return {"bootstrap_servers": servers, **config, **client_kwargs(settings)}


def _constructor(kind: str) -> Callable[..., Any]:
    """The client class of ``kind`` (the single point a unit test may intercept)."""
    import importlib

    module, name = _CLASSES[kind]
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _build(kind: str, settings: Settings, topics: tuple[str, ...], config: dict[str, Any]) -> Any:
    return _constructor(kind)(*topics, **client_config(settings, **config))


def consumer(settings: Settings, *topics: str, **config: Any) -> Any:
    """A kafka-python ``KafkaConsumer`` (subscribed to ``topics`` if any)."""
    return _build("consumer", settings, topics, config)


def producer(settings: Settings, **config: Any) -> Any:
    """A kafka-python ``KafkaProducer``."""
    return _build("producer", settings, (), config)


def admin(settings: Settings, **config: Any) -> Any:
    """A kafka-python ``KafkaAdminClient``."""
    return _build("admin", settings, (), config)


def aio_consumer(settings: Settings, *topics: str, **config: Any) -> Any:
    """An aiokafka ``AIOKafkaConsumer`` (not started)."""
    return _build("aio_consumer", settings, topics, config)


def aio_producer(settings: Settings, **config: Any) -> Any:
    """An aiokafka ``AIOKafkaProducer`` (not started)."""
    return _build("aio_producer", settings, (), config)


def consumer_supports(option: str) -> bool:
    """Whether the installed kafka-python's consumer takes ``option`` (some appeared in 2.1)."""
    from kafka import KafkaConsumer

    return option in KafkaConsumer.DEFAULT_CONFIG


def wait_for_partitions(client: Any, topic: str, timeout_s: float | None, *,
                        stop: threading.Event | None = None, on_wait: Callable[[], None] | None = None,
                        interval_s: float = 0.5) -> set[int]:
    """Partition numbers of ``topic`` once its metadata names some; empty after ``timeout_s`` or on ``stop``.

    A topic may not exist yet when a tool starts alongside the engine.
    ``client`` is a kafka-python consumer (``partitions_for_topic``);
    ``on_wait`` runs once, the first time the topic is missing (to tell the
    user why nothing happens); ``timeout_s=None`` waits until ``stop``.
    """
    stop = threading.Event() if stop is None else stop
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    told = False
    while not stop.is_set():
        partitions = client.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if deadline is not None and time.monotonic() >= deadline:
            break
        if on_wait is not None and not told:
            on_wait()
            told = True
        stop.wait(interval_s if deadline is None else max(0.0, min(interval_s, deadline - time.monotonic())))
    return set()
