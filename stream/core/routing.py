"""Where a transaction goes next on its way through the entity stages, and what it carries there.

With ``FRAUDSTREAM_ENTITIES`` set, a transaction is validated once, where it
arrives (a bad one is dead-lettered there, with its own source record), then
visits the topic of each entity kind it names, keyed by that entity's value,
in the order the setting lists them, and finally the enriched topic keyed by
its card, where the score agent reads it. The record's value stays the
transaction's own bytes all the way; what the hops add travels in headers:

==================================  ==========================================================
``fraudstream.entity-features``     the entity kinds' features so far, in hop order, as
                                    little-endian float64s (:data:`FEATURES_HEADER`)
``fraudstream.source``              ``topic:partition:offset`` of the transaction as it arrived
``fraudstream.upstream``            where the stage before read it: stage, partition, offset
                                    (:func:`upstream`), so a profile counts it once (a
                                    label's: where the route agent read it)
``fraudstream.kind``                ``label`` on an entity topic's label events (transactions
                                    carry none)
``fraudstream.arrived``             the Kafka timestamp of the transaction as it arrived (epoch
                                    ms, :func:`arrived`): the score record's latency counts from
                                    it, hops included, and the hops' own share is measured
==================================  ==========================================================

A transaction that names no entity of a kind skips that hop and carries the
features of an entity never seen for it, so every enriched record carries
every kind's features, in the same order.

Example:
    >>> from stream.contracts.records import Transaction
    >>> routing = EntityRouting(("merchant_id", "device_id"))
    >>> t = Transaction("t1", "c1", 0, 5.0, merchant_id="", device_id="d9")
    >>> hop = routing.next_hop(t, after=-1, carried=b"")
    >>> hop.to, hop.key, len(hop.carried) // 8  # no merchant: straight to the device's topic, with blank features
    (1, b'd9', 14)
    >>> routing.next_hop(t, after=1, carried=hop.carried).to is None  # then the enriched topic
    True
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from stream.contracts.records import Feedback, Transaction
from stream.core.entities import EntityEvent, EntityStage

__all__ = ["ARRIVED_HEADER", "FEATURES_HEADER", "FEEDBACK_STAGE", "KIND_HEADER", "SOURCE_HEADER", "UPSTREAM_HEADER", "EntityRouting",
           "Hop", "arrived", "header", "parse_arrived", "parse_upstream", "upstream"]


FEATURES_HEADER = "fraudstream.entity-features"
SOURCE_HEADER = "fraudstream.source"
KIND_HEADER = "fraudstream.kind"
UPSTREAM_HEADER = "fraudstream.upstream"
ARRIVED_HEADER = "fraudstream.arrived"
#: The :func:`upstream` stage of a label: the route agent read it from the feedback topic.
FEEDBACK_STAGE = 0xFFFF
_UPSTREAM = struct.Struct("<Iq")
_ARRIVED = struct.Struct("<q")


class Hop(NamedTuple):
    """The next topic of a transaction: entity kind ``to`` (an index into the fields), or None for enriched."""

    to: int | None
    key: bytes
    carried: bytes


def header(headers: Any, name: str) -> bytes | None:
    """The last value of header ``name`` (Faust gives a list of pairs, or a dict), or None."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    found = None
    for key, value in items:
        if key == name:
            found = value
    return None if found is None else bytes(found)


class EntityRouting:
    """The hops of ``fields`` (``FRAUDSTREAM_ENTITIES``, in order) and the features they carry."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.stages = [EntityStage(f) for f in self.fields]
        self.names = [name for stage in self.stages for name in stage.names]
        self._blank = [np.asarray([stage.absent("", "").features[n] for n in stage.names], dtype="<f8").tobytes()
                       for stage in self.stages]
        #: Every kind's features, in :attr:`names` order, of a transaction that names none of the entities.
        self.blank: npt.NDArray[np.float64] = np.frombuffer(b"".join(self._blank), dtype="<f8")

    def next_hop(self, t: Transaction, after: int, carried: bytes) -> Hop:
        """Where ``t`` goes after hop ``after`` (-1: where it arrived), with the features so far."""
        for j in range(after + 1, len(self.fields)):
            value = getattr(t, self.fields[j])
            if value:
                return Hop(j, value.encode(), carried)
            carried += self._blank[j]
        return Hop(None, t.card_id.encode(), carried)

    @staticmethod
    def pack(features: dict[str, float], names: Sequence[str]) -> bytes:
        """One hop's features, in ``names`` order, as the header carries them."""
        return np.asarray([features[n] for n in names], dtype="<f8").tobytes()

    def route_entry(self, t: Transaction, partition: int) -> dict[str, Any] | None:
        """What the route agent keeps of ``t`` (its ``routes`` table) to send its label to its entities later.

        None for a transaction that names none of them (its label has nowhere to go).

        >>> r = EntityRouting(("merchant_id", "device_id"))
        >>> r.route_entry(Transaction("t1", "c1", 5, 1.0, merchant_id="m1"), partition=3)
        {'c': 'c1', 't': 5, 'p': 3, 'e': ['m1', '']}
        """
        entities = [getattr(t, f) or "" for f in self.fields]
        if not any(entities):
            return None
        return {"c": t.card_id, "t": t.event_time_ms, "p": partition, "e": entities}

    def label_events(self, fb: Feedback, entry: Any, labelled_at_ms: int) -> list[tuple[int, bytes, EntityEvent]]:
        """A label's events for each entity kind of its transaction: ``(kind, entity key, event)``.

        ``entry``: the transaction's :meth:`route_entry` as stored. None, or
        another card's (the label is wrong: the learn agent dead-letters it), or
        an unreadable entry: no events. The label counts on the entity from
        ``labelled_at_ms``.

        >>> from stream.contracts.records import Feedback
        >>> r = EntityRouting(("merchant_id", "device_id"))
        >>> entry = r.route_entry(Transaction("t1", "c1", 5, 1.0, merchant_id="m1"), partition=0)
        >>> r.label_events(Feedback("t1", "c1", 1, "chargeback", 90), entry, 90)
        [(0, b'm1', EntityEvent(kind='label', transaction_id='t1', card_id='c1', event_time_ms=5, amount=0.0, labelled_at_ms=90, fraud=True))]
        >>> r.label_events(Feedback("t1", "c2", 1, "chargeback", 90), entry, 90)
        []
        """
        if not isinstance(entry, dict) or entry.get("c") != fb.card_id:
            return []
        entities, event_time = entry.get("e"), entry.get("t")
        if not isinstance(entities, list) or len(entities) != len(self.fields) or not isinstance(event_time, int):
            return []
        event = EntityEvent.label(fb.transaction_id, fb.card_id, event_time, labelled_at_ms, fb.label == 1)
        return [(j, str(value).encode(), event) for j, value in enumerate(entities) if value]

    def values(self, carried: bytes | None) -> npt.NDArray[np.float64] | None:
        """Every kind's features from an enriched record's header, in :attr:`names` order; None when it carries none or the wrong count.

        >>> r = EntityRouting(("ip",))
        >>> r.values(r.next_hop(Transaction("t", "c", 0, 1.0), -1, b"").carried).tolist() == r.blank.tolist()
        True
        >>> r.values(b"") is None
        True
        """
        if not carried or len(carried) != 8 * len(self.names):
            return None
        return np.frombuffer(carried, dtype="<f8")


def upstream(stage: int, partition: int, offset: int) -> bytes:
    """The :data:`UPSTREAM_HEADER` of a record that stage ``stage`` read at ``offset`` of its input ``partition``.

    ``stage`` 0 is the route agent (its input: the transactions topic), ``j +
    1`` entity kind ``j``'s hop, :data:`FEEDBACK_STAGE` the route agent's
    labels (its input: the feedback topic). Each stage passes each input partition's
    records on in order (merged in event time by
    :class:`~stream.core.alignment.EventTimeAlignment`), so the next entity profile that sees a
    ``(stage, partition)`` offset at or below the last it applied knows a
    redelivery (a hop, or the route agent, restarted from its committed offset).

    >>> parse_upstream(upstream(2, 5, 1234))
    (131077, 1234)
    >>> parse_upstream(b"junk") is None
    True
    """
    if not 0 <= partition < 1 << 16:
        raise ValueError(f"partition {partition} out of range")
    return _UPSTREAM.pack(stage << 16 | partition, offset)


def arrived(timestamp_ms: int) -> bytes:
    """The :data:`ARRIVED_HEADER` of a transaction whose record reached Kafka at ``timestamp_ms``.

    >>> parse_arrived(arrived(1_740_830_400_123))
    1740830400123
    >>> parse_arrived(b"junk") is None
    True
    """
    return _ARRIVED.pack(timestamp_ms)


def parse_arrived(raw: bytes | None) -> int | None:
    """The epoch ms of an :data:`ARRIVED_HEADER`, or None when absent or not one."""
    if raw is None or len(raw) != _ARRIVED.size:
        return None
    return int(_ARRIVED.unpack(raw)[0])


def parse_upstream(raw: bytes | None) -> tuple[int, int] | None:
    """``(source, offset)`` from an :data:`UPSTREAM_HEADER`, or None when absent or not one."""
    if raw is None or len(raw) != _UPSTREAM.size:
        return None
    source, offset = _UPSTREAM.unpack(raw)
    return source, offset
