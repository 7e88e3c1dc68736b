"""The budget agent: the one alert-budget controller, fed by every worker, followed by all.

With ``FRAUDSTREAM_ALERT_BUDGET`` each worker's score agent sends, with each
micro-batch's outputs, one record to the one-partition ``<app_id>-budget-scores``:
the batch's fused scores (float32), its latest event time and the threshold
it was scored with (:func:`stream.core.budget.encode_batch`): a few bytes a
transaction, not a second consumer of every score. Kafka gives that
partition to one worker at a time, so there is one controller
(:class:`stream.core.budget.ThresholdController`), as there is one online
learner (:mod:`stream.runtime.agents.train`). After each batch of records it
publishes the threshold, with its state, to the compacted ``<app_id>-threshold``
that every worker follows (:mod:`stream.runtime.thresholdsync`), and reports
moves of :data:`~stream.core.budget.REPORT_MOVE` or more on the ops topic
(``alert_threshold_moved``). A worker taking the partition over starts from
the last published state; the records after it are counted again (at most a
batch of the owner's work: a small excess the debt pays back).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faust.types import EventT

from models.snapshot import seal_record
from stream.contracts.budget import Budget
from stream.core.budget import BudgetError, ThresholdController, decode_batch
from stream.kafka.batches import ack, micro_batches

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["BudgetAgent", "register"]

log = logging.getLogger("fraudstream.budget")


class BudgetAgent:
    """Drives the controller with the budget topic's records and publishes what it decides."""

    def __init__(self, engine: Engine, budget: Budget) -> None:
        self.engine = engine
        self.budget = budget
        self.controller: ThresholdController | None = None
        self._published: float | None = None

    def take_over(self) -> ThresholdController:
        """A controller from the last published state (a fresh one without, or when it does not fit)."""
        s = self.engine.settings
        controller = ThresholdController(self.budget, s.alert_threshold_floor, s.alert_threshold_ceiling,
                                         s.alert_threshold)
        latest = self.engine.threshold_sync.latest if self.engine.threshold_sync is not None else None
        if latest is not None and latest.get("budget") == s.alert_budget and isinstance(latest.get("state"), dict):
            try:
                controller.restore(latest["state"])
            except (BudgetError, KeyError, TypeError, ValueError) as exc:
                log.warning("the published budget state does not fit (%s); starting afresh", exc)
        self.controller = controller
        self._published = controller.threshold if latest is not None else None
        log.info("alert budget %s: this worker holds the controller (threshold %s, %s)", s.alert_budget,
                 controller.threshold, "from the published state" if controller.count else "fresh")
        return controller

    def release(self) -> None:
        self.controller = None

    async def process(self, events: Sequence[EventT]) -> None:
        engine = self.engine
        controller = self.controller or self.take_over()
        for event in events:
            try:
                event_ms, used, scores = decode_batch(event.message.value or b"")
            except BudgetError as exc:
                log.error("skipping budget record at offset %d: %s", event.message.offset, exc)
                continue
            controller.update(scores, event_ms, used)
        moved = controller.moved()
        if moved is not None:
            log.info("alert threshold moved: %s", moved)
            await engine.send_ops("budget", moved)
        if controller.settled and controller.threshold != self._published:
            settings = engine.settings
            record = {"threshold": controller.threshold, "event_time": controller.now_ms,
                      "budget": settings.alert_budget, "state": controller.state()}
            producer = await engine.producer()
            # Signed: every worker obeys this record, and a forged one could silence every alert.
            await producer.send(settings.threshold_topic, b"threshold",
                                seal_record(record, settings.signing_key(), "threshold"), partition=0,
                                timestamp=None, headers=None)
            self._published = controller.threshold


def register(engine: Engine, budget: Budget) -> BudgetAgent:
    """Attach the budget agent (on the one-partition budget topic) to ``engine.app``."""
    agent = BudgetAgent(engine, budget)
    settings = engine.settings

    async def budget_controller(stream: Any) -> None:
        if engine.threshold_sync is not None:
            await engine.threshold_sync.wait_ready()  # the state to go on from
        async for events in micro_batches(stream, 1000, within_s=0.5):
            await agent.process(events)
            ack(events)

    budget_controller.__module__ = __name__
    engine.app.agent(engine.topics.budget, name=f"{__name__}.budget")(budget_controller)

    @engine.app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust awaits async receivers
    async def forget_controller(sender: Any, revoked: Any, **kwargs: Any) -> None:
        if any(tp.topic == settings.budget_topic for tp in revoked):
            agent.release()  # whoever gets the partition next starts from the published state

    return agent
