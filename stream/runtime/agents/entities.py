"""The entity hops (``FRAUDSTREAM_ENTITIES``): the route agent and one agent per entity kind, thin adapters.

``route`` reads ``transactions``, dead-letters what is not a valid transaction
(the same checks and reasons as scoring, on the record as it arrived) and
sends each valid one to its first entity topic; each entity agent reads its
topic, runs :class:`stream.core.entities.EntityStage` against its profile table
and sends each transaction on, with its features added, to the next entity
topic or to the enriched topic the score agent reads (:mod:`stream.core.routing`
says where and how). A batch is acked once the broker has everything it
produced (several batches may be on the wire at once, as the score agent's),
so a crash re-delivers it; a profile counts a redelivered transaction or label
once (by where the stage before read it, :func:`stream.core.routing.upstream`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from faust.types import TP, EventT

from stream.contracts.dlq import DeadLetter
from stream.contracts.records import Feedback, InvalidRecord, Transaction, parse_feedback, parse_transaction
from stream.core.alignment import EventTimeAlignment, PartitionKey
from stream.core.entities import EntityEvent
from stream.core.retention import RetentionIndex
from stream.core.routing import (
    ARRIVED_HEADER,
    FEATURES_HEADER,
    FEEDBACK_STAGE,
    KIND_HEADER,
    SOURCE_HEADER,
    UPSTREAM_HEADER,
    EntityRouting,
    arrived,
    header,
    parse_upstream,
    upstream,
)
from stream.core.scoring import validated
from stream.core.stored import StoredRecordError
from stream.kafka.batches import InFlight, ack, micro_batches
from stream.kafka.outbox import Outbox
from stream.kafka.state import store_mapping
from stream.runtime.agents.score import batches_in_flight, dead_letter_batch, expire_table, stop_on_failed_delivery

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["register"]

log = logging.getLogger("fraudstream.entities")

#: How long a record may wait for a source partition known to have records not yet fetched (a backlog). A busy
#: worker can take seconds to come back to a partition (five were too few on a loaded 2-core machine: a terminal's
#: distinct-cards count then depended on arrival order); live traffic is caught up and never waits on this.
BACKLOG_HOLD_MS = 30_000.0


class Hops:
    """Moves transactions between the entity topics through one outbox."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.routing = EntityRouting(self.settings.entity_fields)
        self._outboxes: dict[str, Outbox] = {}  # one per agent: an outbox holds one micro-batch at a time
        #: Valid transactions and labels held until their source partitions are in step (stream/core/alignment.py).
        self.alignment: EventTimeAlignment[tuple[Transaction | Feedback, EventT]] = EventTimeAlignment(
            self.settings.entity_align_ms, pending=self._pending, max_lag_hold_ms=BACKLOG_HOLD_MS)
        #: Newest transaction time routed per card partition: when a label without ``labelled_at`` counts from.
        self._seen_ms: dict[int, int] = {}
        self.route_retention = RetentionIndex(int(self.settings.feature_retention_s * 1000))
        #: The same for each entity hop's input partitions.
        self.hop_alignments: list[EventTimeAlignment[tuple[EventT, EntityEvent, Transaction | None]]] = [
            EventTimeAlignment(self.settings.entity_align_ms, max_lag_hold_ms=BACKLOG_HOLD_MS,
                               pending=self._pending_in(self.settings.entity_topic(entity_field)))
            for entity_field in self.routing.fields]

    def _pending(self, partition: PartitionKey, last_offset: int) -> bool:
        """Has the consumer fetched (or learnt of) records of ``(topic, partition)`` past ``last_offset``?"""
        assert isinstance(partition, tuple)
        try:
            highwater = self.engine.app.consumer.highwater(TP(*partition))
        except Exception:  # noqa: BLE001 - not assigned any more, or no consumer yet: nothing known to wait for
            return False
        return highwater is not None and highwater > last_offset + 1

    def _pending_in(self, topic: str) -> Callable[[PartitionKey, int], bool]:
        def pending(partition: PartitionKey, last_offset: int) -> bool:
            assert isinstance(partition, int)
            return self._pending((topic, partition), last_offset)
        return pending

    async def outbox(self, agent: str) -> Outbox:
        if agent not in self._outboxes:
            self._outboxes[agent] = await self.engine.outbox()
        return self._outboxes[agent]

    def discard(self, agent: str) -> list[EventT]:
        """Forget what a failed batch of ``agent`` had queued; returns the events it still held (unacked)."""
        if agent in self._outboxes:
            self._outboxes[agent].discard()
        if agent == "route":
            return [event for _, event in self.alignment.drain()]
        j = int(agent.removeprefix("entity-"))
        return [event for event, _, _ in self.hop_alignments[j].drain()]

    def forward(self, outbox: Outbox, t: Transaction, after: int, carried: bytes, value: bytes | None,
                source: bytes, read_at: bytes, arrived_at: bytes) -> None:
        """Send ``t`` to the hop after ``after``; ``read_at``: where this stage read it (:func:`upstream`);
        ``arrived_at``: when it reached Kafka (:func:`arrived`)."""
        hop = self.routing.next_hop(t, after, carried)
        topic = self.settings.enriched_topic if hop.to is None else self.settings.entity_topic(
            self.routing.fields[hop.to])
        outbox.add(topic, None, hop.key, value, [(FEATURES_HEADER, hop.carried), (SOURCE_HEADER, source),
                                                 (UPSTREAM_HEADER, read_at), (ARRIVED_HEADER, arrived_at)])

    async def route(self, events: Sequence[EventT]) -> tuple[list[EventT], asyncio.Future[Any]]:
        """Validate transactions where they arrive and send each to its first hop, and each label to its
        transaction's entities, all in event-time order (a label at its ``labelled_at``).

        Labels take this path, not the learn agent's, so that an entity hears of
        a label where it falls among the transactions in event time, whatever
        the learn agent's lag (a replay through a busy worker would otherwise
        teach terminals their frauds days of event time late). The learn agent
        still joins every label for the online learner and dead-letters bad
        ones; here an invalid label, or one whose transaction this worker has
        not routed (expired, never sent, another card's), is passed over.

        Returns the events done with (to ack once the delivery lands): the
        invalid ones (transactions dead-lettered) and those the alignment
        released; the others stay held, unacked.
        """
        engine, outbox = self.engine, await self.outbox("route")
        settings = self.settings
        dlq = settings.topic_transactions_dlq
        done: list[EventT] = []
        alignment = self.alignment
        feedback_topic = settings.topic_feedback
        for event in events:
            message = event.message
            if message.topic == feedback_topic:
                try:
                    fb = parse_feedback(message.value, engine.limits)
                except InvalidRecord:  # the learn agent dead-letters it, with its reason
                    done.append(event)
                    continue
                at = fb.labelled_at_ms
                if at is None:  # known from where its card partition's transactions are now
                    at = self._seen_ms.get(message.partition, 0)
                    fb = replace(fb, labelled_at_ms=at)
                alignment.add((message.topic, message.partition), at, (fb, event), message.offset)
                continue
            engine.stats.events_in += 1
            try:
                t = validated(message, engine.limits)
            except InvalidRecord as exc:
                engine.stats.dead_letter(dlq, exc.reason)
                DeadLetter.from_message(message, exc.reason, exc.detail).queue(outbox, dlq)
                done.append(event)
                continue
            if t.event_time_ms > self._seen_ms.get(message.partition, -1):
                self._seen_ms[message.partition] = t.event_time_ms
            alignment.add((message.topic, message.partition), t.event_time_ms, (t, event), message.offset)
        routes = store_mapping(engine.routes.data)
        routed: dict[bytes, Any] = {}  # this batch's entries (the table's store is written when the outbox sends)
        writes: list[tuple[EventT, bytes, Any]] = []
        for item, event in alignment.release():
            message = event.message
            if isinstance(item, Transaction):
                source = f"{message.topic}:{message.partition}:{message.offset}".encode()
                self.forward(outbox, item, -1, b"", message.value, source,
                             upstream(0, message.partition, message.offset), arrived(int(message.timestamp * 1000)))
                entry = self.routing.route_entry(item, message.partition)
                if entry is not None:
                    key = item.transaction_id.encode()
                    routed[key] = entry
                    writes.append((event, key, entry))
            else:
                key = item.transaction_id.encode()
                entry = routed.get(key) or routes.get(key)
                label_events = self.routing.label_events(item, entry, item.labelled_at_ms or 0)
                if not label_events:
                    engine.stats.entity_labels_unrouted += 1
                read_at = upstream(FEEDBACK_STAGE, message.partition, message.offset)
                for j, entity_key, entity_event in label_events:
                    outbox.add(settings.entity_topic(self.routing.fields[j]), None, entity_key, entity_event.encode(),
                               [(KIND_HEADER, b"label"), (UPSTREAM_HEADER, read_at)])
            done.append(event)
        outbox.put_all(engine.routes, writes)
        retention = self.route_retention
        for _, key, entry in writes:
            retention.add(entry["p"], entry["t"], key)
        # Transactions older than the feature retention: their labels are refused anyway.
        expire_table(engine, engine.routes, retention, {e.message.partition: e for e, _, _ in writes}, outbox)
        return done, await outbox.send(last=True)

    async def hop(self, j: int, events: Sequence[EventT]) -> tuple[list[EventT], asyncio.Future[Any]]:
        """Entity kind ``j``: features from its profiles, the profiles updated, the transactions sent on.

        Its input partitions are aligned in event time as the route agent's
        are (a label at its ``labelled_at``): what leaves for the next hop or
        for scoring leaves in event-time order, so a card's transactions,
        which reach this hop through different entities' partitions, reach
        scoring in their order. Returns the events done with (to ack once
        the delivery lands); the held ones stay unacked.
        """
        engine, outbox = self.engine, await self.outbox(f"entity-{j}")
        table = engine.profiles[j]
        stage = self.routing.stages[j]
        alignment = self.hop_alignments[j]
        done: list[EventT] = []
        for event in events:
            message = event.message
            try:
                if header(message.headers, KIND_HEADER) == b"label":
                    entity_event = EntityEvent.decode(message.value)
                    transaction = None
                    at = entity_event.labelled_at_ms
                else:
                    transaction = parse_transaction(message.value, engine.limits)
                    entity_event = EntityEvent.transaction(transaction.transaction_id, transaction.card_id,
                                                           transaction.event_time_ms, transaction.amount)
                    at = transaction.event_time_ms
            except (InvalidRecord, StoredRecordError) as exc:  # written by us: not bad input, a bug or damage
                engine.stats.dead_letter(self.settings.topic_transactions_dlq, "internal_error")
                DeadLetter.from_message(message, "internal_error", f"entity record unreadable: {exc}").queue(
                    outbox, self.settings.topic_transactions_dlq)
                done.append(event)
                continue
            alignment.add(message.partition, at, (event, entity_event, transaction), message.offset)
        released = alignment.release()
        items = [(event.message.key or b"", entity_event,
                  parse_upstream(header(event.message.headers, UPSTREAM_HEADER)))
                 for event, entity_event, _ in released]
        batch = stage.process(items, store_mapping(table.data))
        for i, reason in batch.unreadable:
            log.error("entity profile %r unreadable, started afresh: %s", items[i][0], reason)
        last_event: dict[bytes, EventT] = {}
        for (key, _, _), (event, _, _) in zip(items, released, strict=True):
            last_event[key] = event
        outbox.put_all(table, [(last_event[key], key, profile) for key, profile in batch.profiles.items()])
        transactions = [(transaction, event) for event, _, transaction in released if transaction is not None]
        for (transaction, event), f in zip(transactions, batch.features, strict=True):
            message = event.message
            carried = (header(message.headers, FEATURES_HEADER) or b"") + self.routing.pack(f.features, stage.names)
            self.forward(outbox, transaction, j, carried, message.value,
                         header(message.headers, SOURCE_HEADER) or b"", upstream(j + 1, message.partition, message.offset),
                         header(message.headers, ARRIVED_HEADER) or arrived(int(message.timestamp * 1000)))
        done.extend(event for event, _, _ in released)
        return done, await outbox.send(last=True)


def register(engine: Engine) -> None:
    """Attach the route agent and one agent per entity kind to ``engine.app`` (only with entities)."""
    settings = engine.settings
    if not settings.entity_fields:
        return
    hops = Hops(engine)

    limit = batches_in_flight(engine)
    delivery_failed = stop_on_failed_delivery(engine)

    def agent(topic: Any, name: str, outbox: str, work: Any, dlq: str, stage: str) -> None:
        async def run(stream: Any) -> None:
            await engine.declare_outputs()
            idle_s = settings.entity_align_ms / 1000.0 if settings.entity_align_ms else None  # held ones go on idle
            # As the score agent: the next batch is worked on while the last one's records are on the wire,
            # each acked once its own delivery lands (stream/kafka/batches.py).
            in_flight = InFlight(limit, on_failure=delivery_failed)
            async for events in micro_batches(stream, settings.batch_size, within_s=settings.batch_timeout_s,
                                              idle_s=idle_s):
                started = time.perf_counter()
                try:
                    done, delivery = await work(events)
                except Exception as exc:  # never let a bug kill the agent or drop records silently
                    held = hops.discard(outbox)
                    failed = list({id(e): e for e in [*events, *held]}.values())
                    log.exception("%s batch failed; dead-lettering its %d records", name, len(failed))
                    await dead_letter_batch(engine, failed, dlq, exc)
                    ack(failed)
                    continue
                # The hop's time per batch, handing its records to the producer included (as the score agent's
                # encode_produce); the bench itemises it per transaction.
                engine.telemetry.observe_stages({stage: time.perf_counter() - started})
                await in_flight.add(done, delivery)  # raises if the delivery waited for failed
            await in_flight.drain()

        run.__module__ = __name__
        engine.app.agent(topic, name=f"{__name__}.{name}")(run)

    agent(engine.topics.arrivals, "route", "route", hops.route, settings.topic_transactions_dlq, "route")
    for j, entity_field in enumerate(settings.entity_fields):
        async def work(events: Sequence[EventT], j: int = j) -> tuple[list[EventT], asyncio.Future[Any]]:
            return await hops.hop(j, events)

        agent(engine.topics.entities[j], f"entity_{entity_field}", f"entity-{j}", work, settings.topic_transactions_dlq,
              f"entity_{entity_field}")
