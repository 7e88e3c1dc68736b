"""The trainer agent: the one online learner, fed by every worker, published to all.

Each worker's learn agent forwards joined labels to a one-partition topic.
Kafka gives that partition to exactly one worker at a time, so there is one
learner, not one per worker. This agent drives
:class:`stream.core.training.OnlineTraining` (which learns, guards quality and
seals snapshots) and sends what a step causes: the signed snapshot to the
model topic, which every worker follows (``stream/runtime/modelsync.py``), ops
records and capped labels' dead letters. Offsets are committed only after the
batch, hence after its snapshot; a worker taking the partition over starts
from the latest snapshot and skips examples it already includes, so no label
is learned twice or lost across a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from stream.contracts.dlq import send_dead_letter
from stream.core.training import OnlineTraining
from stream.kafka.batches import ack, micro_batches

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["Trainer", "register"]

log = logging.getLogger("fraudstream.train")


class Trainer(OnlineTraining):
    """:class:`OnlineTraining` with the engine's settings, sending what each step causes."""

    def __init__(self, engine: Engine) -> None:
        s = engine.settings
        super().__init__(s.signing_key(), s.feedback_source_cap_per_hour, window=s.quality_window,
                         delta=s.drift_delta, min_labels=s.drift_min_labels, max_auc_drop=s.drift_max_auc_drop)
        self.engine = engine

    async def process(self, events: Sequence[EventT]) -> None:
        engine = self.engine
        if self.learner is None:
            self.take_over(engine.model_sync.latest_blob, engine.fusion.online)
        step = self.step([(event.message.offset, event.message.value) for event in events])
        settings = engine.settings
        producer = await engine.producer()
        for letter in step.dead_letters:
            engine.stats.dead_letter(settings.topic_feedback_dlq, letter.reason)
            await send_dead_letter(producer, settings.topic_feedback_dlq, letter)
        for record in step.ops:
            await engine.send_ops("trainer", record)
        if step.snapshot is not None:
            await producer.send(settings.models_topic, b"online", step.snapshot, partition=0, timestamp=None,
                                headers=None)
            engine.stats.snapshots_published += 1
        engine.stats.labels_learned += step.learned
        engine.stats.labels_capped += step.capped
        engine.stats.rollbacks += step.rollbacks


def register(engine: Engine) -> Trainer:
    """Attach the trainer agent (on the one-partition labelled topic) to ``engine.app``."""
    trainer = Trainer(engine)
    settings = engine.settings

    async def train(stream: Any) -> None:
        await engine.model_sync.wait_ready()
        async for events in micro_batches(stream, 1000, within_s=settings.snapshot_interval_s):
            await trainer.process(events)
            ack(events)

    train.__module__ = __name__
    engine.app.agent(engine.topics.labelled, name=f"{__name__}.train")(train)

    @engine.app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust awaits async receivers
    async def forget_learner(sender: Any, revoked: Any, **kwargs: Any) -> None:
        # Whoever gets the partition next starts from the published snapshot.
        if any(tp.topic == settings.labelled_topic for tp in revoked):
            trainer.release()

    return trainer
