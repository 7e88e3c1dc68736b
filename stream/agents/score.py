"""The score agent: micro-batches of transactions in, scores and alerts out.

Per batch: decode and validate every record (bad ones to the DLQ with their
reason), read each card's history, compute features in event time, score the
whole batch with every model at once, write the new histories and the
scoring-time inputs to their tables, then produce scores and alerts. All
records the batch causes (outputs, changelogs, dead letters) leave through one
:class:`~stream.outbox.Outbox` and are acknowledged by the broker before the
batch's source offsets are acked (:mod:`stream.batches`), so a crash
re-delivers the batch (at-least-once); a redelivered transaction sees the
history it saw the first time and gets the same alert id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from faust.exceptions import PartitionsMismatch
from faust.types import EventT

from models.features import engineered_batch
from models.history import History, advance, new_history, scored_windows
from models.online import ONLINE_INPUTS
from models.reasons import top_reasons
from models.scoring import ScoringItem
from stream.batches import InFlight, ack, micro_batches
from stream.codec import dumps
from stream.dlq import DeadLetter, send_dead_letter
from stream.outbox import Outbox
from stream.outputs import alert_record, score_records
from stream.records import InvalidRecord, Transaction, parse_transaction
from stream.state import pack_rows, store_mapping
from stream.timing import StageClock

if TYPE_CHECKING:
    from stream.app import Engine

__all__ = ["BatchScorer", "dead_letter_batch", "register"]

log = logging.getLogger("fraudstream.score")


class BatchScorer:
    """Everything the score agent does to one micro-batch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self._outbox: Outbox | None = None

    async def process(self, events: Sequence[EventT]) -> asyncio.Future[Any]:
        """Score one micro-batch; returns the delivery of everything it produced (ack on success)."""
        clock = StageClock()
        started = clock.started
        engine = self.engine
        engine.stats.events_in += len(events)
        if self._outbox is None:
            self._outbox = await engine.outbox()
        outbox = self._outbox
        dlq_topic = self.settings.topic_transactions_dlq
        valid: list[tuple[EventT, Transaction]] = []
        for event in events:
            message = event.message
            try:
                t = parse_transaction(message.value, engine.limits)
                if message.key is not None and message.key != t.card_id.encode():
                    raise InvalidRecord(
                        "key_mismatch",
                        f"record key {message.key[:64]!r} is not card_id {t.card_id!r}; "
                        "per-card state needs transactions keyed by card_id",
                    )
            except InvalidRecord as exc:
                engine.stats.dead_letter(dlq_topic, exc.reason)
                DeadLetter.from_message(message, exc.reason, exc.detail).queue(outbox, dlq_topic)
                continue
            valid.append((event, t))
        clock.lap("decode")
        if not valid:
            return await outbox.send(last=True)

        # State: chain histories through the batch, a card may appear many times.
        histories: dict[bytes, History] = {}
        last_event: dict[bytes, EventT] = {}
        priors: list[History] = []
        # The store (its dict in memory), not the table: Table.get on a miss costs an exception.
        history_store = store_mapping(engine.history.data)
        for event, t in valid:
            key = t.card_id.encode()
            history = histories.get(key)
            if history is None:
                history = history_store.get(key) or new_history()
            prior, histories[key] = advance(history, t, self.settings.history_length)
            priors.append(prior)
            last_event[key] = event
        clock.lap("state")
        transactions = [t for _, t in valid]
        windows = scored_windows(priors, transactions)  # gathered once: engineered features and sequence model
        features = engineered_batch(priors, transactions, windows)
        items = [ScoringItem(t, prior, x, windows, row)
                 for row, (t, prior, x) in enumerate(zip(transactions, priors, features, strict=True))]
        clock.lap("features")

        fused = await self._score(items, valid, outbox)
        if fused is None:
            return await outbox.send(last=True)
        scores, components, inputs, keep = fused
        clock.add(engine.fusion.last_seconds)

        # Write state: one history write per card per batch.
        outbox.put_all(engine.history, [(last_event[key], key, history) for key, history in histories.items()])
        online = engine.fusion.online
        retain = engine.retention.add
        writes = []
        for (event, t), packed in zip(keep, pack_rows(online.select(inputs)), strict=True):
            tx_key = t.transaction_id.encode()
            partition = event.message.partition
            writes.append((event, tx_key, {"c": t.card_id, "t": t.event_time_ms, "p": partition, "x": packed}))
            retain(partition, t.event_time_ms, tx_key)
        outbox.put_all(engine.features, writes)
        clock.lap("state")

        # Outputs.
        versions = engine.fusion.versions()
        threshold = self.settings.alert_threshold
        processing_ms = (time.perf_counter() - started) * 1000.0
        scored_at = int(time.time() * 1000)
        telemetry = engine.telemetry
        explanations = self._sequence_reasons(items, keep, scores, threshold)
        received = [int(event.message.timestamp * 1000) for event, _ in keep]
        records = score_records([t for _, t in keep], scores, components, versions, threshold, received, scored_at,
                                processing_ms)
        telemetry.observe_latencies([(scored_at - r) / 1000.0 for r in received])
        keys = [t.card_id.encode() for _, t in keep]
        outbox.add_all(self.settings.topic_scores, None,
                       [(key, dumps(record)) for key, record in zip(keys, records, strict=True)])
        for i, record in enumerate(records):
            if record["decision"] == "alert":
                t = keep[i][1]
                x = dict(zip(ONLINE_INPUTS, inputs[i].tolist(), strict=True))
                contributions, below = online.explain(x)
                reasons = top_reasons(t, x, contributions, below_usual=below)
                reasons = (reasons + explanations.get(i, []))[:5]
                outbox.add(self.settings.topic_alerts, None, keys[i], dumps(alert_record(record, t, reasons)))
                engine.stats.alerts += 1
        # Queued (and in the stores) before a late label is joined below: the join reads
        # these features and rewrites their keys through Faust's producer, behind ours.
        scored = await outbox.send()
        engine.stats.scored += len(keep)
        engine.stats.history_entries += int(windows.lengths.sum())
        engine.stats.batches += 1
        engine.stats.first_scored_at = engine.stats.first_scored_at or scored_at
        engine.stats.last_scored_at = scored_at
        clock.lap("encode_produce")
        if engine.feedback is not None:
            await engine.feedback.resolve_pending(keep)
        self._expire(valid, outbox)
        if engine.feedback is not None:
            await engine.feedback.expire_pending(self._by_partition(valid))
        expired = await outbox.send(last=True)
        clock.lap("state")
        telemetry.observe_batch(len(events))
        telemetry.observe_stages(clock.seconds)
        telemetry.set_versions(versions)
        return asyncio.gather(scored, expired)

    def discard(self) -> None:
        """Forget what a failed batch had queued."""
        if self._outbox is not None:
            self._outbox.discard()

    def _sequence_reasons(self, items: list[ScoringItem], keep: list[tuple[EventT, Transaction]],
                          scores: list[float], threshold: float) -> dict[int, list[dict[str, Any]]]:
        """What the sequence model saw in the alerted transactions (one batched backward pass)."""
        sequence = self.engine.fusion.sequence
        if sequence is None or not hasattr(sequence, "explain"):
            return {}
        by_id = {id(item.transaction): item for item in items}  # keep holds the same Transaction objects
        alerted = [i for i, s in enumerate(scores) if s >= threshold]
        if not alerted:
            return {}
        try:
            explained = sequence.explain([by_id[id(keep[i][1])] for i in alerted], steps=1, features=1)
        except Exception:  # an explanation must never cost the alert itself
            log.exception("sequence explanation failed; alerts keep the online learner's reasons")
            return {}
        return {i: [{k: r[k] for k in ("code", "text", "weight")} for r in reasons]
                for i, reasons in zip(alerted, explained, strict=True)}

    async def _score(
        self, items: list[ScoringItem], valid: list[tuple[EventT, Transaction]], outbox: Outbox
    ) -> tuple[list[float], dict[str, list[float]], npt.NDArray[np.float64], list[tuple[EventT, Transaction]]] | None:
        """Score the batch; if a model fails on it, isolate the failing records."""
        fusion = self.engine.fusion
        try:
            batch = fusion.score_batch(items)
            return (batch.score.tolist(), {k: v.tolist() for k, v in batch.components.items()},
                    batch.inputs, valid)
        except Exception:
            log.exception("batch scoring failed; scoring its %d records one by one", len(items))
        scores: list[float] = []
        components: dict[str, list[float]] = {}
        inputs: list[npt.NDArray[np.float64]] = []
        keep: list[tuple[EventT, Transaction]] = []
        dlq_topic = self.settings.topic_transactions_dlq
        for item, (event, t) in zip(items, valid, strict=True):
            try:
                one = fusion.score_batch([item])
            except Exception as exc:  # noqa: BLE001 - any model failure dead-letters only this record
                self.engine.stats.dead_letter(dlq_topic, "scoring_error")
                DeadLetter.from_message(event.message, "scoring_error", repr(exc)).queue(outbox, dlq_topic)
                continue
            scores.append(float(one.score[0]))
            for k, v in one.components.items():
                components.setdefault(k, []).append(float(v[0]))
            inputs.append(one.inputs[0])
            keep.append((event, t))
        return (scores, components, np.vstack(inputs), keep) if keep else None

    @staticmethod
    def _by_partition(valid: list[tuple[EventT, Transaction]]) -> dict[int, EventT]:
        """The batch's last event per source partition (routes per-partition table writes)."""
        return {event.message.partition: event for event, _ in valid}

    def _expire(self, valid: list[tuple[EventT, Transaction]], outbox: Outbox) -> None:
        """Delete scoring-time inputs older than the retention, per partition."""
        engine = self.engine
        engine.retention.follow_assignment(frozenset(engine.app.assignor.assigned_actives()),
                                           self.settings.topic_transactions, self._table_index)
        store = store_mapping(engine.features.data)
        for partition, event in self._by_partition(valid).items():
            for key in engine.retention.pop_expired(partition):
                if key in store:
                    outbox.delete(engine.features, event, key)
                    engine.stats.features_expired += 1

    def _table_index(self) -> list[tuple[int, int, bytes]]:
        out = []
        for key, value in self.engine.features.items():
            if isinstance(value, dict) and "p" in value and "t" in value:
                out.append((int(value["p"]), int(value["t"]), key))
        return out


async def dead_letter_batch(engine: Engine, events: Sequence[EventT], dlq_topic: str, exc: Exception) -> None:
    """Send every record of a batch that failed unexpectedly to ``dlq_topic``."""
    for event in events:
        engine.stats.dead_letter(dlq_topic, "internal_error")
        await send_dead_letter(await engine.producer(), dlq_topic,
                               DeadLetter.from_message(event.message, "internal_error", repr(exc)))


def register(engine: Engine) -> None:
    """Attach the score agent to ``engine.app``."""
    scorer = BatchScorer(engine)
    settings = engine.settings
    # Under exactly_once the outputs join Faust's transactions: one batch at a time, as tested.
    limit = settings.batches_in_flight if settings.processing_guarantee == "at_least_once" else 1

    def delivery_failed(exc: BaseException) -> None:
        # Not acked, and later batches are not committed past it (Faust commits up to the
        # first unacked offset): stop the worker, and whoever owns the partition next gets it again.
        if engine.app.should_stop:  # already stopping (or crashed): the batch stays unacked all the same
            log.error("delivering a batch's outputs failed while stopping; not acked, so processed again: %r", exc)
            return
        log.critical("delivering a batch's outputs failed; stopping without acking it: %r", exc)
        asyncio.ensure_future(engine.app.crash(exc))

    async def score(stream: Any) -> None:
        await engine.declare_outputs()
        await engine.model_sync.wait_ready()  # a new worker scores with the latest shared model
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
            # (stream/batches.py). With FRAUDSTREAM_BATCHES_IN_FLIGHT >= 2 the next batch is scored
            # while this one is on the wire; the wait below is for the oldest batch's delivery.
            waited = await in_flight.add(events, delivery)  # raises if that delivery failed
            # On the latency path, not the CPU's: the next batch waited for the oldest batch's acks.
            engine.telemetry.observe_stages({"delivery": waited})
        await in_flight.drain()

    score.__module__ = __name__
    engine.app.agent(engine.topics.transactions, name=f"{__name__}.score")(score)
