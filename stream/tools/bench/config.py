"""What a ``fraudstream bench`` run measures, and the data, topics and settings every phase shares.

Every phase reads generated transactions with realistic per-card histories
(:mod:`replay.generate`), so their rates compare. Every topic a phase creates
is named ``bench-<run id>-<phase>-...`` (:func:`phase_config`): on a broker
that outlives the run, no phase reads another's records, and nothing lands on
the engine's own topics.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["BenchConfig", "phase_config", "preload", "records", "topic", "topic_settings", "worker_settings"]

_FIELDS = ("transaction_id", "card_id", "timestamp", "amount", "currency", "merchant_id", "mcc", "country", "channel")


@dataclass
class BenchConfig:
    events: int = 200_000
    cards: int = 4_000  # 50 transactions a card: most are scored with a full window, as in production
    partitions: int = 4
    workers: tuple[int, ...] = (1, 2)
    latency_workers: int = 1  # how many workers the engine's latency phase runs
    latency_rate: float = 2000.0
    latency_seconds: float = 30.0
    soak_seconds: float = 0.0  # after the last repetition's latency phase: a soak at soak_rate, for the memory figure
    soak_rate: float = 0.0  # 0: the latency rate
    batch_size: int = 512
    checkpoint: str = "auto"  # "auto": train a small sequence model first; "": online learner only
    sequence_precision: str = "float32"  # the workers' FRAUDSTREAM_SEQUENCE_PRECISION
    entities: str | None = None  # the workers' FRAUDSTREAM_ENTITIES; None: the setting's default
    rules: int = 0  # dynamic rules the engine's workers evaluate on every transaction (bench_rules)
    repeat: int = 1  # every phase this many times, interleaved; figures summarised as median and spread
    out: str = "bench-results.json"
    # An existing broker (Apache Kafka, say) instead of the embedded one; "" starts an embedded broker per phase.
    bootstrap_servers: str = ""
    is_smoke: bool = False  # built by smoke(): its command line says --smoke
    # Every topic the run creates is named bench-<run_id>-...: on a broker that outlives the run, a second run
    # reads none of the first's records, and nothing lands on the engine's own topics (scores, alerts, ...).
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    notes: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration no run could use."""
        if self.latency_workers < 1:
            raise ValueError(f"latency_workers={self.latency_workers} must be at least 1")
        if self.repeat < 1:
            raise ValueError(f"repeat={self.repeat} must be at least 1")
        if self.rules < 0:
            raise ValueError(f"rules={self.rules} must be at least 0")

    @classmethod
    def smoke(cls, out: str) -> BenchConfig:
        """A few seconds a repetition, to prove the benchmark works (CI)."""
        return cls(events=3000, cards=300, partitions=2, workers=(1,), latency_rate=300.0, latency_seconds=3.0,
                   soak_seconds=3.0, soak_rate=200.0, out=out, is_smoke=True)

    def command_line(self) -> str:
        """The ``fraudstream bench`` command that runs this configuration (every option that is not the default).

        >>> BenchConfig(events=100_000, cards=2_000, workers=(1,), repeat=5).command_line()
        'fraudstream bench --events 100000 --cards 2000 --workers 1 --repeat 5'
        >>> BenchConfig.smoke("x.json").command_line()
        'fraudstream bench --smoke'
        """
        if self.is_smoke:
            words = ["--smoke"]
            options = {"repeat": "--repeat", "bootstrap_servers": "--bootstrap-servers", "rules": "--rules"}
        else:
            words = []
            options = {"events": "--events", "cards": "--cards", "partitions": "--partitions", "workers": "--workers",
                       "latency_workers": "--latency-workers", "batch_size": "--batch-size",
                       "latency_rate": "--latency-rate", "latency_seconds": "--latency-seconds",
                       "soak_seconds": "--soak-seconds", "soak_rate": "--soak-rate", "repeat": "--repeat",
                       "bootstrap_servers": "--bootstrap-servers", "rules": "--rules"}
        options |= {"checkpoint": "--checkpoint", "sequence_precision": "--sequence-precision", "entities": "--entities"}
        defaults = {f.name: f.default for f in fields(BenchConfig) if f.name in options}
        for name, option in options.items():
            value = getattr(self, name)
            if value != defaults[name]:
                words += [option, _word(value)]
        return " ".join(["fraudstream bench", *words])


def _word(value: object) -> str:
    """A value as the command line spells it.

    >>> _word((1, 2)), _word(2000.0), _word(2.5), _word("")
    ('1,2', '2000', '2.5', "''")
    """
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if value != "" else "''"


def phase_config(cfg: BenchConfig, repetition: int, phase: str) -> BenchConfig:
    """``cfg`` with the topics of one phase of one repetition: fresh ones, whatever the broker holds.

    >>> topic(phase_config(BenchConfig(run_id="abc123"), 2, "floor"), "tx")
    'bench-abc123-2floor-tx'
    """
    return replace(cfg, run_id=f"{cfg.run_id}-{repetition}{phase}")


_DAYS = 30  # of event time in every generated load


def topic(cfg: BenchConfig, name: str) -> str:
    """The run's own topic for ``name``.

    >>> topic(BenchConfig(run_id="abc123"), "tx")
    'bench-abc123-tx'
    """
    return f"bench-{cfg.run_id}-{name}"


def topic_settings(bootstrap: str, cfg: BenchConfig, group: str) -> Any:
    """Settings naming every topic (and the app id, which names the models topics) under the run's prefix."""
    from stream.contracts.settings import Settings

    def own(name: str) -> str:
        return topic(cfg, f"{group}-{name}")

    return Settings(app_id=own("app"), bootstrap_servers=bootstrap, topic_partitions=cfg.partitions,
                    topic_transactions=own("tx"), topic_feedback=own("fb"), topic_scores=own("out"),
                    topic_alerts=own("alerts"), topic_transactions_dlq=own("txdlq"), topic_feedback_dlq=own("fbdlq"),
                    topic_ops=own("ops"), topic_rules=own("rules"))


def _table(events: int, cards: int, seed: int, phase: int = 0) -> Any:
    """``events`` transactions over 30 days; ``phase`` k starts 30 k days after the preload's first day.

    The offered loads continue the preload's event time (and each other's), as
    a live stream does: the features table's event-time retention then
    expires entries as it would in production rather than all at once.
    """
    from replay.generate import GeneratorConfig, generate

    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=_DAYS * phase)
    return generate(GeneratorConfig(seed=seed, n_transactions=events, n_cards=cards, start=start.isoformat(),
                                    n_merchants=max(cards // 4, 100), days=_DAYS))


def train_checkpoint(cfg: BenchConfig, workdir: Path) -> str:
    """A small sequence model (one short epoch) on data like the benchmark's: scoring cost, not quality."""
    from models.train import TrainConfig, train

    table = _table(min(cfg.events, 100_000), cfg.cards, seed=4)
    result = train(TrainConfig(table=table, out=workdir / "model", epochs=1, legit_per_epoch=10_000,
                               val_legit=5_000, threads=2, progress=False))
    print(f"trained a sequence model for the engine run: {result.version} ({result.seconds:.0f} s)", flush=True)
    return str(workdir / "model")


def records(events: int, cards: int, prefix: str = "", seed: int = 5, phase: int = 0) -> list[tuple[bytes, bytes]]:
    """``events`` generated transactions as (key, JSON value) pairs, their ids prefixed with ``prefix``."""
    table = _table(events, cards, seed, phase)
    cols = {name: table[name].to_pylist() for name in _FIELDS}
    out = []
    for i in range(table.num_rows):
        rec = {name: cols[name][i] for name in _FIELDS}
        rec["transaction_id"] = prefix + rec["transaction_id"]
        out.append((rec["card_id"].encode(), json.dumps(rec).encode()))
    return out


def preload(bootstrap: str, cfg: BenchConfig, name: str, data: list[tuple[bytes, bytes]]) -> float:
    """Create the topic ``name`` of the run and write ``data`` to it as fast as aiokafka goes; returns events/s.

    Large batches (linger 20 ms, 512 kB): the preload puts few batches into
    each partition, so the embedded broker's fetches stay cheap.
    """
    from aiokafka import AIOKafkaProducer

    from stream.kafka.topics import ensure_topics

    target = topic(cfg, name)
    ensure_topics(topic_settings(bootstrap, cfg, "load").replace(topic_transactions=target))

    async def go() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
        await producer.start()
        started = time.perf_counter()
        try:
            for key, value in data:
                await producer.send(target, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        return len(data) / (time.perf_counter() - started)

    return asyncio.run(go())


def worker_settings(bootstrap: str, cfg: BenchConfig, tag: str) -> Any:
    """The settings of the bench's workers (and of the plumbing floor, which must run as they do)."""
    from stream.contracts.settings import Settings

    settings = Settings(
        app_id=topic(cfg, tag), bootstrap_servers=bootstrap, topic_partitions=cfg.partitions,
        topic_transactions=topic(cfg, "tx"), topic_feedback=topic(cfg, f"fb-{tag}"),
        topic_scores=topic(cfg, f"scores-{tag}"), topic_alerts=topic(cfg, f"alerts-{tag}"),
        topic_transactions_dlq=topic(cfg, f"txdlq-{tag}"), topic_feedback_dlq=topic(cfg, f"fbdlq-{tag}"),
        topic_ops=topic(cfg, f"ops-{tag}"), topic_rules=topic(cfg, f"rules-{tag}"),
        broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0, broker_rebalance_timeout_s=6.0,
        broker_max_poll_interval_s=30.0, embedded_broker_compat=not cfg.bootstrap_servers, fetch_max_wait_ms=10,
        model_signing_key=secrets.token_hex(16), batch_size=cfg.batch_size, web_enabled=True,
        sequence_model_path=cfg.checkpoint, sequence_precision=cfg.sequence_precision,
        log_level=os.environ.get("FRAUDSTREAM_BENCH_LOG_LEVEL", "warn"),
        # One day of scoring-time inputs (the default keeps 30): the generated data spans
        # 30 days of event time, so a soak reaches the retention's steady state and the
        # memory figure tells a leak from the retention filling up.
        feature_retention_s=86_400.0,
    )
    return settings if cfg.entities is None else settings.replace(entities=cfg.entities)


#: What a fraud team's rule book looks like: thresholds on amounts and velocities, lists of countries and merchant
#: categories, new-merchant and e-commerce combinations, the models' scores. Each rule gets its own constants.
_RULE_TEMPLATES = (
    "amount > {a}.0 && country != 'FR'",
    "n_1h >= {k}.0 && is_ecom == 1.0",
    "mcc.startsWith('{m}') && amount > {a}.0",
    "country in ['BR', 'NG', 'RU', 'X{i}'] && log_gap_prev < {k}.0",
    "is_new_merchant == 1.0 && amount_ratio_max > {k}.0",
    "score > 0.{s} && channel == 'ecom'",
    "n_small_1h >= {k}.0 || (is_new_country == 1.0 && amount > {a}.0)",
    "merchant_id.startsWith('m{i}') && amount_z > {k}.0",
)


def bench_rules(n: int) -> list[Any]:
    """``n`` rules for the bench, every one compiled as ``fraudstream rules add`` would; half in shadow mode.

    >>> rules = bench_rules(100)
    >>> len(rules), len({r.id for r in rules}), sum(r.mode == "shadow" for r in rules)
    (100, 100, 50)
    """
    from stream.core.rules import Rule, compile_rule

    out = []
    for i in range(n):
        expression = _RULE_TEMPLATES[i % len(_RULE_TEMPLATES)].format(
            a=300 + 17 * i, k=2 + i % 6, m=5700 + i % 90, i=i, s=90 + i % 9)
        action = ("alert", "tag")[i % 2]
        rule = Rule(f"bench-{i:03d}", expression, action, reason=f"bench rule {i}" if action == "alert" else "",
                    tag=f"bench-{i}" if action == "tag" else "", mode=("active", "shadow")[(i // 2) % 2])
        compile_rule(rule)
        out.append(rule)
    return out
