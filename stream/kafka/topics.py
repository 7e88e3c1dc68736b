"""Create the engine's topics up front, with matching partition counts.

Per-card state only works if every topic the engine joins (transactions,
feedback, the table changelogs) has the same number of partitions. A producer
that writes before the worker has started may make the broker auto-create
``transactions`` with its own default count; creating all topics first, with
``fraudstream topics``, avoids that (and Faust refuses to run with a
mismatch: PartitionsMismatch).

Example:
    >>> topic_names(Settings())[:2]
    ['transactions', 'feedback']
"""

from __future__ import annotations

import logging
import time

from stream.contracts.settings import Settings
from stream.kafka import clients

__all__ = ["ensure_topics", "topic_names", "topic_specs"]

log = logging.getLogger("fraudstream.topics")


def topic_names(settings: Settings) -> list[str]:
    """Every topic the engine reads or writes (changelogs excluded: Faust makes those)."""
    return [
        settings.topic_transactions,
        settings.topic_feedback,
        settings.topic_scores,
        settings.topic_alerts,
        settings.topic_transactions_dlq,
        settings.topic_feedback_dlq,
        *[settings.entity_topic(f) for f in settings.entity_fields],
        *([settings.enriched_topic] if settings.entity_fields else []),
    ]


def topic_specs(settings: Settings) -> dict[str, int]:
    """Every topic the engine needs, with its partition count.

    The model snapshot topic and the labelled-examples topic have one
    partition: there is one online learner, and its inputs and outputs are
    totally ordered. The model topic should be compacted on real Kafka.
    """
    specs = {name: settings.topic_partitions for name in topic_names(settings)}
    specs[settings.topic_ops] = 1
    specs[settings.topic_rules] = 1  # every worker reads all of it; compacted (the newest version of each rule)
    specs[settings.models_topic] = 1
    specs[settings.labelled_topic] = 1
    if settings.alert_budget:  # one controller reads the scores; every worker reads the compacted threshold
        specs[settings.budget_topic] = 1
        specs[settings.threshold_topic] = 1
    return specs


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing topics; return ``{topic: partitions}`` as the broker reports.

    Raises ``RuntimeError`` when an existing input topic has a partition count
    other than ``settings.topic_partitions`` (state would be split).
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = topic_specs(settings)
    admin = clients.admin(settings, client_id="fraudstream-topics")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, partitions, settings.replication_factor,
                     topic_configs=({"cleanup.policy": "compact"} if name in (settings.models_topic, settings.topic_rules)
                                    else {}))
            for name, partitions in specs.items() if name not in existing
        ]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:  # a worker raced us; the check below decides
                pass
    finally:
        admin.close()
    consumer = clients.consumer(settings, client_id="fraudstream-topics")
    try:
        deadline = time.monotonic() + timeout_s
        counts = {name: len(clients.wait_for_partitions(consumer, name, max(0.0, deadline - time.monotonic()),
                                                        interval_s=0.2))
                  for name in specs}
    finally:
        consumer.close()
    copartitioned = [settings.topic_transactions, settings.topic_feedback]
    if settings.entity_fields:
        copartitioned.append(settings.enriched_topic)  # scored on the card's partition, beside its labels
    for name in copartitioned:
        if counts.get(name) != settings.topic_partitions:
            raise RuntimeError(
                f"topic {name!r} has {counts.get(name)} partitions but FRAUDSTREAM_TOPIC_PARTITIONS="
                f"{settings.topic_partitions}; per-card state needs them equal"
            )
    log.info("topics ready: %s", counts)
    return counts
