"""Joining a label with what was scored: a label and the stored inputs in, a labelled example or a refusal out.

A label teaches the online learner only together with the inputs the learner
saw when it scored that transaction (a :class:`~stream.core.stored.FeatureEntry`),
so it learns from exactly what it predicted from, not from features
recomputed later from another history. :class:`LabelJoin` decides, for one
label and whatever the ``features`` table holds for its transaction:

* :class:`Joined`: forward the example to the trainer, and mark the entry as
  learned (the same label again is then a duplicate, learned once);
* :class:`Rejected`: to the feedback DLQ with a stable reason:
  ``card_mismatch``, ``expired_transaction`` (the label came later than the
  feature retention after its transaction), ``corrupt_inputs``, or a
  contract violation of the label record itself;
* :data:`DUPLICATE`: the same label for the same transaction again;
* :class:`Park`: the transaction is not scored yet (Kafka does not align two
  topics in time). The label waits in the ``pending`` table until the score
  agent scores its transaction (:meth:`LabelJoin.complete`), or until the
  transactions of its partition are the join grace past it in event time.

Example:
    >>> import orjson
    >>> from stream.core.source import InMemoryRecord
    >>> from stream.core.stored import FeatureEntry
    >>> from stream.contracts.records import Limits
    >>> join = LabelJoin(Limits(1_000_000, 0, 86_400_000), feature_retention_ms=86_400_000)
    >>> label = InMemoryRecord(b"c1", orjson.dumps({"transaction_id": "t1", "card_id": "c1", "label": "fraud"}),
    ...                        topic="feedback")
    >>> join.receive(label, {}.get, watermark_ms=None)  # doctest: +ELLIPSIS
    Park(key=b't1', parked=ParkedLabel(message=SourceMessage(topic='feedback', ...), due_ms=0))
    >>> table = {b"t1": FeatureEntry("c1", 1_000, 0, [0.5, 1.0]).to_json()}
    >>> joined = join.receive(label, table.get, watermark_ms=None)
    >>> joined.example.label, joined.entry.label
    (1, 1)
    >>> table[b"t1"] = joined.entry.to_json()
    >>> join.receive(label, table.get, watermark_ms=None) is DUPLICATE
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from stream.contracts.records import Feedback, InvalidRecord, Limits, parse_feedback
from stream.core.packing import unpack_inputs
from stream.core.source import SourceRecord
from stream.core.stored import FeatureEntry, LabelledExample, ParkedLabel, SourceMessage, StoredRecordError

__all__ = ["DUPLICATE", "Joined", "LabelJoin", "Outcome", "Park", "Rejected"]


class Joined(NamedTuple):
    """Forward ``example`` to the trainer and store ``entry`` (now marked as learned) under ``key``."""

    key: bytes
    example: LabelledExample
    entry: FeatureEntry


class Rejected(NamedTuple):
    """Dead-letter the label's ``origin`` record with ``reason`` and ``detail``.

    ``origin`` None: the record itself is lost (a pending-table entry too damaged to read); there is
    nothing to dead-letter, only to report.
    """

    reason: str
    detail: str
    origin: SourceMessage | None


class Park(NamedTuple):
    """Keep ``parked`` in the pending table under ``key`` until its transaction is scored or the grace has passed."""

    key: bytes
    parked: ParkedLabel


class _Duplicate:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DUPLICATE"


#: The same label for the same transaction again: learning it twice would double its weight.
DUPLICATE: Final = _Duplicate()

Outcome = Joined | Rejected | Park | _Duplicate


class LabelJoin:
    """Decides what becomes of each label; holds nothing between calls.

    ``feature_retention_ms``: how long after its transaction a label may
    still teach (``FRAUDSTREAM_FEATURE_RETENTION_S``).
    """

    def __init__(self, limits: Limits, feature_retention_ms: int) -> None:
        self.limits = limits
        self.feature_retention_ms = feature_retention_ms

    def receive(self, record: SourceRecord, lookup: Callable[[bytes], Mapping[str, Any] | None],
                watermark_ms: int | None) -> Outcome:
        """A label record as consumed; ``lookup(transaction key)``: the features table's value, if any.

        ``watermark_ms``: how far (event time) the transactions of the label's
        partition are; a label without ``labelled_at`` waits from there.
        """
        origin = SourceMessage.of(record)
        try:
            fb = parse_feedback(record.value, self.limits)
        except InvalidRecord as exc:
            return Rejected(exc.reason, exc.detail, origin)
        key = fb.transaction_id.encode()
        stored = lookup(key)
        if stored is None:
            # Its transaction happened before labelled_at; without one, give the stream the grace from where it is.
            due = fb.labelled_at_ms if fb.labelled_at_ms is not None else (watermark_ms or 0)
            return Park(key, ParkedLabel(origin, due))
        return self.join(fb, stored, origin)

    def complete(self, parked: Mapping[str, Any], stored: Mapping[str, Any]) -> Outcome:
        """A parked label (the pending table's value) whose transaction has just been scored."""
        try:
            origin = ParkedLabel.from_json(parked).message
        except StoredRecordError as exc:
            return Rejected("corrupt_pending", f"parked label unreadable: {exc}", None)
        try:
            fb = parse_feedback(origin.value, self.limits)
        except InvalidRecord as exc:  # it parsed when it was parked; a damaged entry must still not cost the batch
            return Rejected(exc.reason, exc.detail, origin)
        return self.join(fb, stored, origin)

    def join(self, fb: Feedback, stored: Mapping[str, Any], origin: SourceMessage) -> Outcome:
        """Join ``fb`` with its transaction's stored entry."""
        try:
            entry = FeatureEntry.from_json(stored)
        except StoredRecordError as exc:
            return Rejected("corrupt_inputs", f"scoring-time inputs of {fb.transaction_id!r} unreadable: {exc}", origin)
        if entry.card_id != fb.card_id:
            return Rejected("card_mismatch", f"transaction {fb.transaction_id!r} was scored for card "
                            f"{entry.card_id!r}, label says {fb.card_id!r}", origin)
        if fb.labelled_at_ms is not None and fb.labelled_at_ms - entry.event_time_ms > self.feature_retention_ms:
            return Rejected("expired_transaction",
                            f"label for {fb.transaction_id!r} came {(fb.labelled_at_ms - entry.event_time_ms) / 1000:.0f} s"
                            f" after the transaction, beyond the {self.feature_retention_ms / 1000:.0f} s retention",
                            origin)
        if entry.label == fb.label:
            return DUPLICATE
        try:
            inputs = unpack_inputs(entry.inputs)
        except (ValueError, TypeError) as exc:  # a damaged table entry must not cost the batch
            return Rejected("corrupt_inputs", f"scoring-time inputs of {fb.transaction_id!r} unreadable: {exc!r}",
                            origin)
        example = LabelledExample(inputs, fb.label, fb.source, entry.event_time_ms, origin)
        return Joined(fb.transaction_id.encode(), example, entry.labelled(fb.label, fb.source))
