"""The score agent: micro-batches of transactions in, scores and alerts out.

A thin adapter around :class:`stream.core.scoring.BatchScoring`, which does
the work: this module takes Faust events, hands their messages and the
``history`` table's store to the core, and moves what it returns to Kafka.
All records a batch causes (outputs, changelogs, dead letters) leave through
one :class:`~stream.kafka.outbox.Outbox` and are acknowledged by the broker before
the batch's source offsets are acked (:mod:`stream.kafka.batches`), so a crash
re-delivers the batch (at-least-once); a redelivered transaction sees the
inputs it was first scored with (read back from the features table) and
gets the same score and alert id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from faust.exceptions import PartitionsMismatch
from faust.types import EventT

from stream.contracts.dlq import DeadLetter, send_dead_letter
from stream.core.budget import encode_batch
from stream.core.retention import RetentionIndex
from stream.core.routing import EntityRouting
from stream.core.scoring import BatchScoring
from stream.kafka.batches import InFlight, ack, micro_batches
from stream.kafka.outbox import Outbox
from stream.kafka.state import store_mapping

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["BatchScorer", "batches_in_flight", "dead_letter_batch", "expire_table", "register",
           "stop_on_failed_delivery"]

log = logging.getLogger("fraudstream.score")


class BatchScorer:
    """Runs one micro-batch through the core and its results through the outbox."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        routing = EntityRouting(self.settings.entity_fields) if self.settings.entity_fields else None
        self.core = BatchScoring(engine.fusion, engine.limits, self.settings.history_length,
                                 self.settings.alert_threshold, routing=routing)
        self._outbox: Outbox | None = None

    async def process(self, events: Sequence[EventT]) -> asyncio.Future[Any]:
        """Score one micro-batch; returns the delivery of everything it produced (ack on success)."""
        engine = self.engine
        settings = self.settings
        stats = engine.stats
        if not settings.entity_fields:  # with entities the route agent reads the transactions topic and counts
            stats.events_in += len(events)
        if self._outbox is None:
            self._outbox = await engine.outbox()
        outbox = self._outbox
        self.core.fusion = engine.fusion  # a snapshot or a new checkpoint may have replaced it between batches
        self.core.rules = engine.rules  # so may the rules (stream/runtime/rulesync.py): they apply from this batch
        self.core.threshold = engine.alert_threshold  # and the alert budget's threshold (stream/runtime/thresholdsync.py)
        # The store (its dict in memory), not the table: Table.get on a miss costs an exception.
        batch = self.core.score([event.message for event in events], store_mapping(engine.history.data),
                                store_mapping(engine.features.data))
        dlq_topic = settings.topic_transactions_dlq
        for letter in batch.dead_letters:
            stats.dead_letter(dlq_topic, letter.reason)
            letter.queue(outbox, dlq_topic)
        if not batch.scored:
            return await outbox.send(last=True)

        started = time.perf_counter()
        outbox.put_all(engine.history, [(events[i], key, history) for i, key, history in batch.histories])
        outbox.put_all(engine.features, [(events[i], key, entry) for i, key, entry in batch.features])
        retain = engine.retention.add
        for i, key, entry in batch.features:
            retain(entry["p"], entry["t"], key)
        outbox.add_all(settings.topic_scores, None, batch.scores)
        for key, value in batch.alerts:
            outbox.add(settings.topic_alerts, None, key, value)
        if engine.topics.budget is not None:  # the batch's fused scores, for the one budget controller
            outbox.add(settings.budget_topic, 0, b"scores", encode_batch(
                batch.fused, max(t.event_time_ms for _, t in batch.scored), self.core.threshold))
        # Sent (and in the stores) before a late label is joined below: the join reads these
        # features and rewrites their keys, behind these records on the changelog.
        scored = await outbox.send()
        produced = time.perf_counter()
        seconds = batch.seconds
        seconds["encode_produce"] = seconds.get("encode_produce", 0.0) + (produced - started)
        stats.alerts += len(batch.alerts)
        stats.rule_hits.update(batch.rule_hits)
        stats.rule_failures.update(batch.rule_failures)
        stats.scored += len(batch.scored)
        stats.history_entries += batch.history_entries
        stats.batches += 1
        stats.first_scored_at = stats.first_scored_at or batch.scored_at_ms
        stats.last_scored_at = batch.scored_at_ms
        scored_events = [(events[i], t) for i, t in batch.scored]
        if engine.feedback is not None:
            engine.feedback.resolve_pending(scored_events, outbox)
        self._expire(scored_events, outbox)
        if engine.feedback is not None:
            engine.feedback.expire_pending(self._by_partition(scored_events), outbox)
        expired = await outbox.send(last=True)
        seconds["state"] = seconds.get("state", 0.0) + (time.perf_counter() - produced)
        telemetry = engine.telemetry
        telemetry.observe_latencies([(batch.scored_at_ms - r) / 1000.0 for r in batch.received_ms])
        if batch.hop_ms:
            telemetry.observe_latencies([ms / 1000.0 for ms in batch.hop_ms], telemetry.hop_latency)
            stats.observe_hops(batch.hop_ms)
        telemetry.observe_batch(len(events))
        telemetry.observe_stages(seconds)
        telemetry.set_versions(batch.versions)
        telemetry.alert_threshold.set(self.core.threshold)
        return asyncio.gather(scored, expired)

    def discard(self) -> None:
        """Forget what a failed batch had queued."""
        if self._outbox is not None:
            self._outbox.discard()

    @staticmethod
    def _by_partition(scored: list[tuple[EventT, Any]]) -> dict[int, EventT]:
        """The batch's last event per source partition (routes per-partition table writes)."""
        return {event.message.partition: event for event, _ in scored}

    def _expire(self, scored: list[tuple[EventT, Any]], outbox: Outbox) -> None:
        """Delete scoring-time inputs older than the retention, per partition."""
        engine = self.engine
        engine.stats.features_expired += expire_table(
            engine, engine.features, engine.retention, self._by_partition(scored), outbox)


def expire_table(engine: Engine, table: Any, index: RetentionIndex, last_events: dict[int, EventT],
                 outbox: Outbox) -> int:
    """Delete, through ``outbox``, the keys of ``table`` that ``index`` says are past their retention.

    ``table``'s values carry their transactions partition (``p``) and event time (``t``), from which the
    index is rebuilt whenever this worker's partitions change; ``last_events``: the batch's last event per
    partition (each delete is written on behalf of one). Returns how many keys were deleted.
    """
    index.follow_assignment(frozenset(engine.app.assignor.assigned_actives()), engine.settings.topic_transactions,
                            lambda: [(int(v["p"]), int(v["t"]), k) for k, v in table.items()
                                     if isinstance(v, dict) and "p" in v and "t" in v])
    store = store_mapping(table.data)
    deleted = 0
    for partition, event in last_events.items():
        for key in index.pop_expired(partition):
            if key in store:
                outbox.delete(table, event, key)
                deleted += 1
    return deleted


async def dead_letter_batch(engine: Engine, events: Sequence[EventT], dlq_topic: str, exc: Exception) -> None:
    """Send every record of a batch that failed unexpectedly to ``dlq_topic``."""
    for event in events:
        engine.stats.dead_letter(dlq_topic, "internal_error")
        await send_dead_letter(await engine.producer(), dlq_topic,
                               DeadLetter.from_message(event.message, "internal_error", repr(exc)))


def stop_on_failed_delivery(engine: Engine) -> Callable[[BaseException], None]:
    """What an agent does when a batch's outputs cannot be delivered (:class:`~stream.kafka.batches.InFlight`)."""

    def delivery_failed(exc: BaseException) -> None:
        # Not acked, and later batches are not committed past it (Faust commits up to the
        # first unacked offset): stop the worker, and whoever owns the partition next gets it again.
        if engine.app.should_stop:  # already stopping (or crashed): the batch stays unacked all the same
            log.error("delivering a batch's outputs failed while stopping; not acked, so processed again: %r", exc)
            return
        log.critical("delivering a batch's outputs failed; stopping without acking it: %r", exc)
        asyncio.ensure_future(engine.app.crash(exc))

    return delivery_failed


def batches_in_flight(engine: Engine) -> int:
    """How many micro-batches an agent may have on the wire (one under exactly_once: Faust's transactions)."""
    settings = engine.settings
    return settings.batches_in_flight if settings.processing_guarantee == "at_least_once" else 1


def register(engine: Engine) -> None:
    """Attach the score agent to ``engine.app``."""
    scorer = BatchScorer(engine)
    settings = engine.settings
    # Under exactly_once the outputs join Faust's transactions: one batch at a time, as tested.
    limit = batches_in_flight(engine)

    delivery_failed = stop_on_failed_delivery(engine)

    async def score(stream: Any) -> None:
        await engine.declare_outputs()
        await engine.model_sync.wait_ready()  # a new worker scores with the latest shared model
        if engine.rule_sync is not None:
            await engine.rule_sync.wait_ready()  # ... and the rules in force
        if engine.threshold_sync is not None:
            await engine.threshold_sync.wait_ready()  # ... and the alert budget's threshold
        in_flight = InFlight(limit, on_failure=delivery_failed)
        async for events in micro_batches(stream, settings.batch_size, within_s=settings.batch_timeout_s):
            try:
                engine.maybe_switch_sequence_model()
                delivery = await scorer.process(events)
            except PartitionsMismatch as exc:
                # Misconfiguration, not bad input: stop before acking anything.
                log.critical("%s", exc)
                await engine.app.crash(exc)
                raise
            except Exception as exc:  # a bug must not kill the agent nor lose the batch
                scorer.discard()
                log.exception("score batch failed; dead-lettering its %d records", len(events))
                await dead_letter_batch(engine, events, settings.topic_transactions_dlq, exc)
                ack(events)
                continue
            # Acked only once the broker has the batch's outputs and changelogs, from a callback
            # (stream/kafka/batches.py). With FRAUDSTREAM_BATCHES_IN_FLIGHT >= 2 the next batch is scored
            # while this one is on the wire; the wait below is for the oldest batch's delivery.
            waited = await in_flight.add(events, delivery)  # raises if that delivery failed
            # On the latency path, not the CPU's: the next batch waited for the oldest batch's acks.
            engine.telemetry.observe_stages({"delivery": waited})
        await in_flight.drain()

    score.__module__ = __name__
    # With entities the transactions come through their entity hops (stream/runtime/agents/entities.py).
    source = engine.topics.enriched if settings.entity_fields else engine.topics.transactions
    engine.app.agent(source, name=f"{__name__}.score")(score)
