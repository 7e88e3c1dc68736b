"""What a worker's agents share: the Faust app, its topics and tables, the models, the counters.

:class:`Engine` holds them; :func:`worker_app` builds the Faust app with the
patches the engine needs; :mod:`stream.runtime.worker` wires the agents onto it.

Example:
    >>> sorted(Topics.__dataclass_fields__)[:4]
    ['alerts', 'arrivals', 'budget', 'enriched']
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust

from models.checkpoint import CheckpointWatcher, load_checkpoint
from models.fusion import Fusion
from models.online import OnlineLearner, online_inputs
from stream import patches
from stream.contracts.records import Limits
from stream.contracts.settings import Settings, SettingsError
from stream.core.retention import RetentionIndex
from stream.core.rules import RuleSet
from stream.kafka.outbox import Outbox
from stream.kafka.raw import RawBytes
from stream.kafka.security import client_kwargs, faust_credentials
from stream.runtime.stats import Stats
from stream.runtime.telemetry import Telemetry

__all__ = ["Engine", "ModelFollower", "Topics", "build_fusion", "open_outbox", "worker_app", "worker_topic"]

log = logging.getLogger("fraudstream")


@dataclass
class Topics:
    """Every topic the engine reads or writes (raw bytes in and out)."""

    transactions: Any
    feedback: Any
    scores: Any
    alerts: Any
    transactions_dlq: Any
    feedback_dlq: Any
    labelled: Any
    models: Any
    ops: Any
    #: With ``FRAUDSTREAM_ENTITIES``: one repartition topic per entity kind, in hop order, and the enriched one.
    entities: list[Any] = field(default_factory=list)
    enriched: Any = None
    #: With ``FRAUDSTREAM_ENTITIES``: ``transactions`` and ``feedback`` as one input (the route agent's).
    arrivals: Any = None
    rules: Any = None  # the dynamic rules (compacted, one partition), read by every worker
    #: With ``FRAUDSTREAM_ALERT_BUDGET``: every micro-batch's fused scores (one partition, for the one controller),
    #: and the threshold it publishes (compacted, one partition, read by every worker).
    budget: Any = None
    thresholds: Any = None

    def outputs(self) -> list[Any]:
        return [self.scores, self.alerts, self.transactions_dlq, self.feedback_dlq, self.labelled, self.models,
                self.ops, *self.entities, *([self.enriched] if self.enriched is not None else []),
                *([self.rules] if self.rules is not None else []),
                *[topic for topic in (self.budget, self.thresholds) if topic is not None]]


class ModelFollower(Protocol):
    """What the agents need of the worker's model-topic follower (:class:`stream.runtime.modelsync.ModelSync`)."""

    ready: asyncio.Event
    latest_blob: bytes | None

    async def wait_ready(self) -> None: ...

    async def run(self) -> None: ...


@dataclass
class Engine:
    """One configured engine: the Faust app and what its agents share."""

    settings: Settings
    app: faust.App
    topics: Topics
    history: Any
    features: Any
    pending: Any
    fusion: Fusion
    limits: Limits
    retention: RetentionIndex
    stats: Stats = field(default_factory=Stats)
    model_sync: ModelFollower = field(init=False)  # set by stream.runtime.worker.create_engine
    telemetry: Telemetry = field(init=False)
    #: One changelog-backed profile table per entity kind, co-partitioned with its topic.
    profiles: list[Any] = field(default_factory=list)
    #: With entities: transaction id -> its card, time and entities, to send its label to them (the route agent's).
    routes: Any = None
    trainer: Any = None
    feedback: Any = None  # the learn agent's FeedbackLearner (the score agent completes its pending joins)
    sequence_watcher: CheckpointWatcher | None = None
    #: The dynamic rules in force (replaced whole by :class:`stream.runtime.rulesync.RuleSync`), and their follower.
    rules: RuleSet = field(default_factory=RuleSet)
    rule_sync: Any = None
    #: The model threshold in force: the fixed one, or the alert budget's as last published (replaced whole by
    #: :class:`stream.runtime.thresholdsync.ThresholdSync`); its follower, and the budget agent (None without a budget).
    alert_threshold: float = field(init=False)
    threshold_sync: Any = None
    budget: Any = None

    def __post_init__(self) -> None:
        self.telemetry = Telemetry(self.stats, self.settings.topic_transactions)
        self.alert_threshold = self.settings.alert_threshold
        self.telemetry.alert_threshold.set(self.alert_threshold)

    def maybe_switch_sequence_model(self) -> None:
        """Between batches: adopt a newer checkpoint, if one was written (no restart)."""
        if self.sequence_watcher is None:
            return
        scorer = self.sequence_watcher.maybe_reload()
        if scorer is not None:
            self.fusion.sequence = scorer

    def ready(self) -> tuple[bool, dict[str, bool]]:
        """Ready to score: tables recovered and the shared model read."""
        checks = {
            "tables_recovered": self.app.tables.recovery.completed.is_set(),  # type: ignore[attr-defined]
            "model_loaded": self.model_sync.ready.is_set(),
            "rules_loaded": self.rule_sync is None or self.rule_sync.ready.is_set(),
            "agents_running": all(not agent.should_stop for agent in self.app.agents.values()),
        }
        if self.threshold_sync is not None:  # with an alert budget only
            checks["threshold_loaded"] = self.threshold_sync.ready.is_set()
        return all(checks.values()), checks

    def table_keys(self) -> dict[str, int]:
        """Keys this worker holds per table (memory store only: RocksDB cannot count without a scan).

        What the worker's memory is made of, besides the models: the history
        table is bounded by the cards of its partitions, the features table by
        ``feature_retention_s`` of event time, the pending table by the labels
        waiting for their transaction.
        """
        if not self.settings.store.startswith("memory://"):
            return {}
        return {"history": len(self.history.data), "features": len(self.features.data),
                "pending": len(self.pending.data)}

    def update_gauges(self) -> None:
        """Consumer lag per assigned partition, keys per table, model versions, the learner's rolling AUC."""
        monitor = self.app.monitor
        ends = getattr(monitor, "tp_end_offsets", None) or {}
        reads = getattr(monitor, "tp_read_offsets", None) or {}
        for tp, end in ends.items():
            read = reads.get(tp, -1)
            self.telemetry.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(end - read - 1, 0))
        for table, keys in self.table_keys().items():
            self.telemetry.table_keys.labels(table).set(keys)
        self.telemetry.set_versions(self.fusion.versions())
        if self.trainer is not None and self.trainer.learner is not None:
            auc = self.trainer.guard.rolling_auc
            self.telemetry.rolling_auc.set(auc if auc is not None else float("nan"))

    async def producer(self) -> Any:
        """The producer to send outputs with.

        Under ``exactly_once`` Faust's transaction manager (sends join the
        transaction of the source partition); otherwise the app's producer.
        """
        return await self.app.maybe_start_producer()

    async def outbox(self) -> Outbox:
        """An :class:`Outbox` for an agent's micro-batches.

        Record batches straight through aiokafka under at-least-once; under
        ``exactly_once`` every record goes through Faust's transaction manager.
        """
        return await open_outbox(self.app, self.settings)

    async def send_ops(self, source: str, record: dict[str, Any]) -> None:
        """One operational record on the ops topic, stamped with the time and app id.

        Sent with the plain producer: an ops record reports on the worker, it is
        not part of any input transaction's output.
        """
        record = {**record, "at": int(time.time() * 1000), "app_id": self.settings.app_id}
        producer = self.app.producer
        await producer.maybe_start()
        await producer.send(self.settings.topic_ops, source.encode(), json.dumps(record).encode(),
                            partition=None, timestamp=None, headers=None)

    async def declare_outputs(self) -> None:
        """Create the output topics once (Faust only creates source topics)."""
        for topic in self.topics.outputs():
            await topic.maybe_declare()


def build_fusion(settings: Settings) -> Fusion:
    """Models from settings: the online learner (and later the sequence model)."""
    inputs = online_inputs(settings.entity_fields)
    if settings.online_model_path and os.path.exists(settings.online_model_path):
        # A learner saved without this deployment's entity kinds learns their weights from the next labels.
        online = OnlineLearner.load(settings.online_model_path).reading(inputs)
        log.info("online learner loaded from %s (%s)", settings.online_model_path, online.version)
    else:
        online = OnlineLearner(
            feature_names=inputs,
            learning_rate=settings.online_learning_rate,
            prior=settings.online_prior,
            fraud_weight=settings.fraud_label_weight,
        )
    sequence = None
    if settings.sequence_model_path:
        if os.path.exists(os.path.join(settings.sequence_model_path, "config.json")):
            sequence = load_checkpoint(settings.sequence_model_path, threads=settings.torch_threads,
                                       precision=settings.sequence_precision)
            if sequence.spec.n > settings.history_length:
                # A window longer than the kept history would differ from training, and a
                # redelivered transaction would not get the window it had the first time.
                raise SettingsError(
                    f"sequence model window {sequence.spec.n} exceeds FRAUDSTREAM_HISTORY_LENGTH="
                    f"{settings.history_length}; raise the history length or train with a shorter window")
            log.info("sequence model %s loaded from %s", sequence.version, settings.sequence_model_path)
        else:
            log.warning("no sequence checkpoint at %s yet; scoring with the online learner until one appears",
                        settings.sequence_model_path)
    return Fusion(online, sequence=sequence, min_labels_for_online=settings.min_labels_for_online)


def _faust_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.app_id,
        broker=settings.kafka_broker_url,
        store=settings.store,
        datadir=settings.data_dir,
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_max_poll_interval=settings.broker_max_poll_interval_s,
        # Faust asks for everything buffered (up to 4 MiB per partition, ~80,000
        # records here) and cannot fetch again until the agent has taken all of it:
        # past broker_max_poll_interval Kafka evicts the worker (stream/patches/aiokafka_poll_timeout_rejoin.py).
        broker_max_poll_records=settings.broker_max_poll_records,
        producer_linger=settings.producer_linger_s,
        # Faust's 16 KiB default splits a micro-batch's records for one partition into
        # dozens of batches; the sender ships one batch per partition per request, and a
        # send to a full batch waits for the sender (see the setting's doc).
        producer_max_batch_size=settings.producer_batch_bytes,
        # Messages must leave as soon as they are produced, not when the source
        # offset is committed (Faust's "attachments"): alerts are latency-bound.
        stream_publish_on_commit=False,
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        broker_credentials=faust_credentials(settings),
        # Inputs are raw bytes: validation (and the DLQ) is ours, not a codec's.
        value_serializer="raw",
        key_serializer="raw",
    )


def worker_app(settings: Settings) -> faust.App:
    """The Faust app a worker runs, with the consumer and producer fixes the engine needs; no agents yet.

    The engine's (:func:`stream.runtime.worker.create_engine`), and the benchmark's plumbing floor
    (:mod:`stream.tools.bench.plumbing`), which must consume and produce exactly as
    the engine does.
    """
    app = _faust_app(settings)  # builds no consumer or producer yet: the patches below still apply to them
    # Refuses untested Faust/aiokafka versions first, then patches them (stream/patches/, one module per bug).
    patches.apply(settings, app, client_kwargs(settings))
    return app


def worker_topic(app: faust.App, settings: Settings, name: str, partitions: int | None = None,
                 compacting: bool | None = None) -> Any:
    """A topic of ``app`` with raw bytes keys and values, as every engine topic is (validation is ours, not a codec's)."""
    return app.topic(
        name,
        schema=RawBytes(),  # bytes in, as with key_type=bytes and the raw serializer, without the lookups
        partitions=partitions or settings.topic_partitions,
        replicas=settings.replication_factor,
        compacting=compacting,
    )


async def open_outbox(app: faust.App, settings: Settings) -> Outbox:
    """An :class:`Outbox` on ``app``'s producer: straight through aiokafka, or Faust's under ``exactly_once``."""
    producer = await app.maybe_start_producer()
    if settings.processing_guarantee == "exactly_once":
        return Outbox(producer, bulk=False)
    return Outbox(producer._ensure_producer(), bulk=True)


