"""Faust's consumer fetch wait, made a setting (``FRAUDSTREAM_FETCH_MAX_WAIT_MS``).

Symptom:
    Faust builds its consumer with ``fetch_max_wait_ms=1500`` and offers no
    setting to change it. Apache Kafka answers a fetch as soon as data arrives,
    so there the number only bounds idle polls; the embedded broker holds every
    fetch for the full wait, which put a median of a few hundred milliseconds
    between a record's arrival and its delivery, two orders of magnitude more
    than with a 10 ms wait (docs/embedded-broker.md).

Upstream:
    No upstream issue found (faust-streaming/faust). The constant is in
    ``AIOKafkaConsumerThread._create_worker_consumer``
    (``faust/transport/drivers/aiokafka.py``); no ``consumer_fetch_max_wait``
    setting exists in 0.15.3.

Test:
    tests/stream/patches/test_patches.py::test_the_fetch_wait_setting_reaches_fausts_consumer

Versions:
    Written for faust-streaming 0.15.3 with aiokafka 0.14.0 (``AIOKafkaConsumer``
    reads ``_fetch_max_wait_ms`` in ``start()`` when it builds its fetcher).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WRITTEN_FOR", "set_fetch_max_wait"]

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def set_fetch_max_wait(ms: int) -> None:
    """Make Faust's consumers use ``fetch_max_wait_ms=ms`` (idempotent; 0 = leave Faust's)."""
    if ms <= 0:
        return
    from faust.transport.drivers import aiokafka as driver

    original = getattr(driver.AIOKafkaConsumerThread, "_fraudstream_original_create", None)
    if original is None:
        original = driver.AIOKafkaConsumerThread._create_worker_consumer
        driver.AIOKafkaConsumerThread._fraudstream_original_create = original  # type: ignore[attr-defined]

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read by AIOKafkaConsumer.start() when it builds its fetcher
        return consumer

    driver.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
