"""The learn agent: labels in, joined with scoring-time inputs, sent to the learner.

A label is joined with the inputs the online learner saw when it scored that
transaction (the ``features`` table), so the learner trains on exactly what it
predicted from, not on features recomputed later from a different history.
Labels arrive on the card's partition, on whichever worker owns it; the
joined examples all go to the single learner (``stream/agents/train.py``).

A label may overtake its transaction (an analyst labels straight after an
alert while the score agent is a batch behind), so an unknown transaction id
is retried for ``feedback_join_wait_s`` before it goes to the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from stream.agents.score import dead_letter_batch
from stream.agents.train import labelled_example
from stream.dlq import DeadLetter, send_dead_letter
from stream.records import Feedback, InvalidRecord, parse_feedback
from stream.state import writing_for

if TYPE_CHECKING:
    from stream.app import Engine

__all__ = ["FeedbackLearner", "register"]

log = logging.getLogger("fraudstream.learn")


class FeedbackLearner:
    """Everything the learn agent does to one batch of labels."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings

    async def _reject(self, event: EventT, reason: str, detail: str) -> None:
        topic = self.settings.topic_feedback_dlq
        self.engine.stats.dead_letter(topic, reason)
        await send_dead_letter(await self.engine.producer(), topic, DeadLetter.from_message(event.message, reason, detail))

    async def _wait_for_transactions(self, parsed: list[tuple[EventT, Feedback]]) -> list[tuple[EventT, Feedback]]:
        """Hold labels whose transaction is not scored yet; return those still missing.

        Kafka does not align two topics in time: a replay, or a worker catching
        up, can deliver a label before the transaction it labels. A label then
        waits while the transactions stream of its partition is moving and has
        not yet reached the label's event time (``labelled_at``). It gives up
        when that stream has made no progress for ``feedback_join_wait_s``, or
        when the stream has passed the label's time (the transaction is not
        coming). Waiting here also holds back the feedback consumer: labels are
        processed at the pace of the transactions, in event time.
        """
        engine = self.engine
        patience = self.settings.feedback_join_wait_s
        last_progress = time.monotonic()
        marks = {e.message.partition: engine.retention.watermark(e.message.partition) for e, _ in parsed}
        while True:
            missing = [(e, f) for e, f in parsed if f.transaction_id.encode() not in engine.features]
            if not missing:
                return missing
            waiting = False
            for event, fb in missing:
                mark = engine.retention.watermark(event.message.partition)
                if mark != marks.get(event.message.partition):
                    marks[event.message.partition] = mark
                    last_progress = time.monotonic()
                if fb.labelled_at_ms is None or mark is None or mark < fb.labelled_at_ms:
                    waiting = True
            if not waiting or time.monotonic() - last_progress >= patience:
                return missing
            await asyncio.sleep(0.05)

    async def process(self, events: Sequence[EventT]) -> None:
        engine = self.engine
        parsed: list[tuple[EventT, Feedback]] = []
        for event in events:
            try:
                parsed.append((event, parse_feedback(event.message.value, engine.limits)))
            except InvalidRecord as exc:
                await self._reject(event, exc.reason, exc.detail)
        missing = await self._wait_for_transactions(parsed)
        missing_ids = {id(e) for e, _ in missing}
        retention_ms = int(self.settings.feature_retention_s * 1000)
        for event, fb in parsed:
            if id(event) in missing_ids:
                await self._reject(event, "unknown_transaction",
                                   f"no scoring-time features for transaction {fb.transaction_id!r}: never scored "
                                   f"by this app, or older than the {self.settings.feature_retention_s:.0f} s retention")
                continue
            key = fb.transaction_id.encode()
            stored = engine.features[key]
            if stored["c"] != fb.card_id:
                await self._reject(event, "card_mismatch",
                                   f"transaction {fb.transaction_id!r} was scored for card {stored['c']!r}, "
                                   f"label says {fb.card_id!r}")
                continue
            if fb.labelled_at_ms is not None and fb.labelled_at_ms - stored["t"] > retention_ms:
                await self._reject(event, "expired_transaction",
                                   f"label for {fb.transaction_id!r} came {(fb.labelled_at_ms - stored['t']) / 1000:.0f} s "
                                   f"after the transaction, beyond the {self.settings.feature_retention_s:.0f} s retention")
                continue
            if stored.get("l") == fb.label:
                engine.stats.labels_duplicate += 1  # same label again: learning twice would double its weight
                continue
            # To the single learner (stream/agents/train.py), with the stored inputs.
            await (await engine.producer()).send(self.settings.labelled_topic, b"online",
                                           labelled_example(stored["x"], fb.label, fb.source, stored["t"],
                                                            event.message),
                                           partition=0, timestamp=None, headers=None)
            engine.stats.labels_forwarded += 1
            with writing_for(event):
                engine.features[key] = {**stored, "l": fb.label, "s": fb.source}


def register(engine: Engine) -> None:
    """Attach the learn agent to ``engine.app``."""
    learner = FeedbackLearner(engine)
    settings = engine.settings

    async def learn(stream: Any) -> None:
        await engine.declare_outputs()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_timeout_s):
            try:
                await learner.process(events)
            except Exception as exc:  # never let a bug kill the agent or drop labels silently
                log.exception("feedback batch failed; dead-lettering its %d records", len(events))
                await dead_letter_batch(engine, events, settings.topic_feedback_dlq, exc)

    learn.__module__ = __name__
    engine.app.agent(engine.topics.feedback, name=f"{__name__}.learn")(learn)
