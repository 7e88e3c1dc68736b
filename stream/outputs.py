"""Records the engine emits on the ``scores`` and ``alerts`` topics.

Example:
    >>> alert_id("t-1001")
    '87216951-ad3f-5200-b4f4-d48607b1a251'
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from stream.records import Transaction, format_rfc3339

__all__ = ["ALERT_NAMESPACE", "alert_id", "alert_record", "score_record"]

#: Namespace of alert ids: uuid5(ALERT_NAMESPACE, transaction_id). Fixed forever,
#: so a re-scored transaction (at-least-once redelivery) raises the same alert id.
ALERT_NAMESPACE = uuid.UUID("6f1c8e52-3d0b-4c1e-9a57-7c2f0e8b1d44")


def alert_id(transaction_id: str) -> str:
    """Deterministic alert id for a transaction."""
    return str(uuid.uuid5(ALERT_NAMESPACE, transaction_id))


def score_record(
    t: Transaction,
    score: float,
    components: Mapping[str, float],
    versions: Mapping[str, str],
    threshold: float,
    received_at_ms: int,
    scored_at_ms: int,
    processing_ms: float,
) -> dict[str, Any]:
    """One ``scores`` record (schema: ``schemas/scores.json``)."""
    return {
        "transaction_id": t.transaction_id,
        "card_id": t.card_id,
        "event_time": t.event_time_ms,
        "timestamp": format_rfc3339(t.event_time_ms),
        "score": round(float(score), 6),
        "components": {k: round(float(v), 6) for k, v in components.items()},
        "model_versions": dict(versions),
        "decision": "alert" if score >= threshold else "pass",
        "threshold": threshold,
        "received_at": received_at_ms,
        "scored_at": scored_at_ms,
        "latency_ms": float(scored_at_ms - received_at_ms),
        "processing_ms": round(processing_ms, 3),
    }


def alert_record(score: Mapping[str, Any], t: Transaction, reasons: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One ``alerts`` record (schema: ``schemas/alerts.json``)."""
    return {
        "alert_id": alert_id(t.transaction_id),
        "transaction_id": t.transaction_id,
        "card_id": t.card_id,
        "transaction": t.to_json_dict(),
        "score": score["score"],
        "components": score["components"],
        "model_versions": score["model_versions"],
        "threshold": score["threshold"],
        "reasons": list(reasons),
        "event_time": t.event_time_ms,
        "scored_at": score["scored_at"],
    }
