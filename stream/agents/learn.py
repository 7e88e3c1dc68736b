"""The learn agent: labels in, joined with scoring-time inputs, sent to the learner.

A label is joined with the inputs the online learner saw when it scored that
transaction (the ``features`` table), so the learner trains on exactly what it
predicted from, not on features recomputed later from a different history.
Labels arrive on the card's partition, on whichever worker owns it; the
joined examples all go to the single learner (``stream/agents/train.py``).

Kafka does not align two topics in time: a replay, or a worker catching up,
can deliver a label before its transaction is scored. Such a label is parked
in the changelog-backed ``pending`` table (so a crash does not lose it) and
the score agent completes the join when it scores the transaction
(:meth:`FeedbackLearner.resolve_pending`). A label whose transaction never
comes goes to the DLQ as ``unknown_transaction`` once the transactions of its
partition are ``feedback_join_grace_s`` (event time) past the label's time.
Nothing here waits, so the feedback consumer never holds back the
transactions (Faust delivers both through one consumer).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from stream.agents.score import dead_letter_batch
from stream.agents.train import labelled_example
from stream.batches import ack, micro_batches
from stream.dlq import DeadLetter, send_dead_letter
from stream.records import Feedback, InvalidRecord, parse_feedback
from stream.retention import RetentionIndex
from stream.state import store_mapping, unpack_inputs, writing_for

if TYPE_CHECKING:
    from stream.app import Engine

__all__ = ["FeedbackLearner", "StoredMessage", "register"]

log = logging.getLogger("fraudstream.learn")


@dataclass(frozen=True)
class StoredMessage:
    """The parts of a Kafka record a parked label keeps (for the join and the DLQ)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def to_json(self, due_ms: int) -> dict[str, Any]:
        return {"tp": self.topic, "p": self.partition, "o": self.offset, "due": due_ms,
                "k": base64.b64encode(self.key or b"").decode(), "v": base64.b64encode(self.value or b"").decode()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StoredMessage:
        return cls(d["tp"], int(d["p"]), int(d["o"]), base64.b64decode(d["k"]), base64.b64decode(d["v"]))


class FeedbackLearner:
    """Joins labels with scoring-time inputs; parks those that came too early."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.index = RetentionIndex(int(self.settings.feedback_join_grace_s * 1000))

    async def _reject(self, message: Any, reason: str, detail: str) -> None:
        topic = self.settings.topic_feedback_dlq
        self.engine.stats.dead_letter(topic, reason)
        await send_dead_letter(await self.engine.producer(), topic, DeadLetter.from_message(message, reason, detail))

    async def process(self, events: Sequence[EventT]) -> None:
        engine = self.engine
        for event in events:
            message = event.message
            try:
                fb = parse_feedback(message.value, engine.limits)
            except InvalidRecord as exc:
                await self._reject(message, exc.reason, exc.detail)
                continue
            key = fb.transaction_id.encode()
            if key in engine.features:
                await self.join(event, fb, message)
            else:
                self._park(event, fb, key)

    def _park(self, event: EventT, fb: Feedback, key: bytes) -> None:
        """Keep a label whose transaction is not scored yet (changelog-backed)."""
        partition = event.message.partition
        mark = self.engine.retention.watermark(partition)
        # Its transaction happened before labelled_at; without one, give the stream
        # the grace period from where it stands now.
        due = fb.labelled_at_ms if fb.labelled_at_ms is not None else (mark or 0)
        with writing_for(event):
            self.engine.pending[key] = StoredMessage(event.message.topic, partition, event.message.offset,
                                                     event.message.key, event.message.value).to_json(due)
        self.index.add(partition, due, key)
        self.engine.stats.labels_pending += 1

    async def join(self, event: EventT, fb: Feedback, message: Any) -> None:
        """Join one label with its stored inputs and forward it (``event`` routes table writes)."""
        engine = self.engine
        key = fb.transaction_id.encode()
        stored = engine.features[key]
        retention_ms = int(self.settings.feature_retention_s * 1000)
        if stored["c"] != fb.card_id:
            await self._reject(message, "card_mismatch", f"transaction {fb.transaction_id!r} was scored for card "
                               f"{stored['c']!r}, label says {fb.card_id!r}")
            return
        if fb.labelled_at_ms is not None and fb.labelled_at_ms - stored["t"] > retention_ms:
            await self._reject(message, "expired_transaction",
                               f"label for {fb.transaction_id!r} came {(fb.labelled_at_ms - stored['t']) / 1000:.0f} s "
                               f"after the transaction, beyond the {self.settings.feature_retention_s:.0f} s retention")
            return
        if stored.get("l") == fb.label:
            engine.stats.labels_duplicate += 1  # same label again: learning twice would double its weight
            return
        try:
            inputs = unpack_inputs(stored["x"])
        except (KeyError, ValueError, TypeError) as exc:  # a damaged table entry must not cost the batch
            await self._reject(message, "corrupt_inputs",
                               f"scoring-time inputs of {fb.transaction_id!r} unreadable: {exc!r}")
            return
        # To the single learner (stream/agents/train.py), with the stored inputs.
        example = labelled_example(inputs, fb.label, fb.source, stored["t"], message)
        await (await engine.producer()).send(self.settings.labelled_topic, b"online", example,
                                             partition=0, timestamp=None, headers=None)
        engine.stats.labels_forwarded += 1
        with writing_for(event):
            engine.features[key] = {**stored, "l": fb.label, "s": fb.source}

    async def resolve_pending(self, scored: Sequence[tuple[EventT, Any]]) -> None:
        """Called by the score agent after a batch: complete joins for labels that came early."""
        engine = self.engine
        # The store (its dict in memory): Table.get costs ~1 µs a miss, and nearly all are.
        parked_labels = store_mapping(engine.pending.data)
        for event, t in scored:
            key = t.transaction_id.encode()
            parked = parked_labels.get(key)
            if parked is None:
                continue
            message = StoredMessage.from_json(parked)
            with writing_for(event):
                del engine.pending[key]
            try:
                fb = parse_feedback(message.value, engine.limits)
            except InvalidRecord as exc:  # it parsed when it was parked; be safe anyway
                await self._reject(message, exc.reason, exc.detail)
                continue
            engine.stats.labels_pending -= 1
            await self.join(event, fb, message)

    async def expire_pending(self, by_partition: dict[int, EventT]) -> None:
        """Dead-letter parked labels whose transaction the stream has passed without seeing."""
        engine = self.engine
        self.index.follow_assignment(
            frozenset(engine.app.assignor.assigned_actives()), self.settings.topic_transactions,
            lambda: [(int(v["p"]), int(v["due"]), k) for k, v in engine.pending.items()
                     if isinstance(v, dict) and "due" in v])
        for partition, event in by_partition.items():
            for key in self.index.pop_expired(partition, watermark=engine.retention.watermark(partition)):
                parked = engine.pending.get(key)
                if parked is None:
                    continue  # joined in the meantime
                with writing_for(event):
                    del engine.pending[key]
                engine.stats.labels_pending -= 1
                await self._reject(StoredMessage.from_json(parked), "unknown_transaction",
                                   f"no transaction {key.decode(errors='replace')!r} on this partition up to "
                                   f"{self.settings.feedback_join_grace_s:.0f} s (event time) past the label: never "
                                   f"sent, sent with another key, or older than the feature retention")


def register(engine: Engine) -> FeedbackLearner:
    """Attach the learn agent to ``engine.app``; the score agent uses the returned learner too."""
    learner = FeedbackLearner(engine)
    settings = engine.settings

    async def learn(stream: Any) -> None:
        await engine.declare_outputs()
        async for events in micro_batches(stream, settings.batch_size, within_s=settings.batch_timeout_s):
            try:
                await learner.process(events)
            except Exception as exc:  # never let a bug kill the agent or drop labels silently
                log.exception("feedback batch failed; dead-lettering its %d records", len(events))
                await dead_letter_batch(engine, events, settings.topic_feedback_dlq, exc)
            ack(events)

    learn.__module__ = __name__
    engine.app.agent(engine.topics.feedback, name=f"{__name__}.learn")(learn)
    return learner
