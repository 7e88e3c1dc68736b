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

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from models.trees import TreeModel
from stream.contracts.dlq import send_dead_letter
from stream.core.training import OnlineTraining, TreeSchedule
from stream.kafka.batches import ack, micro_batches

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["Trainer", "register"]

log = logging.getLogger("fraudstream.train")

#: Seconds without labels after which a due refit starts at once, whatever FRAUDSTREAM_TREES_CPU_SHARE says.
QUIET_S = 1.0


def sequence_trained_until(scorer: Any) -> int | None:
    """The newest transaction time the sequence model in force was trained on, from its checkpoint (None: unknown)."""
    config = getattr(scorer, "config", None) or {}
    value = config.get("training", {}).get("trained_until_ms") if isinstance(config, dict) else None
    return int(value) if isinstance(value, int | float) else None


class Trainer(OnlineTraining):
    """:class:`OnlineTraining` with the engine's settings, sending what each step causes."""

    def __init__(self, engine: Engine) -> None:
        s = engine.settings
        trees = None if s.trees_refit_s <= 0 else TreeSchedule(
            int(s.trees_refit_s * 1000), int(s.trees_window_s * 1000), s.trees_max_examples, s.trees_min_frauds)
        super().__init__(s.signing_key(), s.feedback_source_cap_per_hour, window=s.quality_window,
                         delta=s.drift_delta, min_labels=s.drift_min_labels, max_auc_drop=s.drift_max_auc_drop,
                         trees=trees, sequence_trained_until=lambda: sequence_trained_until(engine.fusion.sequence))
        self.engine = engine
        #: The trees being fitted in a thread, and when the fit started; installed by the first step after it ends.
        self._fitting: tuple[asyncio.Future[TreeModel], float] | None = None
        #: No fit starts before this (monotonic seconds): fits take at most FRAUDSTREAM_TREES_CPU_SHARE of a core.
        self._next_fit_at = 0.0
        #: When a step last had labels (monotonic seconds).
        self._labels_at = 0.0

    def release(self) -> None:
        super().release()
        self._fitting = None  # fitted for the old ownership: the next owner fits its own

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
        snapshot = step.snapshot
        refit: dict[str, Any] | None = None
        if self._fitting is not None and self._fitting[0].done():
            installed = await self._install()
            if installed is not None:
                snapshot, refit = installed
        now = time.perf_counter()
        if events:
            self._labels_at = now
        # A quiet label path (a paused replay waiting for this refit: replay/refits.py) has no CPU to protect.
        may_fit = now >= self._next_fit_at or now - self._labels_at >= QUIET_S
        due = self.refit_due() if refit is not None else step.refit_due  # not again for what was just installed
        if due and self._fitting is None and may_fit:
            # In a thread (LightGBM releases the GIL), and not awaited: labels keep being learned meanwhile, so a
            # replay (a day of event time in seconds) does not leave the learner behind while the trees fit.
            # The job's snapshot of the examples is taken here, on the loop: step() goes on adding to them.
            self._fitting = (asyncio.ensure_future(asyncio.to_thread(self.trees_job())), now)
        if snapshot is not None:
            await producer.send(settings.models_topic, b"online", snapshot, partition=0, timestamp=None,
                                headers=None)
            engine.stats.snapshots_published += 1
        if refit is not None:  # once the trees and the snapshot naming them are out: a replay waits for this
            await engine.send_ops("trainer", refit)
        engine.stats.labels_learned += step.learned
        engine.stats.labels_capped += step.capped
        engine.stats.labels_sequence_masked += step.sequence_masked
        engine.stats.rollbacks += step.rollbacks


    async def _install(self) -> tuple[bytes, dict[str, Any]] | None:
        """Seal the trees a finished fit made into the next snapshot, and the ``trees_refit`` ops record to send
        after it (None if it failed: the current ones stay)."""
        assert self._fitting is not None
        future, started = self._fitting
        self._fitting = None
        try:
            trees = future.result()
        except Exception as exc:  # a failed refit keeps the trees in force; the next step tries again
            log.exception("refitting the trees failed; the current ones stay")
            await self.engine.send_ops("trainer", {"type": "trees_refit_failed", "error": repr(exc)})
            return None
        if self.learner is None:  # the partition was revoked meanwhile: the next owner refits
            return None
        now = time.perf_counter()
        seconds = now - started
        # Real time refits once a day; a replay of last year would ask every few seconds and starve the label
        # path of CPU (the learner would fall days of event time behind): the next fit waits its share out.
        share = self.engine.settings.trees_cpu_share
        self._next_fit_at = now + seconds * (1.0 / share - 1.0)
        log.info("trees %s fitted on %d examples (%d fraud) in %.1f s", trees.version, trees.examples, trees.frauds,
                 seconds)
        record = {"type": "trees_refit", "version": trees.version, "examples": trees.examples,
                  "frauds": trees.frauds, "fitted_until_ms": trees.fitted_until_ms, "seconds": round(seconds, 3),
                  "ignored": list(trees.ignored)}
        self.engine.stats.trees_refits += 1
        trees_blob, snapshot = self.install_trees(trees)
        producer = await self.engine.producer()  # the trees first: the snapshot that names them follows
        await producer.send(self.engine.settings.models_topic, b"trees", trees_blob, partition=0, timestamp=None,
                            headers=None)
        return snapshot, record


def register(engine: Engine) -> Trainer:
    """Attach the trainer agent (on the one-partition labelled topic) to ``engine.app``."""
    trainer = Trainer(engine)
    settings = engine.settings

    async def train(stream: Any) -> None:
        await engine.model_sync.wait_ready()
        # idle_s: a step without labels now and then, so trees fitted after the last label still get installed.
        async for events in micro_batches(stream, 1000, within_s=settings.snapshot_interval_s,
                                          idle_s=max(settings.snapshot_interval_s, 0.1)):
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
