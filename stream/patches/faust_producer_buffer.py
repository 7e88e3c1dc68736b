"""Faust's producer buffer allowed to hold a few micro-batches of table writes.

Symptom:
    Faust throttles stream processing once ``ProducerBuffer.max_messages``
    (100) table writes wait to reach the changelog, and logs "producer buffer
    full size ..." each time; a micro-batch makes hundreds at once. The limit is
    a class attribute with no setting: :func:`raise_producer_buffer_limit` lets
    the buffer hold a few batches (it is flushed before every commit).

Upstream:
    faust-streaming/faust#173 ("Warning - producer buffer full", open); the
    workaround given there is the same, ``max_messages`` raised by hand.

Test:
    tests/stream/patches/test_patches.py::test_the_producer_buffer_holds_a_few_micro_batches

Versions:
    Written for faust-streaming 0.15.3 (``faust.transport.producer.ProducerBuffer.max_messages``).
"""

from __future__ import annotations

__all__ = ["WRITTEN_FOR", "raise_producer_buffer_limit"]

WRITTEN_FOR = {"faust-streaming": "0.15.3"}


def raise_producer_buffer_limit(at_least: int) -> None:
    """Let every Faust producer buffer hold ``at_least`` records before it throttles (never lowers it)."""
    from faust.transport.producer import ProducerBuffer

    ProducerBuffer.max_messages = max(ProducerBuffer.max_messages, at_least)
