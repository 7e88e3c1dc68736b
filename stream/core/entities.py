"""The entity stage: a micro-batch of one entity kind's events in, its profiles' features and new state out.

Cross-card fraud (a breached terminal, a device many stolen cards use) shows in
an entity's own traffic, and an entity's transactions come from every card
partition. So each entity kind named in ``FRAUDSTREAM_ENTITIES`` (``merchant_id``,
``device_id``, ``ip``, ``account_id``) has its own topic keyed by the entity's
value, where a transaction and the labels of the entity's transactions arrive
as :class:`EntityEvent` records; the entity's :class:`~models.profile.EntityProfile`
lives on that partition (a changelog-backed table). This module is the stage's
logic with no Faust and no Kafka: each transaction gets the features its
entity had *before* it (:func:`models.profile_features.profile_features`), then
counts in the profile; each label counts from its ``labelled_at``.

A transaction event comes with where the hop before read it (its source:
:func:`stream.core.routing.upstream`): a redelivered one (at or before the
last offset its profile applied from that source, after a crash of this hop
or of one before it) does not count twice; the stage lists the redeliveries
so the runtime can count them. Its features are computed again from the
profile as it is, which has moved on (it counted the transaction and what
came after it), so the score stage does not use them: for a transaction it
has scored before it reads back the inputs of its first scoring
(:mod:`stream.core.scoring`), and a redelivered score equals the first. A
label comes with where the route agent read it (a feedback partition and
offset: :data:`stream.core.routing.FEEDBACK_STAGE`) and counts once per entity
however often it is sent.

Example:
    >>> stage = EntityStage("merchant_id")
    >>> events = [(b"m1", EntityEvent.transaction("t1", "c1", 1_000, 9.5), (0, 40)),
    ...           (b"m1", EntityEvent.transaction("t2", "c2", 2_000, 4.0), (0, 41))]
    >>> batch = stage.process(events, {})
    >>> [(f.transaction_id, round(f.features["merchant_n_1h"], 3)) for f in batch.features]
    [('t1', 0.0), ('t2', 0.693)]
    >>> batch.profiles[b"m1"].sources
    {0: 41}
    >>> stage.process(events[1:], batch.profiles).redelivered  # after a crash: counted once
    [0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from models.profile import EntityProfile, ProfileFormatError, decode
from models.profile_features import PROFILE_FEATURES, entity_feature_names, profile_features
from stream.contracts.settings import ENTITY_FIELDS
from stream.core.stored import StoredRecordError

__all__ = ["ENTITY_FIELDS", "EntityBatch", "EntityEvent", "EntityFeatures", "EntityStage"]

_VERSION = 1


class EntityEvent(NamedTuple):
    """One record of an entity topic: a transaction of the entity, or a label of one (versioned JSON)."""

    kind: str  # "transaction" or "label"
    transaction_id: str
    card_id: str
    event_time_ms: int  # the transaction's time (a label's too: the time of the transaction it labels)
    amount: float = 0.0
    labelled_at_ms: int = 0
    fraud: bool = False

    @classmethod
    def transaction(cls, transaction_id: str, card_id: str, event_time_ms: int, amount: float) -> EntityEvent:
        return cls("transaction", transaction_id, card_id, event_time_ms, amount)

    @classmethod
    def label(cls, transaction_id: str, card_id: str, event_time_ms: int, labelled_at_ms: int,
              fraud: bool) -> EntityEvent:
        return cls("label", transaction_id, card_id, event_time_ms, labelled_at_ms=labelled_at_ms, fraud=fraud)

    def encode(self) -> bytes:
        """The record's value.

        >>> EntityEvent.decode(EntityEvent.label("t1", "c1", 5, 9, True).encode())
        EntityEvent(kind='label', transaction_id='t1', card_id='c1', event_time_ms=5, amount=0.0, labelled_at_ms=9, fraud=True)
        """
        if self.kind == "transaction":
            return orjson.dumps({"v": _VERSION, "k": "t", "x": self.transaction_id, "c": self.card_id,
                                 "t": self.event_time_ms, "a": self.amount})
        return orjson.dumps({"v": _VERSION, "k": "l", "x": self.transaction_id, "c": self.card_id,
                             "t": self.event_time_ms, "at": self.labelled_at_ms, "f": int(self.fraud)})

    @classmethod
    def decode(cls, raw: bytes | None) -> EntityEvent:
        """Inverse of :meth:`encode`; :class:`StoredRecordError` naming what is wrong otherwise.

        >>> EntityEvent.decode(b'{"v": 9}')
        Traceback (most recent call last):
        ...
        stream.core.stored.StoredRecordError: entity event version 9; this release reads version 1
        """
        try:
            d = orjson.loads(raw or b"")
        except orjson.JSONDecodeError as exc:
            raise StoredRecordError(f"entity event is not JSON: {exc}") from None
        if not isinstance(d, dict):
            raise StoredRecordError(f"entity event is {type(d).__name__}, not an object")
        if d.get("v") != _VERSION:
            raise StoredRecordError(f"entity event version {d.get('v')}; this release reads version {_VERSION}")
        try:
            if d["k"] == "t":
                return cls.transaction(str(d["x"]), str(d["c"]), int(d["t"]), float(d["a"]))
            if d["k"] == "l":
                return cls.label(str(d["x"]), str(d["c"]), int(d["t"]), int(d["at"]), bool(d["f"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoredRecordError(f"entity event lacks or mistypes {exc}") from None
        raise StoredRecordError(f"entity event of unknown kind {d['k']!r}")


class EntityFeatures(NamedTuple):
    """One transaction's features from one entity kind, on their way back to the card's partition."""

    transaction_id: str
    card_id: str
    entity: str  # the entity's value ("" when the transaction named none)
    features: dict[str, float]


@dataclass
class EntityBatch:
    """What :meth:`EntityStage.process` made of a micro-batch."""

    #: Entity key -> its profile after the batch (only those the batch changed), for the table.
    profiles: dict[bytes, EntityProfile] = field(default_factory=dict)
    #: One per transaction event, in batch order (a redelivered one too: its card still needs them).
    features: list[EntityFeatures] = field(default_factory=list)
    #: Batch indices of events already applied (redeliveries after a crash).
    redelivered: list[int] = field(default_factory=list)
    #: Batch indices of entity keys whose stored profile could not be read, and why (they start afresh).
    unreadable: list[tuple[int, str]] = field(default_factory=list)


class EntityStage:
    """One entity kind's stage: ``process`` a micro-batch against the stored profiles (updated in place)."""

    def __init__(self, entity_field: str) -> None:
        if entity_field not in ENTITY_FIELDS:
            raise ValueError(f"unknown entity field {entity_field!r}: one of {', '.join(ENTITY_FIELDS)}")
        self.entity_field = entity_field
        self.names = entity_feature_names(entity_field)

    def process(self, events: Sequence[tuple[bytes, EntityEvent, tuple[int, int] | None]],
                stored: Mapping[bytes, Any]) -> EntityBatch:
        """``events``: (entity key, event, (source, offset) or None) in partition order; ``stored``: key -> profile.

        An event without a source (one that reached the topic some other
        way) is counted without the redelivery check by position (a label is
        still kept once).
        """
        out = EntityBatch()
        for i, (key, event, where) in enumerate(events):
            profile = out.profiles.get(key)
            if profile is None:
                profile = self._load(i, stored.get(key), out)
                out.profiles[key] = profile
            source, offset = where if where is not None else (0, None)
            if event.kind == "transaction":
                values = profile_features(profile, event.event_time_ms, card=event.card_id)
                out.features.append(EntityFeatures(event.transaction_id, event.card_id, key.decode(),
                                                   dict(zip(self.names, (values[n] for n in PROFILE_FEATURES),
                                                            strict=True))))
                applied = profile.observe(event.event_time_ms, event.amount, card=event.card_id, source=source,
                                          offset=offset)
            else:
                applied = profile.label(event.transaction_id, event.event_time_ms, labelled_at_ms=event.labelled_at_ms,
                                        fraud=event.fraud, source=source, offset=offset)
            if not applied:
                out.redelivered.append(i)
        return out

    @staticmethod
    def _load(i: int, raw: Any, out: EntityBatch) -> EntityProfile:
        if raw is None:
            return EntityProfile()
        if isinstance(raw, EntityProfile):
            # Updated in place, not copied: a copy (encode and decode) of a busy terminal's profile costs about
            # what the batch's features do. A crash loses nothing (the store is rebuilt from the changelog, and a
            # redelivered event is told by its position); a batch that fails after this is dead-lettered, and its
            # transactions stay counted in memory only, as if they had been scored.
            return raw
        try:
            return decode(raw)
        except ProfileFormatError as exc:
            out.unreadable.append((i, str(exc)))
            return EntityProfile()

    def absent(self, transaction_id: str, card_id: str) -> EntityFeatures:
        """The features of a transaction that names no entity of this kind: as for a first transaction."""
        values = profile_features(EntityProfile(), 0, card=card_id)
        return EntityFeatures(transaction_id, card_id, "", {n: values[p] for n, p in zip(self.names, PROFILE_FEATURES,
                                                                                        strict=True)})
