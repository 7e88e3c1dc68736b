"""Raw-bytes topics, and the direct fetch loop's old home (now :mod:`stream.patches.faust_drain`).

:class:`RawBytes` is the schema of every engine topic. The patched Faust fetch
loop (:func:`deliver_directly`) and its helpers moved to
:mod:`stream.patches.faust_drain` and :mod:`stream.patches.faust_settings_once`;
their names stay importable from here.
"""

from __future__ import annotations

from typing import Any

from faust.serializers.schemas import Schema

# Re-exported: tests and tools import these from here.
from stream.patches.faust_drain import (  # noqa: F401
    _UNBOUNDED,
    _can_deliver_now,
    _drain_messages_direct,
    _faust_would_wait,
    _PerFetchHighwater,
    _room,
    deliver_directly,
)
from stream.patches.faust_settings_once import _buffer_size, _event_factory  # noqa: F401

__all__ = ["RawBytes", "deliver_directly"]


class RawBytes(Schema):
    """A topic schema of bytes keys and values, no codec: what Faust's ``raw`` serializer and ``bytes`` type give.

    >>> from faust.types import Message
    >>> message = Message("t", 0, 7, 0.0, 0, None, b"card-1", b'{"amount": 5}', None)
    >>> RawBytes().loads_value(None, message)
    b'{"amount": 5}'
    """

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def loads_key(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.value
