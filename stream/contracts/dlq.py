"""Dead letters: the original record, unchanged, plus why it was rejected.

The DLQ record keeps the source key and value bytes exactly as they arrived
(so a fixed producer or a replay can resend them) and carries the context in
Kafka headers, the convention of Kafka Connect's DLQ:

==========================  ==============================================
``dlq.reason``              stable reason code (see ``InvalidRecord``)
``dlq.detail``              a sentence for the human on call
``dlq.source.topic``        topic the record came from
``dlq.source.partition``    its partition (decimal string)
``dlq.source.offset``       its offset (decimal string)
``dlq.failed_at``           wall time of the rejection, epoch ms
==========================  ==============================================

Example:
    >>> dict(dlq_headers("invalid_amount", "amount must be >= 0", "transactions", 3, 42, now_ms=1))
    {'dlq.reason': b'invalid_amount', 'dlq.detail': b'amount must be >= 0', 'dlq.source.topic': b'transactions', 'dlq.source.partition': b'3', 'dlq.source.offset': b'42', 'dlq.failed_at': b'1'}
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import Any

__all__ = ["DeadLetter", "dlq_headers", "send_dead_letter"]

_MAX_DETAIL = 1000


class DeadLetter:
    """A rejected record on its way to a DLQ topic."""

    __slots__ = ("detail", "key", "offset", "partition", "reason", "source_headers", "topic", "value")

    def __init__(
        self,
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        source_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.source_headers = list(source_headers)

    def headers(self) -> list[tuple[str, bytes]]:
        """The source's own headers, then ours, so nothing is lost."""
        headers = [(k, bytes(v) if v is not None else b"") for k, v in self.source_headers]
        return headers + dlq_headers(self.reason, self.detail, self.topic, self.partition, self.offset)

    def queue(self, outbox: Any, dlq_topic: str) -> None:
        """Add to an :class:`~stream.kafka.outbox.Outbox` (sent with the rest of its batch)."""
        outbox.add(dlq_topic, None, self.key, self.value, self.headers())

    @classmethod
    def from_message(cls, message: Any, reason: str, detail: str) -> DeadLetter:
        """Build from a Faust ``Message`` (raw key/value bytes)."""
        headers = message.headers or []
        if isinstance(headers, dict):
            headers = list(headers.items())
        return cls(reason, detail, message.topic, message.partition, message.offset,
                   message.key, message.value, headers)


def dlq_headers(
    reason: str, detail: str, topic: str, partition: int, offset: int, now_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """The ``dlq.*`` headers for one rejected record."""
    failed_at = int(time.time() * 1000) if now_ms is None else now_ms
    return [
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail[:_MAX_DETAIL].encode("utf-8", "replace")),
        ("dlq.source.topic", topic.encode()),
        ("dlq.source.partition", str(partition).encode()),
        ("dlq.source.offset", str(offset).encode()),
        ("dlq.failed_at", str(failed_at).encode()),
    ]


async def send_dead_letter(producer: Any, dlq_topic: str, letter: DeadLetter) -> Awaitable[Any]:
    """Queue ``letter`` on ``dlq_topic`` with a Faust producer; returns the delivery future."""
    fut: Awaitable[Any] = await producer.send(
        dlq_topic, letter.key, letter.value, partition=None, timestamp=None, headers=letter.headers()
    )
    return fut
