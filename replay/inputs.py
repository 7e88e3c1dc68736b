"""What evaluation reads: the engine's score records and the true labels.

Score records come from a JSONL dump of the ``scores`` topic or from the
topic itself; labels from the file :mod:`replay.generate` wrote. Delivery is
at least once, so score records are deduplicated by ``transaction_id`` (the
first record wins, as the first one is what a subscriber acted on) before
anything is counted.

Example:
    >>> [r["score"] for r in dedupe([{"transaction_id": "a", "score": 0.1},
    ...                              {"transaction_id": "a", "score": 0.9}])]
    [0.1]
    >>> Label(1, "card_testing").is_fraud
    1
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from replay.generate import read
from stream.contracts.settings import Settings

__all__ = ["Label", "consume_scores", "dedupe", "load_labels", "load_scores_jsonl"]


class Label(NamedTuple):
    """The truth about one transaction."""

    is_fraud: int
    scenario: str = ""


def dedupe(scores: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Keep the first score record of each ``transaction_id``, in input order.

    >>> [r["score"] for r in dedupe([{"transaction_id": "a", "score": 1},
    ...                              {"transaction_id": "a", "score": 2},
    ...                              {"transaction_id": "b", "score": 3}])]
    [1, 3]
    """
    seen: dict[str, dict[str, Any]] = {}
    for record in scores:
        # Records are kept, not copied: a million score dicts are costly to copy.
        seen.setdefault(str(record["transaction_id"]), record if isinstance(record, dict) else dict(record))
    return list(seen.values())


def load_scores_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Score records from a file of one JSON object per line, deduplicated."""
    with Path(path).open(encoding="utf-8") as lines:
        return dedupe(json.loads(line) for line in lines if line.strip())


def consume_scores(
    bootstrap_servers: str, topic: str, timeout_s: float = 30.0, expected: int | None = None,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """Read every score record on ``topic`` from the beginning, deduplicated.

    Stops once ``expected`` distinct transactions have been read, or after
    ``timeout_s`` seconds without a new record. No consumer group is joined
    (nothing is committed, nothing else's offsets move): all partitions are
    assigned to this consumer directly. The consumer uses the TLS / SASL
    options of ``settings`` (default: none), with ``bootstrap_servers`` in
    place of the settings' own.
    """
    from kafka import TopicPartition  # imported here: the offline paths never need kafka

    from stream.kafka import clients

    settings = (settings or Settings()).replace(bootstrap_servers=bootstrap_servers)
    consumer = clients.consumer(settings, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id="fraudstream-evaluate")
    seen: dict[str, dict[str, Any]] = {}
    try:
        # The topic may not exist yet when evaluation starts alongside the engine.
        partitions = clients.wait_for_partitions(consumer, topic, timeout_s)
        if not partitions:
            return []
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        last_new = time.monotonic()
        while expected is None or len(seen) < expected:
            batch = consumer.poll(timeout_ms=200)
            count = len(seen)
            for records in batch.values():
                for message in records:
                    if message.value is None:  # a tombstone carries no score
                        continue
                    record = json.loads(message.value)
                    seen.setdefault(str(record["transaction_id"]), record)
            if len(seen) > count:
                last_new = time.monotonic()
            elif time.monotonic() - last_new > timeout_s:
                break
    finally:
        consumer.close()
    return list(seen.values())


def load_labels(path: str | Path) -> dict[str, Label]:
    """``transaction_id -> Label`` from a CSV or Parquet file.

    Needs columns ``transaction_id`` and ``is_fraud``; ``scenario`` is used
    when present.
    """
    table = read(path)
    missing = {"transaction_id", "is_fraud"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: label file lacks columns {sorted(missing)}")
    ids = table["transaction_id"].to_pylist()
    fraud = table["is_fraud"].to_numpy(zero_copy_only=False).astype(np.int64).tolist()
    has_scenario = "scenario" in table.column_names
    scenario = [s or "" for s in table["scenario"].to_pylist()] if has_scenario else [""] * len(ids)
    return {str(t): Label(f, s) for t, f, s in zip(ids, fraud, scenario, strict=True)}
