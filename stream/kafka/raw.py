"""Raw-bytes topics: every engine topic's schema, bytes in and out with no codec.

Example:
    >>> RawBytes().key_serializer
    'raw'
"""

from __future__ import annotations

from typing import Any

from faust.serializers.schemas import Schema

__all__ = ["RawBytes"]


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
