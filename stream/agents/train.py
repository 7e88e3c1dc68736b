"""The trainer: the one online learner, fed by every worker, published to all.

Each worker's learn agent joins labels with their scoring-time inputs and
forwards the labelled examples to a one-partition topic. Kafka gives that
partition to exactly one worker at a time, so there is one learner, not one per
worker. After each batch it publishes a signed snapshot (``seq``, the offset
of the last example it includes) to the model topic, which every worker
follows (``stream/modelsync.py``). Offsets are committed only after the batch,
hence after its snapshot; a worker taking the partition over starts from the
latest snapshot and skips examples it already includes, so no label is learned
twice or lost across a crash.

Per example: the source cap (``stream/caps.py``) may refuse it; the learner
predicts it first (prequential test for the quality guard, ``models/guard.py``)
and then learns it. On a guard alarm the learner rolls back to the last good
snapshot and an operational alert goes to the ops topic.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from models.guard import QualityGuard
from models.online import OnlineLearner
from models.snapshot import seal, unseal
from stream.batches import ack, micro_batches
from stream.caps import SourceCap
from stream.dlq import DeadLetter, send_dead_letter
from stream.state import unpack_inputs

if TYPE_CHECKING:
    from stream.app import Engine

__all__ = ["Trainer", "labelled_example", "register"]

log = logging.getLogger("fraudstream.train")


def labelled_example(x: list[float], label: int, source: str, event_time_ms: int, message: Any) -> bytes:
    """The record a learn agent forwards; it carries the original label record for the DLQ."""
    return json.dumps({
        "x": x, "y": label, "src": source, "t": event_time_ms,
        "orig": {"topic": message.topic, "partition": message.partition, "offset": message.offset,
                 "key": base64.b64encode(message.key or b"").decode(),
                 "value": base64.b64encode(message.value or b"").decode()},
    }).encode()


class Trainer:
    """Owns the single learner while this worker holds the labelled partition."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        s = engine.settings
        self.guard = QualityGuard(window=s.quality_window, delta=s.drift_delta, min_labels=s.drift_min_labels,
                                  max_auc_drop=s.drift_max_auc_drop)
        self.cap = SourceCap(s.feedback_source_cap_per_hour)
        self.learner: OnlineLearner | None = None
        self.seq = 0
        self.applied_offset = -1
        self.last_good: bytes | None = None

    def _take_over(self) -> None:
        """Start from the newest verified snapshot (or a fresh learner)."""
        sync = self.engine.model_sync
        key = self.engine.settings.signing_key()
        if sync.latest_blob is not None:
            self.learner, meta = unseal(sync.latest_blob, key)
            self.seq = int(meta.get("seq", 0))
            self.applied_offset = int(meta.get("offset", -1))
            self.last_good = sync.latest_blob if meta.get("good") else None
            if meta.get("baseline_auc") is not None:
                self.guard.baseline_auc = float(meta["baseline_auc"])
        else:
            # A copy: the scoring model changes only when a snapshot is installed.
            self.learner = copy.deepcopy(self.engine.fusion.online)
        log.info("trainer owns the online learner: seq %d, %d labels, resuming after offset %d",
                 self.seq, self.learner.n_labels, self.applied_offset)

    async def process(self, events: Sequence[EventT]) -> None:
        if self.learner is None:
            self._take_over()
        learner = self.learner
        assert learner is not None
        engine = self.engine
        names = learner.feature_names
        learned = 0
        start_offset = last_offset = self.applied_offset
        for event in events:
            offset = event.message.offset
            if offset <= self.applied_offset:
                continue  # already inside the snapshot this learner started from
            last_offset = max(last_offset, offset)
            try:
                if event.message.value is None:
                    raise ValueError("a record without a value")
                ex = json.loads(event.message.value)
                # unpack_inputs: a learn agent still on an earlier build (rolling upgrade, rollback)
                # forwards an entry packed by a newer score agent as it found it.
                x = dict(zip(names, unpack_inputs(ex["x"]), strict=True))
            except (ValueError, KeyError, TypeError) as exc:
                # Only our own learn agents write this topic; a bad record is a bug or a
                # foreign writer. Say so loudly and keep the learner consistent.
                log.error("unusable labelled example at offset %d: %r", offset, exc)
                await self._ops({"type": "bad_labelled_example", "offset": offset, "error": repr(exc)})
                continue
            if not self.cap.allow(ex["src"], ex["t"]):
                await self._capped(ex)
                continue
            p = float(learner.predict_many([x])[0])
            if self.guard.update(ex["y"], p):
                await self._roll_back()
                learner = self.learner
                assert learner is not None
            learner.learn(x, int(ex["y"]))
            learned += 1
        self.applied_offset = last_offset
        if last_offset > start_offset:
            await self._publish()
        engine.stats.labels_learned += learned

    async def _publish(self) -> None:
        learner = self.learner
        assert learner is not None
        self.seq += 1
        healthy = self.guard.healthy()
        if healthy:
            self.guard.mark_good()
        meta = {"seq": self.seq, "offset": self.applied_offset, "good": healthy,
                "baseline_auc": self.guard.baseline_auc, "guard": self.guard.state()}
        learner.snapshot_seq = self.seq
        blob = seal(learner, self.engine.settings.signing_key(), meta)
        if healthy:
            self.last_good = blob
        await (await self.engine.producer()).send(self.engine.settings.models_topic, b"online", blob,
                                            partition=0, timestamp=None, headers=None)
        self.engine.stats.snapshots_published += 1

    async def _roll_back(self) -> None:
        state = self.guard.state()
        before = self.learner.version if self.learner else "?"
        if self.last_good is not None:
            self.learner, meta = unseal(self.last_good, self.engine.settings.signing_key())
            target = f"snapshot seq {meta.get('seq')}"
        else:
            target = "no good snapshot yet: kept learning"
        self.guard.reset()
        self.engine.stats.rollbacks += 1
        log.error("online model quality dropped (%s); rolled back from %s to %s", state, before, target)
        await self._ops({"type": "online_model_rollback", "reason": "rolling AUC dropped and ADWIN detected "
                         "a rise in error", "guard": state, "from_version": before, "to": target})

    async def _capped(self, ex: dict[str, Any]) -> None:
        orig = ex["orig"]
        topic = self.engine.settings.topic_feedback_dlq
        self.engine.stats.labels_capped += 1
        self.engine.stats.dead_letter(topic, "source_rate_limited")
        letter = DeadLetter("source_rate_limited",
                            f"source {ex['src']!r} exceeded {self.cap.max_per_hour} labels per event hour",
                            orig["topic"], orig["partition"], orig["offset"],
                            base64.b64decode(orig["key"]), base64.b64decode(orig["value"]))
        await send_dead_letter(await self.engine.producer(), topic, letter)
        rejected = self.cap.rejected[ex["src"]]
        if rejected in (1, 100, 10_000):  # say it on the ops topic, without flooding it
            await self._ops({"type": "label_source_capped", "source": ex["src"], "rejected_so_far": rejected})

    async def _ops(self, record: dict[str, Any]) -> None:
        await self.engine.send_ops("trainer", record)


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
            trainer.learner = None

    return trainer
