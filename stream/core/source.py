"""What the core needs of a Kafka record, and an in-memory one for tests and tools.

The core reads records through :class:`SourceRecord`, a protocol that a
Faust ``Message`` satisfies as it is, so the score agent hands its messages
over without copying them, and tests hand :class:`InMemoryRecord` lists.

Example:
    >>> r = InMemoryRecord(b"card-1", b"{}", partition=2, offset=7)
    >>> isinstance(r, SourceRecord), r.topic, r.timestamp
    (True, 'transactions', 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["InMemoryRecord", "SourceRecord"]


@runtime_checkable
class SourceRecord(Protocol):
    """A consumed Kafka record: where it came from, its bytes, and its timestamp in seconds (Faust's unit)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...
    @property
    def timestamp(self) -> float: ...


class InMemoryRecord(NamedTuple):
    """A :class:`SourceRecord` built in memory (tests, tools)."""

    key: bytes | None
    value: bytes | None
    partition: int = 0
    offset: int = 0
    timestamp: float = 0.0
    topic: str = "transactions"
    headers: Sequence[tuple[str, bytes]] = ()
