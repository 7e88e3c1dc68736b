"""The engine's internal records: what its tables and its labelled topic hold, one definition each.

Three records cross a process boundary inside the engine (a changelog, a
topic between workers), so each has one class here with its encoding, and
nothing else spells their keys:

* :class:`FeatureEntry`: the ``features`` table's value, what the online
  learner saw when it scored a transaction, kept for the feedback join.
* :class:`ParkedLabel`: the ``pending`` table's value, a label that came
  before its transaction was scored.
* :class:`LabelledExample`: a joined label on the labelled topic, on its way
  to the single trainer.

Both labels keep the Kafka record they came from as one
:class:`SourceMessage` (for the dead-letter queue), encoded one way.

The encodings are versioned (``"v"``). Records written before the version
field existed (version 1: the same short keys, a label's source record as
``orig`` with long keys) still decode, so an upgraded worker recovers an old
changelog and reads an old labelled topic.

Example:
    >>> entry = FeatureEntry("card-1", 1_000, 3, "AAAAAAAA4D8=")
    >>> FeatureEntry.from_json(entry.to_json()) == entry
    True
    >>> FeatureEntry.from_json({"c": "card-1", "t": 1000, "p": 3, "x": "AAAAAAAA4D8="}) == entry  # version 1
    True
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson

__all__ = [
    "FeatureEntry",
    "LabelledExample",
    "ParkedLabel",
    "SourceMessage",
    "StoredRecordError",
    "feature_entries",
]

_VERSION = 2


class StoredRecordError(ValueError):
    """A stored record that cannot be read: damaged, or written by something else."""


def _b64(raw: bytes | None) -> str:
    return base64.b64encode(raw or b"").decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise StoredRecordError(f"{what} is {type(text).__name__}, not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise StoredRecordError(f"{what} is not base64: {exc}") from exc


class SourceMessage(NamedTuple):
    """The parts of a Kafka record a label keeps: enough to dead-letter it later exactly as it came."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, message: Any) -> SourceMessage:
        """From anything with a Kafka record's attributes (a Faust ``Message``, a :class:`SourceMessage`)."""
        headers = message.headers or ()
        if isinstance(headers, Mapping):
            headers = headers.items()
        return cls(message.topic, int(message.partition), int(message.offset), message.key, message.value,
                   tuple((str(k), bytes(v) if v is not None else b"") for k, v in headers))

    def to_json(self) -> dict[str, Any]:
        """Topic, partition, offset, key and value (base64); headers are not kept."""
        return {"tp": self.topic, "p": self.partition, "o": self.offset, "k": _b64(self.key), "v": _b64(self.value)}

    @classmethod
    def from_json(cls, d: Any) -> SourceMessage:
        """Inverse of :meth:`to_json`; also reads version 1's ``orig`` (``topic, partition, offset, key, value``).

        >>> SourceMessage.from_json({"topic": "f", "partition": 1, "offset": 2, "key": "", "value": "e30="})
        SourceMessage(topic='f', partition=1, offset=2, key=b'', value=b'{}', headers=())
        >>> SourceMessage.from_json({"tp": "f"})
        Traceback (most recent call last):
        ...
        stream.core.stored.StoredRecordError: source record lacks 'p'
        """
        if not isinstance(d, Mapping):
            raise StoredRecordError(f"source record is {type(d).__name__}, not an object")
        names = ("tp", "p", "o", "k", "v") if "tp" in d else ("topic", "partition", "offset", "key", "value")
        for name in names:
            if name not in d:
                raise StoredRecordError(f"source record lacks {name!r}")
        topic, partition, offset, key, value = (d[n] for n in names)
        try:
            return cls(str(topic), int(partition), int(offset), _unb64(key, "source key"), _unb64(value, "source value"))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, StoredRecordError):
                raise
            raise StoredRecordError(f"source record has a field of the wrong type: {exc}") from exc


class FeatureEntry(NamedTuple):
    """What the online learner saw when it scored one transaction (the ``features`` table's value).

    ``inputs`` is :func:`stream.kafka.state.pack_inputs`' packed vector (or, from
    old changelogs, a list of floats). ``label`` and ``source`` are set once
    a label was learned, so the same label again is not learned twice.
    """

    card_id: str
    event_time_ms: int
    partition: int
    inputs: str | list[float]
    label: int | None = None
    source: str | None = None
    #: The transaction's entity values, in ``FRAUDSTREAM_ENTITIES`` order ("" where it named none): where its
    #: label goes so that the entities' profiles learn it. Empty without entities.
    entities: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {"v": _VERSION, "c": self.card_id, "t": self.event_time_ms, "p": self.partition, "x": self.inputs}
        if self.label is not None:
            out["l"], out["s"] = self.label, self.source
        if self.entities:
            out["e"] = list(self.entities)
        return out

    @classmethod
    def from_json(cls, d: Any) -> FeatureEntry:
        """Inverse of :meth:`to_json`; version 1 (no ``"v"``) reads the same.

        >>> FeatureEntry.from_json({"c": "c1", "t": 5})
        Traceback (most recent call last):
        ...
        stream.core.stored.StoredRecordError: features entry lacks 'p'
        """
        if not isinstance(d, Mapping):
            raise StoredRecordError(f"features entry is {type(d).__name__}, not an object")
        for name in ("c", "t", "p", "x"):
            if name not in d:
                raise StoredRecordError(f"features entry lacks {name!r}")
        label = d.get("l")
        entities = d.get("e") or ()
        if not isinstance(entities, (list, tuple)):
            raise StoredRecordError(f"features entry's entities are {type(entities).__name__}, not a list")
        return cls(str(d["c"]), int(d["t"]), int(d["p"]), d["x"], None if label is None else int(label), d.get("s"),
                   tuple(str(e) for e in entities))

    def labelled(self, label: int, source: str) -> FeatureEntry:
        """The same entry, marked as learned with ``label`` from ``source``."""
        return self._replace(label=label, source=source)


def feature_entries(card_ids: Sequence[str], times_ms: Sequence[int], partitions: Sequence[int],
                    packed: Sequence[str], entities: Sequence[Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """``[FeatureEntry(...).to_json() ...]`` for a whole micro-batch, without a tuple per transaction.

    >>> feature_entries(["c1"], [5], [0], ["AA=="]) == [FeatureEntry("c1", 5, 0, "AA==").to_json()]
    True
    >>> feature_entries(["c1"], [5], [0], ["AA=="], [["m1"]]) == [FeatureEntry("c1", 5, 0, "AA==", entities=("m1",)).to_json()]
    True
    """
    v = _VERSION
    out = [{"v": v, "c": c, "t": t, "p": p, "x": x}
           for c, t, p, x in zip(card_ids, times_ms, partitions, packed, strict=True)]
    if entities is not None:
        for entry, values in zip(out, entities, strict=True):
            entry["e"] = list(values)
    return out


class ParkedLabel(NamedTuple):
    """A label that came before its transaction was scored (the ``pending`` table's value).

    ``due_ms``: once the transactions of its partition are past this event
    time by the join grace, its transaction is taken as never coming.
    """

    message: SourceMessage
    due_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"v": _VERSION, **self.message.to_json(), "due": self.due_ms}

    @classmethod
    def from_json(cls, d: Any) -> ParkedLabel:
        """Inverse of :meth:`to_json`; version 1 (no ``"v"``) reads the same.

        >>> p = ParkedLabel(SourceMessage("feedback", 0, 7, b"c1", b"{}"), 99)
        >>> ParkedLabel.from_json(p.to_json()) == p
        True
        """
        if not isinstance(d, Mapping) or "due" not in d:
            raise StoredRecordError("parked label lacks 'due'")
        return cls(SourceMessage.from_json(d), int(d["due"]))


class LabelledExample(NamedTuple):
    """A joined label on its way to the trainer: the stored inputs, the label and where it came from."""

    inputs: str | list[float]
    label: int
    source: str
    event_time_ms: int
    origin: SourceMessage

    def encode(self) -> bytes:
        return orjson.dumps({"v": _VERSION, "x": self.inputs, "y": self.label, "src": self.source,
                             "t": self.event_time_ms, "orig": self.origin.to_json()})

    @classmethod
    def decode(cls, raw: bytes | None) -> LabelledExample:
        """Inverse of :meth:`encode`; also reads version 1 (``orig`` with long keys).

        >>> e = LabelledExample([0.5], 1, "analyst", 9, SourceMessage("feedback", 0, 1, b"k", b"v"))
        >>> LabelledExample.decode(e.encode()) == e
        True
        >>> LabelledExample.decode(b"{}")
        Traceback (most recent call last):
        ...
        stream.core.stored.StoredRecordError: labelled example lacks 'x'
        """
        if raw is None:
            raise StoredRecordError("a labelled example without a value")
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise StoredRecordError(f"labelled example is not JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise StoredRecordError(f"labelled example is {type(d).__name__}, not an object")
        for name in ("x", "y", "src", "t", "orig"):
            if name not in d:
                raise StoredRecordError(f"labelled example lacks {name!r}")
        if d["y"] not in (0, 1) or isinstance(d["y"], bool):
            raise StoredRecordError(f"labelled example's label is {d['y']!r}, not 0 or 1")
        try:
            return cls(d["x"], int(d["y"]), str(d["src"]), int(d["t"]), SourceMessage.from_json(d["orig"]))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, StoredRecordError):
                raise
            raise StoredRecordError(f"labelled example has a field of the wrong type: {exc}") from exc
