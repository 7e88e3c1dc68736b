"""Changelog-backed tables and the one workaround needed to write them in batches.

Two tables, both partitioned like the input topics (co-partitioned by card):

* ``history``: card id -> the card's last N transactions as columns
  (:class:`models.history.History`; its changelog records are
  :func:`models.history_codec.encode`'s bytes, through :class:`HistoryCodec`).
  Keys are the raw card-id bytes, exactly the transactions' Kafka key, so
  Faust's table router sends a web lookup to the worker that owns the card.
* ``features``: transaction id -> what the online learner saw when it scored
  that transaction, kept for the feedback join. It lives on the card's
  partition, so feedback (keyed by card) finds it on the same worker. The
  input vector is kept packed (:func:`stream.core.packing.pack_inputs`): one string instead of a
  list of floats, since the table holds every transaction of the feature
  retention (``FRAUDSTREAM_FEATURE_RETENTION_S``).
* ``pending``: transaction id -> a label that arrived before its transaction
  was scored (the other side of the join), with the original record for the DLQ.

Faust decides a table write's changelog partition from "the current event",
which it only sets while iterating a stream one event at a time. Batched
agents (:mod:`stream.kafka.batches`) therefore set it for each write with
:func:`writing_for` (:mod:`stream.patches.faust_current_event`); the score
agent's writes go through :class:`~stream.kafka.outbox.Outbox`, which does the same.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import faust
from faust.serializers.codecs import Codec
from faust.stores.memory import Store as MemoryStore

from models.history import History
from models.history_codec import decode, encode
from models.profile import EntityProfile
from models.profile import decode as decode_profile
from models.profile import encode as encode_profile
from stream.contracts.settings import Settings
from stream.patches.faust_current_event import writing_for
from stream.patches.faust_table_codec import use_value_codec

__all__ = ["HistoryCodec", "ProfileCodec", "define_profile_tables", "define_route_table", "define_tables", "store_mapping", "writing_for"]


class _ValueCodec(Codec):
    """A Faust codec of one table's values through the model's own encoding (``kind`` values only).

    Faust uses it for the table's changelog (recovery, standbys, the
    exactly-once path's writes) and for a RocksDB store's values.
    """

    kind: type
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]

    def _dumps(self, s: Any) -> bytes:
        if not isinstance(s, self.kind):
            raise TypeError(f"this table holds {self.kind.__name__} values, not {type(s).__name__}")
        return type(self).encode(s)

    def _loads(self, s: bytes) -> Any:
        return type(self).decode(s)


class HistoryCodec(_ValueCodec):
    """The ``history`` table's values: :func:`models.history_codec.encode` / :func:`~models.history_codec.decode`
    (old JSON changelog records decode too).

    >>> from models.history import new_history
    >>> HistoryCodec().loads(HistoryCodec().dumps(new_history())) == new_history()
    True
    """

    kind, encode, decode = History, staticmethod(encode), staticmethod(decode)


class ProfileCodec(_ValueCodec):
    """An entity profile table's values: :func:`models.profile.encode` / :func:`~models.profile.decode`.

    >>> from models.profile import EntityProfile
    >>> ProfileCodec().loads(ProfileCodec().dumps(EntityProfile())) == EntityProfile()
    True
    >>> ProfileCodec().dumps(b"not a profile")
    Traceback (most recent call last):
    ...
    TypeError: this table holds EntityProfile values, not bytes
    """

    kind, encode, decode = EntityProfile, staticmethod(encode_profile), staticmethod(decode_profile)


def define_profile_tables(app: faust.App, settings: Settings) -> list[Any]:
    """One table per entity kind of ``FRAUDSTREAM_ENTITIES``: entity value -> its profile (changelog-backed)."""
    tables = []
    for entity_field in settings.entity_fields:
        table = app.Table(f"profile-{entity_field}", default=None, partitions=settings.topic_partitions,
                          key_type=bytes, help=f"{entity_field} -> its entity profile")
        use_value_codec(table, ProfileCodec())
        tables.append(table)
    return tables


def define_route_table(app: faust.App, settings: Settings) -> Any:
    """With entities: the route agent's ``routes`` table (transaction id -> card, time, entity values), else None."""
    if not settings.entity_fields:
        return None
    return app.Table("routes", default=None, partitions=settings.topic_partitions, key_type=bytes,
                     help="transaction id -> its card, event time and entities (labels follow it to its entities)")


def store_mapping(store: Any) -> MutableMapping[Any, Any]:
    """What to read and write a table's ``store`` (``table.data``) through, key by key, on the hot path.

    An in-memory store's own dict: Faust's memory store keeps its values in a
    plain dict and its mapping methods only forward to it, a Python call each
    (the score agent does about four reads and writes a transaction).
    Any other store (RocksDB: values encoded, a database per partition, see
    :func:`writing_for`) is returned as it is.

    >>> class Elsewhere(dict): ...
    >>> store = Elsewhere()
    >>> store_mapping(store) is store
    True
    """
    if type(store) is MemoryStore and type(store.data) is dict:
        return store.data  # type: ignore[no-any-return]
    return store  # type: ignore[no-any-return]


def define_tables(app: faust.App, settings: Settings) -> tuple[Any, Any, Any]:
    """Create the ``history``, ``features`` and ``pending`` tables on ``app``."""

    def table(name: str, help: str) -> Any:
        return app.Table(
            name,
            default=None,
            partitions=settings.topic_partitions,
            # bytes keys make Faust use the raw codec: a table key is then the same
            # bytes (hence the same partition) as the Kafka key it came from.
            key_type=bytes,
            help=help,
        )

    history = table("history", "card id -> last N transactions (columns)")
    # Faust picks a table's codec from its value type (JSON unless it is a Faust model) and
    # has already made the changelog topic with it; the store is made later, lazily. Both
    # must use the history's own codec (recovery decodes the changelog with the topic's).
    use_value_codec(history, HistoryCodec())
    return (
        history,
        table("features", "transaction id -> scoring-time inputs for the feedback join"),
        table("pending", "transaction id -> a label that arrived before its transaction was scored"),
    )
