"""A worker's engine: the Faust app, its topics and tables, models and agents wired together.

:func:`create_engine` builds everything from one :class:`Settings`, so tests
and the CLI can run several differently configured engines; there is no
module-level app. ``fraudstream worker`` runs it.

Example:
    >>> engine = create_engine(Settings(app_id="doc", model_signing_key="0123456789abcdef"))
    >>> sorted(name.rsplit(".", 1)[1] for name in engine.app.agents)  # terminals profiled by default
    ['entity_merchant_id', 'learn', 'route', 'score', 'train']
    >>> sorted(name.rsplit(".", 1)[1] for name in create_engine(Settings(
    ...     app_id="doc2", model_signing_key="0123456789abcdef", entities="")).app.agents)
    ['learn', 'score', 'train']
    >>> sorted(name.rsplit(".", 1)[1] for name in create_engine(Settings(  # one alert-budget controller
    ...     app_id="doc3", model_signing_key="0123456789abcdef", entities="", alert_budget="0.5%")).app.agents)
    ['budget', 'learn', 'score', 'train']
    >>> create_engine(Settings(app_id="doc"))
    Traceback (most recent call last):
    ...
    stream.contracts.settings.SettingsError: FRAUDSTREAM_MODEL_SIGNING_KEY must be set to a secret of at least 16 bytes (e.g. `openssl rand -hex 32`); workers refuse unsigned model snapshots
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust

from models.allocator import keep_freed_memory
from models.checkpoint import CheckpointWatcher
from models.features import compile_engineered
from models.fusion import Fusion
from models.sequence import SequenceScorer
from stream.contracts.records import Limits
from stream.contracts.settings import Settings
from stream.core.retention import RetentionIndex
from stream.kafka.partitioner import compile_partitioner
from stream.kafka.raw import RawBytes
from stream.kafka.state import define_profile_tables, define_route_table, define_tables
from stream.runtime import web
from stream.runtime.agents import budget, entities, learn, score, train
from stream.runtime.engine import Engine, Topics, build_fusion, worker_app, worker_topic
from stream.runtime.heap import collect_less_often
from stream.runtime.logs import service_worker
from stream.runtime.modelsync import ModelSync
from stream.runtime.rulesync import RuleSync
from stream.runtime.thresholdsync import ThresholdSync

__all__ = ["create_engine", "run_worker"]

log = logging.getLogger("fraudstream")


def create_engine(settings: Settings, fusion: Fusion | None = None) -> Engine:
    """Build the app, its topics and tables, and register the agents."""
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
        entities=[raw_topic(settings.entity_topic(f)) for f in settings.entity_fields],
        enriched=raw_topic(settings.enriched_topic) if settings.entity_fields else None,
        # The route agent's input: transactions and their labels, merged in event time (agents/entities.py).
        arrivals=(app.topic(settings.topic_transactions, settings.topic_feedback, schema=RawBytes(),
                            partitions=settings.topic_partitions, replicas=settings.replication_factor)
                  if settings.entity_fields else None),
        rules=raw_topic(settings.topic_rules, partitions=1, compacting=True),
    )
    alert_budget = settings.budget()
    if alert_budget is not None:
        topics.budget = raw_topic(settings.budget_topic, partitions=1)
        topics.thresholds = raw_topic(settings.threshold_topic, partitions=1, compacting=True)
    history, features, pending = define_tables(app, settings)
    profiles = define_profile_tables(app, settings)
    routes = define_route_table(app, settings)
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
    engine.model_sync = ModelSync(engine)
    engine.rule_sync = RuleSync(engine)
    if alert_budget is not None:
        engine.threshold_sync = ThresholdSync(engine)
    if settings.sequence_model_path:
        engine.sequence_watcher = CheckpointWatcher(
            settings.sequence_model_path, poll_s=settings.sequence_reload_interval_s, threads=settings.torch_threads,
            current_version=(fusion.sequence.checkpoint_version if isinstance(fusion.sequence, SequenceScorer)
                             else None),
            precision=settings.sequence_precision)
    engine.profiles = profiles
    engine.routes = routes
    entities.register(engine)
    score.register(engine)
    engine.feedback = learn.register(engine)
    engine.trainer = train.register(engine)
    if alert_budget is not None:
        engine.budget = budget.register(engine, alert_budget)
        app.task(engine.threshold_sync.run)
    web.register(engine)
    app.task(engine.model_sync.run)
    app.task(engine.rule_sync.run)

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


def run_worker(settings: Settings, build: Callable[[Settings], faust.App]) -> None:
    """Run ``build(settings)``'s app as a worker process until it is stopped (then ``sys.exit``).

    Every worker process gets the same allocator and garbage-collector
    settings: the engine's, and the benchmark's plumbing floor, which must
    run as the engine does.
    """
    if settings.malloc_keep_freed:
        keep_freed_memory()
    app = build(settings)
    collect_less_often(settings.gc_threshold)  # after start-up, so its objects are frozen
    service_worker(app, settings.log_level, settings.log_format).execute_from_commandline()
