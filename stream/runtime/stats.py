"""Counters the worker logs periodically (and, later, exports as metrics).

Example:
    >>> s = Stats()
    >>> s.scored += 3; s.dead_letter("transactions.dlq", "invalid_amount")
    >>> s.snapshot()["dlq"]
    {'transactions.dlq:invalid_amount': 1}
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats"]


@dataclass
class Stats:
    """Running totals since the worker started."""

    events_in: int = 0
    scored: int = 0
    history_entries: int = 0  # summed over scored transactions: prior entries each was scored with
    alerts: int = 0
    batches: int = 0
    labels_forwarded: int = 0
    labels_pending: int = 0  # parked, waiting for their transaction
    labels_learned: int = 0
    labels_duplicate: int = 0
    labels_capped: int = 0
    #: Labels learned without the sequence logit (transactions from the sequence model's training period).
    labels_sequence_masked: int = 0
    #: Labels the route agent could not send to their entities (transaction not routed here: expired, never sent).
    entity_labels_unrouted: int = 0
    features_expired: int = 0
    snapshots_published: int = 0
    snapshots_installed: int = 0
    snapshots_rejected: int = 0
    rollbacks: int = 0
    trees_refits: int = 0
    first_scored_at: int = 0  # wall ms of the first and the latest score produced
    last_scored_at: int = 0
    dlq: Counter[str] = field(default_factory=Counter)
    #: Per rule id: records hit (active or shadow), records the rule failed on (scored without it).
    rule_hits: Counter[str] = field(default_factory=Counter)
    rule_failures: Counter[str] = field(default_factory=Counter)
    rules_loaded: int = 0  # enabled rules in force
    rules_refused: int = 0  # rule records on the topic that did not decode or compile
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: With entities: the last 5,000 transactions' hop latencies, ms (arrival to enriched record), for ``hop_ms``.
    hops: deque[int] = field(default_factory=lambda: deque(maxlen=5_000))

    def observe_hops(self, ms: Sequence[int]) -> None:
        self.hops.extend(ms)

    def dead_letter(self, topic: str, reason: str) -> None:
        self.dlq[f"{topic}:{reason}"] += 1

    def snapshot(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items()
               if k not in ("dlq", "stage_seconds", "rule_hits", "rule_failures", "hops")}
        if self.hops:
            ordered = sorted(self.hops)
            out["hop_ms"] = {"p50": ordered[len(ordered) // 2], "p99": ordered[int(len(ordered) * 0.99)],
                             "n": len(ordered)}
        out["dlq"] = dict(self.dlq)
        out["rule_hits"], out["rule_failures"] = dict(self.rule_hits), dict(self.rule_failures)
        out["stage_seconds"] = {k: round(v, 3) for k, v in self.stage_seconds.items()}
        return out
