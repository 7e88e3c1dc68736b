"""The learn agent: labels in, joined with scoring-time inputs, sent to the learner.

A label is joined with the inputs the online learner saw when it scored that
transaction (the ``features`` table), so the learner trains on exactly what it
predicted from, not on features recomputed later from a different history.
Labels arrive on the card's partition, on whichever worker owns it; the
joined examples all go to the single learner (``stream/runtime/agents/train.py``).

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

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from stream.contracts.dlq import DeadLetter, send_dead_letter
from stream.core.labels import DUPLICATE, Joined, LabelJoin, Outcome, Park, Rejected
from stream.core.retention import RetentionIndex
from stream.core.stored import ParkedLabel, SourceMessage
from stream.kafka.batches import ack, micro_batches
from stream.kafka.state import store_mapping, writing_for
from stream.runtime.agents.score import dead_letter_batch

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["FeedbackLearner", "register"]

log = logging.getLogger("fraudstream.learn")


class FeedbackLearner:
    """Moves labels between Kafka and :class:`~stream.core.labels.LabelJoin`, which decides what becomes of each."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.core = LabelJoin(engine.limits, int(self.settings.feature_retention_s * 1000))
        self.index = RetentionIndex(int(self.settings.feedback_join_grace_s * 1000))

    async def _reject(self, origin: SourceMessage | None, reason: str, detail: str) -> None:
        topic = self.settings.topic_feedback_dlq
        self.engine.stats.dead_letter(topic, reason)
        if origin is None:  # nothing left to dead-letter (a damaged pending entry): say it loudly
            log.error("label lost: %s: %s", reason, detail)
            return
        await send_dead_letter(await self.engine.producer(), topic, DeadLetter.from_message(origin, reason, detail))

    async def process(self, events: Sequence[EventT]) -> None:
        engine = self.engine
        lookup = store_mapping(engine.features.data).get
        watermark = engine.retention.watermark
        for event in events:
            message = event.message
            await self._apply(event, self.core.receive(message, lookup, watermark(message.partition)))

    async def _apply(self, event: EventT, outcome: Outcome) -> None:
        engine = self.engine
        if isinstance(outcome, Rejected):
            await self._reject(outcome.origin, outcome.reason, outcome.detail)
        elif outcome is DUPLICATE:
            engine.stats.labels_duplicate += 1
        elif isinstance(outcome, Park):
            parked = outcome.parked
            with writing_for(event):
                engine.pending[outcome.key] = parked.to_json()
            self.index.add(event.message.partition, parked.due_ms, outcome.key)
            engine.stats.labels_pending += 1
        elif isinstance(outcome, Joined):
            # To the single learner (stream/runtime/agents/train.py), with the stored inputs.
            await (await engine.producer()).send(self.settings.labelled_topic, b"online", outcome.example.encode(),
                                                 partition=0, timestamp=None, headers=None)
            engine.stats.labels_forwarded += 1
            with writing_for(event):
                engine.features[outcome.key] = outcome.entry.to_json()

    async def resolve_pending(self, scored: Sequence[tuple[EventT, Any]]) -> None:
        """Called by the score agent after a batch: complete joins for labels that came early."""
        engine = self.engine
        # The store (its dict in memory): Table.get costs ~1 µs a miss, and nearly all are.
        parked_labels = store_mapping(engine.pending.data)
        features = store_mapping(engine.features.data)
        for event, t in scored:
            key = t.transaction_id.encode()
            parked = parked_labels.get(key)
            if parked is None:
                continue
            with writing_for(event):
                del engine.pending[key]
            engine.stats.labels_pending -= 1
            await self._apply(event, self.core.complete(parked, features[key]))

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
                await self._reject(ParkedLabel.from_json(parked).message, "unknown_transaction",
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
