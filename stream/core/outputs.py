"""Records the engine emits on the ``scores`` and ``alerts`` topics.

Example:
    >>> alert_id("t-1001")
    '87216951-ad3f-5200-b4f4-d48607b1a251'
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stream.contracts.records import Transaction, format_rfc3339_many

__all__ = ["ALERT_NAMESPACE", "alert_id", "alert_record", "score_record", "score_records"]

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
    return score_records([t], [score], {k: [v] for k, v in components.items()}, versions, threshold,
                         [received_at_ms], scored_at_ms, processing_ms)[0]


def score_records(
    transactions: Sequence[Transaction],
    scores: Sequence[float],
    components: Mapping[str, Sequence[float]],
    versions: Mapping[str, str],
    threshold: float,
    received_at_ms: Sequence[int],
    scored_at_ms: int,
    processing_ms: float,
) -> list[dict[str, Any]]:
    """The ``scores`` records of one micro-batch: :func:`score_record` of each transaction.

    ``components[name][i]`` is model ``name``'s score of ``transactions[i]``.
    The records share one ``model_versions`` dict (they are encoded, not changed).

    >>> t = Transaction("t1", "c1", 1_740_830_400_000, 20.0)
    >>> [r["score"] for r in score_records([t, t], [0.1234567, 0.9], {"online": [0.1, 0.9]}, {"online": "v1"},
    ...                                   0.5, [1_740_830_400_100] * 2, 1_740_830_400_130, 2.0)]
    [0.123457, 0.9]
    """
    shared_versions = dict(versions)
    names = list(components)
    # Rounded by NumPy for the whole batch: Python's round(x, 6) is a correctly rounded decimal
    # conversion, slow for three values a record. NumPy rounds x * 1e6 to an integer instead; the two
    # can differ by one in the sixth decimal where x is within a rounding error of a tie.
    rounded = [_round6(components[name]) for name in names]
    rows: Sequence[dict[str, float]] = (
        [dict(zip(names, row, strict=True)) for row in zip(*rounded, strict=True)] if names
        else [{} for _ in transactions])
    processing = round(processing_ms, 3)
    stamps = format_rfc3339_many([t.event_time_ms for t in transactions])
    return [
        {
            "transaction_id": t.transaction_id,
            "card_id": t.card_id,
            "event_time": t.event_time_ms,
            "timestamp": stamp,
            "score": shown,
            "components": row,
            "model_versions": shared_versions,
            "decision": "alert" if score >= threshold else "pass",
            "threshold": threshold,
            "received_at": received,
            "scored_at": scored_at_ms,
            "latency_ms": float(scored_at_ms - received),
            "processing_ms": processing,
        }
        for t, score, shown, row, received, stamp in zip(transactions, scores, _round6(scores), rows, received_at_ms,
                                                         stamps, strict=True)
    ]


def _round6(values: Sequence[float]) -> list[float]:
    """``values`` rounded to 6 decimals, as Python floats (NaN and infinities stay as they are)."""
    return np.round(np.asarray(values, dtype=np.float64), 6).tolist()


def alert_record(score: Mapping[str, Any], t: Transaction, reasons: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One ``alerts`` record (schema: ``schemas/alerts.json``); ``decision`` and ``rule_hits`` as on the score record."""
    rules = {name: score[name] for name in ("decision", "rule_hits") if name in score}
    return {
        **rules,
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
