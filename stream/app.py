"""The Faust application: topics, tables, models and agents wired together.

:func:`create_engine` builds everything from one :class:`Settings`, so tests
and the CLI can run several differently configured engines; there is no
module-level app. ``fraudstream worker`` runs it.

Example:
    >>> engine = create_engine(Settings(app_id="doc", model_signing_key="0123456789abcdef"))
    >>> sorted(engine.app.agents)
    ['stream.agents.learn.learn', 'stream.agents.score.score', 'stream.agents.train.train']
    >>> create_engine(Settings(app_id="doc"))
    Traceback (most recent call last):
    ...
    stream.settings.SettingsError: FRAUDSTREAM_MODEL_SIGNING_KEY must be set to a secret of at least 16 bytes (e.g. `openssl rand -hex 32`); workers refuse unsigned model snapshots
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import faust

from models.checkpoint import CheckpointWatcher, load_checkpoint
from models.features import compile_engineered
from models.fusion import Fusion
from models.online import OnlineLearner
from models.sequence import SequenceScorer
from stream import patches
from stream.drain import RawBytes
from stream.modelsync import ModelSync
from stream.outbox import Outbox
from stream.partitioner import compile_partitioner
from stream.records import Limits
from stream.retention import RetentionIndex
from stream.security import faust_credentials
from stream.settings import Settings, SettingsError
from stream.state import define_tables
from stream.stats import Stats
from stream.telemetry import Telemetry

__all__ = ["Engine", "Topics", "build_fusion", "create_engine", "open_outbox", "worker_app", "worker_topic"]

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

    def outputs(self) -> list[Any]:
        return [self.scores, self.alerts, self.transactions_dlq, self.feedback_dlq, self.labelled, self.models,
                self.ops]


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
    model_sync: ModelSync = field(init=False)
    telemetry: Telemetry = field(init=False)
    trainer: Any = None
    feedback: Any = None  # the learn agent's FeedbackLearner (the score agent completes its pending joins)
    sequence_watcher: CheckpointWatcher | None = None

    def __post_init__(self) -> None:
        self.model_sync = ModelSync(self)
        self.telemetry = Telemetry(self.stats, self.settings.topic_transactions)

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
            "agents_running": all(not agent.should_stop for agent in self.app.agents.values()),
        }
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
    if settings.online_model_path and os.path.exists(settings.online_model_path):
        online = OnlineLearner.load(settings.online_model_path)
        log.info("online learner loaded from %s (%s)", settings.online_model_path, online.version)
    else:
        online = OnlineLearner(
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
        # past broker_max_poll_interval Kafka evicts the worker (stream/compat.py).
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

    The engine's (:func:`create_engine`), and the benchmark's plumbing floor
    (:mod:`stream.bench.plumbing`), which must consume and produce exactly as
    the engine does.
    """
    app = _faust_app(settings)  # builds no consumer or producer yet: the patches below still apply to them
    # Refuses untested Faust/aiokafka versions first, then patches them (stream/patches/, one module per bug).
    patches.apply(settings, app)
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


def create_engine(settings: Settings, fusion: Fusion | None = None) -> Engine:
    """Build the app, its topics and tables, and register the agents."""
    # Imported here: the agent modules import this one for the Engine type.
    from stream import web
    from stream.agents import learn, score, train

    app = worker_app(settings)
    settings.signing_key()  # fail fast: without it no snapshot can be published or trusted

    def raw_topic(name: str, partitions: int | None = None, compacting: bool | None = None) -> Any:
        return worker_topic(app, settings, name, partitions, compacting)

    topics = Topics(
        transactions=raw_topic(settings.topic_transactions),
        feedback=raw_topic(settings.topic_feedback),
        scores=raw_topic(settings.topic_scores),
        alerts=raw_topic(settings.topic_alerts),
        transactions_dlq=raw_topic(settings.topic_transactions_dlq),
        feedback_dlq=raw_topic(settings.topic_feedback_dlq),
        labelled=raw_topic(settings.labelled_topic, partitions=1),
        models=raw_topic(settings.models_topic, partitions=1, compacting=True),
        ops=raw_topic(settings.topic_ops, partitions=1),
    )
    history, features, pending = define_tables(app, settings)
    fusion = fusion or build_fusion(settings)  # a sequence model compiles its step features' loop as it loads
    compile_engineered()  # here, not in the first micro-batch (models/compiled.py)
    compile_partitioner()  # the outbox's keyed outputs
    engine = Engine(
        settings=settings,
        app=app,
        topics=topics,
        history=history,
        features=features,
        pending=pending,
        fusion=fusion,
        limits=Limits.from_settings(settings),
        retention=RetentionIndex(int(settings.feature_retention_s * 1000)),
    )
    if settings.sequence_model_path:
        engine.sequence_watcher = CheckpointWatcher(
            settings.sequence_model_path, poll_s=settings.sequence_reload_interval_s, threads=settings.torch_threads,
            current_version=(fusion.sequence.checkpoint_version if isinstance(fusion.sequence, SequenceScorer)
                             else None),
            precision=settings.sequence_precision)
    score.register(engine)
    engine.feedback = learn.register(engine)
    engine.trainer = train.register(engine)
    web.register(engine)
    app.task(engine.model_sync.run)

    if settings.online_model_path:

        @app.on_before_shutdown.connect  # type: ignore[arg-type]  # Faust awaits async receivers
        async def save_online_model(sender: Any, **kwargs: Any) -> None:
            engine.fusion.online.save(settings.online_model_path)
            log.info("online learner saved to %s (%s)", settings.online_model_path, engine.fusion.online.version)

    if engine.sequence_watcher is not None:

        @app.timer(interval=settings.sequence_reload_interval_s)
        async def sequence_model_reload() -> None:
            engine.maybe_switch_sequence_model()  # also between batches; this covers an idle stream

    @app.timer(interval=5.0)
    async def gauges() -> None:
        engine.update_gauges()

    @app.timer(interval=10.0)
    async def report_progress() -> None:
        log.info("fraudstream stats %s models %s", engine.stats.snapshot(), engine.fusion.versions())

    return engine
