"""One settings object for the whole engine, read from the environment.

Every field has an environment variable, ``FRAUDSTREAM_`` + the field name in
upper case, and a documented default. Nothing else in the code reads
``os.environ`` for configuration, so this module is the one place to look.

Example:
    >>> s = Settings.from_env({"FRAUDSTREAM_ALERT_THRESHOLD": "0.8",
    ...                        "FRAUDSTREAM_TOPIC_PARTITIONS": "4"})
    >>> s.alert_threshold, s.topic_partitions, s.topic_transactions
    (0.8, 4, 'transactions')
    >>> Settings.from_env({"FRAUDSTREAM_BATCH_SIZE": "many"})
    Traceback (most recent call last):
    ...
    stream.contracts.settings.SettingsError: FRAUDSTREAM_BATCH_SIZE='many' is not a valid int
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream.contracts.budget import Budget, BudgetError

__all__ = ["ENTITY_FIELDS", "ENV_PREFIX", "MAX_HISTORY_ENTRIES", "Settings", "SettingsError", "describe"]

ENV_PREFIX = "FRAUDSTREAM_"
#: Transaction fields that can name an entity with a profile (``FRAUDSTREAM_ENTITIES``). ``card_id`` gives the
#: card its label-aware features (fraud confirmed on it, known from each label's ``labelled_at``).
ENTITY_FIELDS = ("merchant_id", "device_id", "ip", "account_id", "card_id")
#: Most entries a card's history record holds: its count is 16 bits (:mod:`models.history`).
MAX_HISTORY_ENTRIES = 0xFFFF


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _f(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """Engine configuration. Build it with :meth:`from_env`."""

    # --- Kafka -------------------------------------------------------------
    app_id: str = _f("fraudstream", "Faust app id = Kafka consumer group; workers with the same id share partitions.")
    bootstrap_servers: str = _f("127.0.0.1:9092", "Kafka bootstrap servers, comma separated host:port.")
    topic_partitions: int = _f(8, "Partitions for topics the engine creates; all topics and table changelogs must match (co-partitioning by card).")
    replication_factor: int = _f(1, "Replication factor for topics the engine creates (3 in production).")
    topic_transactions: str = _f("transactions", "Input topic of transactions, keyed by card_id.")
    topic_scores: str = _f("scores", "Output topic: one score record per transaction.")
    topic_alerts: str = _f("alerts", "Output topic: transactions scored at or above the threshold.")
    topic_feedback: str = _f("feedback", "Input topic of labels, keyed by card_id.")
    topic_transactions_dlq: str = _f("transactions.dlq", "Dead letters from the transactions topic.")
    topic_feedback_dlq: str = _f("feedback.dlq", "Dead letters from the feedback topic.")
    topic_ops: str = _f("fraudstream.ops", "Operational alerts (model rollbacks, refused snapshots, capped label sources).")
    topic_rules: str = _f("rules", "Compacted one-partition topic of dynamic rules (key = rule id, a tombstone deletes; docs/rules.md), read whole by every worker and by `fraudstream rules`.")
    topic_models: str = _f("", "Compacted topic of signed online-model snapshots; empty = '<app_id>-models'.")
    topic_labelled: str = _f("", "Internal one-partition topic feeding the single online learner; empty = '<app_id>-labelled'.")
    entities: str = _f("merchant_id", "Transaction fields that name an entity with a profile (merchant_id, device_id, ip, account_id, card_id), comma-separated; each gets a repartition topic '<app_id>-entity-<field>' keyed by its value, and scoring reads '<app_id>-enriched'. Empty = per-card state only (no entity topics, one hop less).")
    processing_guarantee: str = _f("at_least_once", "Faust processing guarantee: at_least_once or exactly_once (needs Kafka transactions; not on the embedded broker).")
    auto_offset_reset: str = _f("earliest", "Where a new consumer group starts reading: earliest or latest.")
    # Faust's defaults made a worker take ~30 s to join its group on the embedded
    # broker; these values make it ~4 s while staying safe on real Kafka.
    broker_session_timeout_s: float = _f(10.0, "Consumer group session timeout; a dead worker's partitions move after this.")
    broker_heartbeat_interval_s: float = _f(3.0, "Consumer heartbeat interval (below a third of the session timeout).")
    broker_rebalance_timeout_s: float = _f(30.0, "Time a rebalance waits for members to rejoin.")
    broker_max_poll_interval_s: float = _f(300.0, "Longest gap between polls before Kafka evicts the worker.")
    broker_max_poll_records: int = _f(1000, "Most records one fetch hands the worker; it fetches again only once the agent has taken them, so this bounds the gap between polls.")
    direct_delivery: bool = _f(True, "Hand fetched records to the agents without Faust's two tasks per record when that cannot block (stream/patches/faust_drain.py); False = Faust's own fetch loop.")
    fetch_max_wait_ms: int = _f(0, "Longest a consumer fetch may wait for data; 0 keeps Faust's 1500. The embedded broker always waits this long, so the demo and bench use 10 for latency.")
    producer_linger_s: float = _f(0.005, "Producer linger: how long a batch waits to fill (latency vs. throughput). Under at-least-once the score agent's micro-batch outputs do not wait: they ship once the batch is scored (stream/kafka/outbox.py).")
    producer_batch_bytes: int = _f(1_000_000, "Largest batch the producer builds per partition. A micro-batch's history changelog (~1.4 kB a card) outgrows smaller batches, and a full batch makes the next send wait for the sender; keep it at or below the broker's message.max.bytes (Kafka's default 1048588) and the topics' max.message.bytes, or the broker rejects the batch.")
    embedded_broker_compat: bool = _f(False, "Work around the embedded broker: end-offset answers, fetches it gives up on, generation 0 (stream/patches/embedded_*.py); set by the demo and tests, never needed on Apache Kafka.")
    allow_untested_dependencies: bool = _f(False, "Start a worker even when the installed faust-streaming or aiokafka is not the version the patches in stream/patches/ were written for (logged as a warning instead of refusing to start). Only for operators who checked those patches against the installed release.")
    security_protocol: str = _f("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, for every client (worker, replay, tools).")
    ssl_cafile: str = _f("", "CA bundle that signed the brokers' certificates (empty: the system's).")
    ssl_certfile: str = _f("", "Client certificate for mutual TLS (optional).")
    ssl_keyfile: str = _f("", "Client private key for mutual TLS (optional).")
    ssl_password: str = field(default="", repr=False, metadata={"doc": "Password of the client key, if any. Never logged."})
    ssl_check_hostname: bool = _f(True, "Check the broker certificate's host name.")
    sasl_mechanism: str = _f("PLAIN", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*).")
    sasl_username: str = _f("", "SASL user name.")
    sasl_password: str = field(default="", repr=False, metadata={"doc": "SASL password. Never logged."})
    # --- engine ------------------------------------------------------------
    batch_size: int = _f(256, "Most transactions per micro-batch (the unit of model inference).")
    batches_in_flight: int = _f(2, "Micro-batches the score agent may hold unacknowledged, the one it is scoring included: 1 waits for each batch's acks before taking the next, 2 scores the next while the previous one's records are on the wire. A batch is acked only once the broker has all it produced, whatever this is; exactly_once uses 1.")
    batch_timeout_s: float = _f(0.0, "Longest wait to fill a micro-batch; 0 scores what has arrived (a busy stream still fills batches while the previous one is scored).")
    alert_threshold: float = _f(0.5, "Scores at or above this raise an alert; with FRAUDSTREAM_ALERT_BUDGET, the threshold until the first published one.")
    alert_budget: str = _f("", "Alert budget: a share of transactions (0.5% or 0.005) or alerts per hour of event time (20/h); the model threshold then follows a streaming quantile of recent fused scores, computed by one worker and followed by all (docs/alert-budget.md). Rules' alerts are outside it. Empty = the fixed FRAUDSTREAM_ALERT_THRESHOLD.")
    alert_threshold_floor: float = _f(0.05, "With an alert budget: the threshold never goes below this (a quiet night does not fill the budget with noise).")
    alert_threshold_ceiling: float = _f(0.999, "With an alert budget: the threshold never goes above this (in an attack every score above it alerts, budget or not).")
    history_length: int = _f(32, "Transactions kept per card in the history table (the sequence model's window).")
    feature_retention_s: float = _f(30 * 86400.0, "How long scoring-time features are kept for the feedback join, in event time.")
    feedback_join_grace_s: float = _f(3600.0, "A label whose transaction is not scored yet waits in a changelog-backed table until the transactions of its partition are this far (event time) past the label's time; then it goes to the DLQ as unknown_transaction.")
    max_message_bytes: int = _f(65536, "Larger transaction or feedback payloads go to the DLQ as oversized.")
    min_event_time: str = _f("2000-01-01T00:00:00Z", "Events stamped before this are rejected as absurd.")
    max_future_skew_s: float = _f(86400.0, "Events stamped more than this after the wall clock are rejected as absurd.")
    # --- models ------------------------------------------------------------
    online_model_path: str = _f("", "File to load the online learner from at start and save it to at stop; empty = start fresh.")
    fraud_label_weight: float = _f(10.0, "Sample weight of a fraud label in the online learner (fraud is ~1 % of traffic).")
    online_learning_rate: float = _f(0.1, "AdaGrad learning rate of the online logistic regression.")
    online_prior: float = _f(0.01, "Fraud probability the online learner starts from before any label.")
    min_labels_for_online: int = _f(200, "Labels the online learner needs before fusion trusts it over the sequence model.")
    entity_align_ms: float = _f(50.0, "How long the route agent waits for a quiet source partition before passing later transactions to the entity hops (event-time alignment, stream/core/alignment.py); 0 = no waiting, each micro-batch merged in event time only.")
    trees_refit_s: float = _f(86_400.0, "Refit period of the fused score's gradient-boosted trees: they are refit at each whole multiple of it (86400: midnight UTC) of the labelled transactions' time, on the examples of the transactions before it; 0 = no trees (the fused score is the online learner's, or the sequence model's before enough labels).")
    trees_window_s: float = _f(30 * 86_400.0, "Event time of labelled examples the trees are fitted on (the transactions of the last ... seconds before the newest).")
    trees_max_examples: int = _f(100_000, "Most labelled examples the trainer keeps for the trees (~120 bytes each); past it the legitimate ones are thinned, each kept one weighing for those dropped, so every fraud of FRAUDSTREAM_TREES_WINDOW_S stays.")
    trees_cpu_share: float = _f(0.2, "Most of one core the trees' refits may take: after a refit of s seconds the next waits s * (1/share - 1) of wall-clock time (binds only when event time runs fast, as in a replay).")
    trees_min_frauds: int = _f(20, "Fraud labels among the kept examples before the first trees are fitted.")
    model_signing_key: str = field(default="", repr=False, metadata={"doc": "Secret (>= 16 bytes) signing online-model snapshots with HMAC-SHA256; required by the worker. Never logged."})
    snapshot_interval_s: float = _f(1.0, "Longest time the single learner waits to publish a snapshot after learning.")
    model_sync_timeout_s: float = _f(15.0, "How long a starting worker waits for the latest model snapshot before scoring.")
    quality_window: int = _f(10000, "Labels in the online learner's rolling ROC AUC (it needs 20 frauds among them to count).")
    drift_delta: float = _f(0.002, "ADWIN confidence on the learner's error stream (smaller = fewer alarms).")
    drift_max_auc_drop: float = _f(0.1, "Rolling AUC drop below the last good snapshot's that, with an ADWIN alarm, triggers a rollback.")
    drift_min_labels: int = _f(200, "Labels seen before the drift guard may raise an alarm.")
    feedback_source_cap_per_hour: int = _f(0, "Most labels one source may contribute per hour of event time; 0 = no cap (docs/scaling.md, feedback poisoning).")
    sequence_model_path: str = _f("", "Sequence model checkpoint directory (`fraudstream train --out`); empty = online learner only.")
    sequence_reload_interval_s: float = _f(5.0, "How often the worker checks the checkpoint directory for a newer model (switches without restart).")
    torch_threads: int = _f(1, "Threads PyTorch may use for inference in one worker.")
    sequence_precision: str = _f("float32", "Arithmetic of the sequence model's forward pass: float32, or bfloat16 (encoder matrix products in bfloat16: on CPUs with AMX or AVX512-BF16 a two-layer model's forward pass is about 2x faster, the one-layer default's gains nothing measurable; logits within ~0.002 of float32's; scores record the model as `<version>+bf16`; float32 with a warning where the CPU lacks native bfloat16).")
    malloc_keep_freed: bool = _f(True, "Keep freed memory in the worker (glibc mallopt) instead of faulting a micro-batch's tensors in afresh: ~20 % faster inference; RSS stays at its peak (models/allocator.py).")
    gc_threshold: int = _f(50000, "Allocations between the garbage collector's young-generation runs (Python's default is 700); start-up objects are frozen too (stream/runtime/heap.py). 0 keeps Python's threshold.")
    # --- process -----------------------------------------------------------
    data_dir: str = _f("./fraudstream-data", "Faust data directory (table stores, RocksDB files).")
    store: str = _f("memory://", "Table store: memory:// (tests, demo) or rocksdb:// (production).")
    web_enabled: bool = _f(False, "Serve Faust's web server (metrics, health).")
    web_host: str = _f("127.0.0.1", "Web server bind address.")
    web_port: int = _f(6066, "Web server port.")
    web_token: str = field(default="", repr=False, metadata={"doc": "Service token for every web view but /healthz, /ready, /metrics and /stats/ (the card histories among them): send `Authorization: Bearer <token>`, the same token on every worker (a card lookup is forwarded with its header to the worker that owns the card). Unset: those views answer 403. Never logged."})
    log_level: str = _f("info", "Faust log level: crit, error, warn, info or debug.")
    log_format: str = _f("text", "text, or json (one JSON object per line, for log shippers).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from ``environ`` (default ``os.environ``); keyword overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in env:
                values[f.name] = _parse(name, env[name], f.type)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated)."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise :class:`SettingsError` for values no engine could run with."""
        if not 0.0 <= self.alert_threshold <= 1.0:
            raise SettingsError(f"alert_threshold must be in [0, 1], got {self.alert_threshold}")
        if not 0.0 <= self.alert_threshold_floor <= self.alert_threshold_ceiling <= 1.0:
            raise SettingsError(f"alert_threshold_floor ({self.alert_threshold_floor}) and alert_threshold_ceiling "
                                f"({self.alert_threshold_ceiling}) must satisfy 0 <= floor <= ceiling <= 1")
        self.budget()  # raises for a budget that does not parse
        for name in ("topic_partitions", "replication_factor", "batch_size", "history_length",
                     "max_message_bytes", "torch_threads", "broker_max_poll_records", "batches_in_flight"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.producer_batch_bytes < 16_384:
            raise SettingsError(f"producer_batch_bytes must be >= 16384 (aiokafka's default), got {self.producer_batch_bytes}")

        if self.entity_align_ms < 0:
            raise SettingsError(f"entity_align_ms must be >= 0, got {self.entity_align_ms}")
        if not 0 < self.trees_cpu_share <= 1:
            raise SettingsError(f"trees_cpu_share must be in (0, 1], got {self.trees_cpu_share}")
        if self.trees_refit_s < 0 or self.trees_window_s <= 0 or self.trees_max_examples < 1 or self.trees_min_frauds < 1:
            raise SettingsError(f"trees_refit_s must be >= 0 and trees_window_s, trees_max_examples, trees_min_frauds "
                                f"positive, got {self.trees_refit_s}, {self.trees_window_s}, {self.trees_max_examples}, "
                                f"{self.trees_min_frauds}")
        if self.history_length > MAX_HISTORY_ENTRIES:
            raise SettingsError(f"history_length must be <= {MAX_HISTORY_ENTRIES} (the history record's limit), got {self.history_length}")
        if self.gc_threshold < 0:
            raise SettingsError(f"gc_threshold must be >= 0 (0 keeps Python's), got {self.gc_threshold}")
        unknown = [f for f in self.entity_fields if f not in ENTITY_FIELDS]
        if unknown or len(set(self.entity_fields)) != len(self.entity_fields):
            raise SettingsError(f"entities must name distinct fields among {', '.join(ENTITY_FIELDS)}, got {self.entities!r}")
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            raise SettingsError(f"processing_guarantee must be at_least_once or exactly_once, got {self.processing_guarantee!r}")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise SettingsError(f"auto_offset_reset must be earliest or latest, got {self.auto_offset_reset!r}")
        if self.sequence_precision not in ("float32", "bfloat16"):
            raise SettingsError(f"sequence_precision must be float32 or bfloat16, got {self.sequence_precision!r}")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"log_format must be text or json, got {self.log_format!r}")
        if not self.store.startswith(("memory://", "rocksdb://", "aerospike://")):
            raise SettingsError(f"store must be memory:// or rocksdb://, got {self.store!r}")

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process.

        >>> Settings(batch_size=64).to_env()["FRAUDSTREAM_BATCH_SIZE"]
        '64'
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[ENV_PREFIX + f.name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    def budget(self) -> Budget | None:
        """The parsed ``alert_budget`` (None: the fixed threshold); :class:`SettingsError` when it does not parse.

        >>> Settings(alert_budget="0.5%").budget()
        Budget(share=0.005, per_hour=None)
        """
        try:
            return Budget.parse(self.alert_budget)
        except BudgetError as exc:
            raise SettingsError(str(exc)) from None

    @property
    def budget_topic(self) -> str:
        """Internal one-partition topic: each micro-batch's fused scores, for the one budget controller."""
        return f"{self.app_id}-budget-scores"

    @property
    def threshold_topic(self) -> str:
        """Compacted one-partition topic: the threshold the budget controller publishes, followed by every worker."""
        return f"{self.app_id}-threshold"

    @property
    def models_topic(self) -> str:
        """Resolved name of the model snapshot topic."""
        return self.topic_models or f"{self.app_id}-models"

    @property
    def entity_fields(self) -> tuple[str, ...]:
        """The entity fields of ``entities``, in order (the order of the hops).

        >>> Settings(entities="merchant_id, ip").entity_fields
        ('merchant_id', 'ip')
        """
        return tuple(f.strip() for f in self.entities.split(",") if f.strip())

    def entity_topic(self, entity_field: str) -> str:
        """The repartition topic of one entity kind, keyed by the entity's value."""
        return f"{self.app_id}-entity-{entity_field}"

    @property
    def enriched_topic(self) -> str:
        """Transactions with their entities' features, keyed by card, for the score agent."""
        return f"{self.app_id}-enriched"

    @property
    def labelled_topic(self) -> str:
        """Resolved name of the internal labelled-examples topic."""
        return self.topic_labelled or f"{self.app_id}-labelled"

    def signing_key(self) -> bytes:
        """The snapshot signing key; raises :class:`SettingsError` when unset or short."""
        key = self.model_signing_key.encode()
        if len(key) < 16:
            raise SettingsError(
                "FRAUDSTREAM_MODEL_SIGNING_KEY must be set to a secret of at least 16 bytes "
                "(e.g. `openssl rand -hex 32`); workers refuse unsigned model snapshots"
            )
        return key

    @property
    def kafka_broker_url(self) -> str:
        """Bootstrap servers in Faust's ``kafka://`` URL form."""
        return ";".join("kafka://" + s.strip() for s in self.bootstrap_servers.split(",") if s.strip())


def _parse(name: str, raw: str, type_: Any) -> Any:
    type_name = type_ if isinstance(type_, str) else type_.__name__
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {type_name}") from None
    return raw


def describe() -> Iterator[tuple[str, str, str]]:
    """Yield ``(ENV_VAR, default, doc)`` for every setting (docs/settings.md is generated from it).

    >>> next(describe())[0]
    'FRAUDSTREAM_APP_ID'
    """
    for f in dataclasses.fields(Settings):
        default = "(unset)" if not f.repr else repr(f.default)
        yield ENV_PREFIX + f.name.upper(), default, f.metadata["doc"]
