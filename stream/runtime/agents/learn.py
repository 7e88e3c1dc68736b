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
transactions (Faust delivers both through one consumer). What a batch
produces (joined examples, changelog records, dead letters) leaves through
one outbox, acknowledged as the score agent's is; labels reach the entity
profiles another way, with the transactions (the route agent,
``stream/runtime/agents/entities.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from stream.contracts.dlq import DeadLetter
from stream.core.labels import DUPLICATE, Joined, LabelJoin, Outcome, Park, Rejected
from stream.core.retention import RetentionIndex
from stream.core.stored import ParkedLabel, SourceMessage
from stream.kafka.batches import InFlight, ack, micro_batches
from stream.kafka.outbox import Outbox
from stream.kafka.state import store_mapping
from stream.runtime.agents.score import batches_in_flight, dead_letter_batch, stop_on_failed_delivery

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
        self._outbox: Outbox | None = None

    def _reject(self, outbox: Outbox, origin: SourceMessage | None, reason: str, detail: str) -> None:
        topic = self.settings.topic_feedback_dlq
        self.engine.stats.dead_letter(topic, reason)
        if origin is None:  # nothing left to dead-letter (a damaged pending entry): say it loudly
            log.error("label lost: %s: %s", reason, detail)
            return
        DeadLetter.from_message(origin, reason, detail).queue(outbox, topic)

    async def process(self, events: Sequence[EventT]) -> asyncio.Future[Any]:
        """Join a micro-batch of labels; returns the delivery of everything it produced (ack on success)."""
        engine = self.engine
        if self._outbox is None:
            self._outbox = await engine.outbox()
        outbox = self._outbox
        lookup = store_mapping(engine.features.data).get
        watermark = engine.retention.watermark
        for event in events:
            message = event.message
            self._apply(outbox, event, self.core.receive(message, lookup, watermark(message.partition)))
        return await outbox.send(last=True)

    def discard(self) -> None:
        """Forget what a failed batch had queued."""
        if self._outbox is not None:
            self._outbox.discard()

    def _apply(self, outbox: Outbox, event: EventT, outcome: Outcome) -> None:
        # Table writes reach the store at once (now=True), as Faust's own writes did: the score agent, between
        # two of this agent's awaits, must find a parked label, and a second label of the batch its first.
        engine = self.engine
        if isinstance(outcome, Rejected):
            self._reject(outbox, outcome.origin, outcome.reason, outcome.detail)
        elif outcome is DUPLICATE:
            engine.stats.labels_duplicate += 1
        elif isinstance(outcome, Park):
            parked = outcome.parked
            outbox.put(engine.pending, event, outcome.key, parked.to_json(), now=True)
            self.index.add(event.message.partition, parked.due_ms, outcome.key)
            engine.stats.labels_pending += 1
        elif isinstance(outcome, Joined):
            # To the single learner (stream/runtime/agents/train.py), with the stored inputs.
            outbox.add(self.settings.labelled_topic, 0, b"online", outcome.example.encode())
            engine.stats.labels_forwarded += 1
            outbox.put(engine.features, event, outcome.key, outcome.entry.to_json(), now=True)

    def resolve_pending(self, scored: Sequence[tuple[EventT, Any]], outbox: Outbox) -> None:
        """Called by the score agent after a batch: complete joins for labels that came early (into its outbox)."""
        engine = self.engine
        # The store (its dict in memory): Table.get costs ~1 µs a miss, and nearly all are.
        parked_labels = store_mapping(engine.pending.data)
        features = store_mapping(engine.features.data)
        for event, t in scored:
            key = t.transaction_id.encode()
            parked = parked_labels.get(key)
            if parked is None:
                continue
            outbox.delete(engine.pending, event, key, now=True)
            engine.stats.labels_pending -= 1
            self._apply(outbox, event, self.core.complete(parked, features[key]))

    def expire_pending(self, by_partition: dict[int, EventT], outbox: Outbox) -> None:
        """Dead-letter parked labels whose transaction the stream has passed without seeing (into ``outbox``)."""
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
                outbox.delete(engine.pending, event, key, now=True)
                engine.stats.labels_pending -= 1
                self._reject(outbox, ParkedLabel.from_json(parked).message, "unknown_transaction",
                             f"no transaction {key.decode(errors='replace')!r} on this partition up to "
                             f"{self.settings.feedback_join_grace_s:.0f} s (event time) past the label: never "
                             f"sent, sent with another key, or older than the feature retention")


def register(engine: Engine) -> FeedbackLearner:
    """Attach the learn agent to ``engine.app``; the score agent uses the returned learner too."""
    learner = FeedbackLearner(engine)
    settings = engine.settings

    delivery_failed = stop_on_failed_delivery(engine)

    async def learn(stream: Any) -> None:
        await engine.declare_outputs()
        # As the score agent: one outbox per micro-batch, acked once the broker has what it produced, the next
        # batch joined while this one is on the wire (the labels' path must keep up with the transactions').
        in_flight = InFlight(batches_in_flight(engine), on_failure=delivery_failed)
        async for events in micro_batches(stream, settings.batch_size, within_s=settings.batch_timeout_s):
            try:
                delivery = await learner.process(events)
            except Exception as exc:  # never let a bug kill the agent or drop labels silently
                learner.discard()
                log.exception("feedback batch failed; dead-lettering its %d records", len(events))
                await dead_letter_batch(engine, events, settings.topic_feedback_dlq, exc)
                ack(events)
                continue
            await in_flight.add(events, delivery)  # raises if the delivery waited for failed
        await in_flight.drain()

    learn.__module__ = __name__
    engine.app.agent(engine.topics.feedback, name=f"{__name__}.learn")(learn)
    return learner
