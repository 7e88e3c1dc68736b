"""Scoring a micro-batch: records and card state in, new state and output records out. No Faust, no Kafka.

:class:`BatchScoring` is what the score agent does to a micro-batch, as a
plain object over plain values, so it is tested with in-memory lists in
milliseconds (``tests/stream/core/test_scoring.py``) and the agent
(:mod:`stream.runtime.agents.score`) only moves records between Kafka and it:

1. decode and validate every record; a bad one becomes a dead letter with its
   reason (the contract's codes, and ``key_mismatch``: per-card state needs
   transactions keyed by their card);
2. chain each card's history through the batch (a card may appear many
   times); a redelivered transaction (one already in its card's history) is
   scored with the inputs it was first scored with, read back from the
   features table, so its score is the first one;
3. compute the engineered features in event time and score the whole batch
   with every model at once; if a model fails on the batch, score record by
   record and dead-letter only the records that fail (``scoring_error``);
4. build the score records, and an alert with its reasons for every score at
   or above the threshold.

The caller writes :attr:`ScoredBatch.histories` and
:attr:`ScoredBatch.features` to its tables and produces the rest.

Example:
    >>> import orjson
    >>> from models.fusion import Fusion
    >>> from models.online import OnlineLearner
    >>> from stream.core.source import InMemoryRecord
    >>> from stream.contracts.records import Limits
    >>> scoring = BatchScoring(Fusion(OnlineLearner()), Limits(1_000_000, 0, 86_400_000), history_length=32,
    ...                        threshold=0.5)
    >>> good = orjson.dumps({"transaction_id": "t1", "card_id": "c1", "timestamp": "2026-03-01T10:00:00Z",
    ...                      "amount": 12.5})
    >>> batch = scoring.score([InMemoryRecord(b"c1", good), InMemoryRecord(b"c1", b"{not json")], {})
    >>> [t.transaction_id for _, t in batch.scored], [d.reason for d in batch.dead_letters]
    (['t1'], ['malformed_json'])
    >>> len(batch.histories[0][2]), orjson.loads(batch.scores[0][1])["decision"]
    (1, 'pass')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models.features import FEATURE_NAMES, engineered_batch
from models.fusion import Fusion
from models.history import History, advance, new_history
from models.history_windows import scored_windows
from models.online import ONLINE_INPUTS, columns
from models.profile_features import ENTITY_INPUTS
from models.reasons import top_reasons
from models.scoring import ScoringItem
from stream.contracts.codec import dumps
from stream.contracts.dlq import DeadLetter
from stream.contracts.records import InvalidRecord, Limits, Transaction, parse_transaction
from stream.core.outputs import alert_record, score_records
from stream.core.packing import pack_rows, unpack_inputs
from stream.core.routing import ARRIVED_HEADER, FEATURES_HEADER, EntityRouting, header, parse_arrived
from stream.core.rules import RuleOutcome, RuleSet
from stream.core.source import SourceRecord
from stream.core.stored import feature_entries
from stream.core.timing import StageClock

__all__ = ["BatchScoring", "ScoredBatch", "validated"]

log = logging.getLogger("fraudstream.score")

#: Where ENTITY_INPUTS sit in ONLINE_INPUTS.
_ENTITY_AT = np.array([ONLINE_INPUTS.index(name) for name in ENTITY_INPUTS], dtype=np.int64)

#: Most reasons an alert carries (the online learner's first, then the sequence model's).
MAX_REASONS = 5


@dataclass
class ScoredBatch:
    """Everything one micro-batch causes. Indices point into the records given to :meth:`BatchScoring.score`."""

    #: Rejected records, for the transactions DLQ.
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: ``(index of the card's last record in the batch, card key, the card's new history)``: one per card.
    histories: list[tuple[int, bytes, History]] = field(default_factory=list)
    #: ``(record index, transaction key, FeatureEntry JSON)``: the scoring-time inputs, for the feedback join.
    features: list[tuple[int, bytes, dict[str, Any]]] = field(default_factory=list)
    #: ``(card key, encoded score record)`` in batch order, and the same for alerts.
    scores: list[tuple[bytes, bytes]] = field(default_factory=list)
    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: ``(record index, transaction)`` of every scored record, in batch order.
    scored: list[tuple[int, Transaction]] = field(default_factory=list)
    #: The fused score of each scored record, in batch order (unrounded: the alert budget's sketch counts them).
    fused: list[float] = field(default_factory=list)
    #: When each scored transaction reached Kafka (epoch ms: the record's timestamp, or with entities the
    #: transaction's as it arrived, :data:`~stream.core.routing.ARRIVED_HEADER`) and when it was scored.
    received_ms: list[int] = field(default_factory=list)
    #: With entities: ms from the transaction's arrival to its enriched record's, per scored record (the hops).
    hop_ms: list[int] = field(default_factory=list)
    scored_at_ms: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    #: History entries the scored transactions were scored with (summed).
    history_entries: int = 0
    #: Seconds per stage: decode, state, features, the models', rules, encode_produce (the records built and encoded).
    seconds: dict[str, float] = field(default_factory=dict)
    #: Records each rule hit (active or shadow), and records each rule failed on (left out for them).
    rule_hits: dict[str, int] = field(default_factory=dict)
    rule_failures: dict[str, int] = field(default_factory=dict)


def _rule_reasons(outcome: RuleOutcome) -> list[dict[str, Any]]:
    """An alert's reasons from its rules (first: an analyst reads why a rule fired before the model's why)."""
    return [{"code": f"rule:{rule_id}", "text": text, "weight": 1.0} for rule_id, text in outcome.reasons]


def validated(record: SourceRecord, limits: Limits) -> Transaction:
    """The record's transaction, or :class:`InvalidRecord` (with the DLQ reason) for one that is not valid.

    >>> from stream.core.source import InMemoryRecord
    >>> from stream.contracts.records import Limits
    >>> validated(InMemoryRecord(b"c2", b'{"transaction_id": "t", "card_id": "c1", "timestamp": 1740830400000,'
    ...                          b' "amount": 1}'), Limits(65536, 0, 86_400_000))
    Traceback (most recent call last):
    ...
    stream.contracts.records.InvalidRecord: key_mismatch: record key b'c2' is not card_id 'c1'; per-card state needs transactions keyed by card_id
    """
    t = parse_transaction(record.value, limits)
    if record.key is not None and record.key != t.card_id.encode():
        raise InvalidRecord(
            "key_mismatch",
            f"record key {record.key[:64]!r} is not card_id {t.card_id!r}; "
            "per-card state needs transactions keyed by card_id",
        )
    return t


class BatchScoring:
    """Scores micro-batches with ``fusion``; holds nothing between batches but the models.

    ``threshold`` is the score at or above which a transaction raises an
    alert (the caller may change it between batches: the alert budget's,
    :mod:`stream.core.budget`; every score record carries the one it was
    decided with); ``history_length`` the entries kept per card.
    """

    def __init__(self, fusion: Fusion, limits: Limits, history_length: int, threshold: float,
                 clock_ms: Callable[[], int] | None = None, routing: EntityRouting | None = None,
                 rules: RuleSet | None = None) -> None:
        self.fusion = fusion
        #: The dynamic rules (:mod:`stream.core.rules`); the caller may replace them between batches.
        self.rules = rules or RuleSet()
        self.limits = limits
        self.history_length = history_length
        self.threshold = threshold
        #: With entities: records carry their entities' features (:mod:`stream.core.routing`), which the score
        #: records show and whose entity values the features table keeps for the labels.
        self.routing = routing
        #: Where each of the routing's features sits in ENTITY_INPUTS.
        self._entity_columns = ([] if routing is None else
                                [ENTITY_INPUTS.index(name) for name in routing.names])
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def score(self, records: Sequence[SourceRecord], histories: Mapping[bytes, History],
              stored: Mapping[bytes, Any] | None = None) -> ScoredBatch:
        """Score ``records`` against the cards' stored ``histories`` (read only; the new ones are returned).

        ``stored``: the features table (transaction id -> FeatureEntry JSON),
        read for transactions already in their card's history (a redelivery),
        so that they are scored with the inputs of their first scoring.
        """
        clock = StageClock()
        out = ScoredBatch()
        valid: list[tuple[int, Transaction]] = []
        for i, record in enumerate(records):
            try:
                t = validated(record, self.limits)
            except InvalidRecord as exc:
                out.dead_letters.append(DeadLetter.from_message(record, exc.reason, exc.detail))
                continue
            valid.append((i, t))
        clock.lap("decode")
        if not valid:
            out.seconds = clock.seconds
            return out

        # State: chain histories through the batch, a card may appear many times.
        new: dict[bytes, History] = {}
        last: dict[bytes, int] = {}
        priors: list[History] = []
        # Rows not after everything in their card's history: a redelivery (perhaps of a transaction since pruned
        # from the history) or a late arrival; the features table tells which (advance shares the history
        # as the prior only in the usual in-order case, so the test costs nothing there).
        maybe_seen: list[int] = []
        limit = self.history_length
        for row, (i, t) in enumerate(valid):
            key = t.card_id.encode()
            history = new.get(key)
            if history is None:
                history = histories.get(key) or new_history()
            prior, new[key] = advance(history, t, limit)
            if prior is not history:
                maybe_seen.append(row)
            priors.append(prior)
            last[key] = i
        clock.lap("state")
        transactions = [t for _, t in valid]
        windows = scored_windows(priors, transactions)  # gathered once: engineered features and sequence model
        x = engineered_batch(priors, transactions, windows)
        entity = self._entity_inputs([records[i] for i, _ in valid])
        first = ({} if not maybe_seen or stored is None else
                 self._first_inputs([(row, valid[row][1]) for row in maybe_seen], stored))
        if entity is not None:
            for row, vector in first.items():  # the score record shows the entity features it was scored with
                known = ~np.isnan(vector[_ENTITY_AT])
                entity[row, known] = vector[_ENTITY_AT][known]
        items = [ScoringItem(t, prior, row_x, windows, row, None if entity is None else entity[row])
                 for row, (t, prior, row_x) in enumerate(zip(transactions, priors, x, strict=True))]
        clock.lap("features")

        fused = self._fuse(items, valid, records, out, first)
        clock.add(self.fusion.last_seconds)
        if fused is None:  # every record failed to score: nothing of the batch is kept
            out.seconds = clock.seconds
            return out
        out.histories = [(last[key], key, history) for key, history in new.items()]
        scores, components, inputs, keep = fused
        rows = [row for row, _ in keep]
        scored = [valid[row] for row in rows]
        out.scored = scored
        kept = [t for _, t in scored]
        out.features = list(zip(
            [i for i, _ in scored], [t.transaction_id.encode() for t in kept],
            feature_entries([t.card_id for t in kept], [t.event_time_ms for t in kept],
                            [records[i].partition for i, _ in scored], pack_rows(self.fusion.online.select(inputs)),
                            None if self.routing is None else
                            [[getattr(t, f) for f in self.routing.fields] for t in kept]),
            strict=True))
        out.history_entries = int(windows.lengths[rows].sum())
        clock.lap("state")

        out.fused = scores
        out.versions = versions = self.fusion.versions()
        out.scored_at_ms = scored_at = self._clock_ms()
        out.received_ms = received = [int(records[i].timestamp * 1000) for i, _ in scored]
        if self.routing is not None:  # from where the transaction arrived, not from the last hop
            for j, (i, _) in enumerate(scored):
                first_seen = parse_arrived(header(records[i].headers, ARRIVED_HEADER))
                if first_seen is not None:
                    out.hop_ms.append(received[j] - first_seen)
                    received[j] = first_seen
        processing_ms = (time.perf_counter() - clock.started) * 1000.0
        keys = [t.card_id.encode() for t in kept]
        score_rows = score_records(kept, scores, components, versions, self.threshold, received, scored_at,
                                   processing_ms)
        if entity is not None and self.routing is not None:
            names = self.routing.names
            at = self._entity_columns
            for score_row, row in zip(score_rows, rows, strict=True):
                score_row["entity_features"] = dict(zip(names, entity[row, at].round(6).tolist(), strict=True))
        clock.lap("encode_produce")
        outcomes = self._apply_rules(kept, inputs, scores, components, score_rows, out)
        clock.lap("rules")
        out.scores = [(key, dumps(record)) for key, record in zip(keys, score_rows, strict=True)]
        alerted = [j for j, record in enumerate(score_rows) if record["decision"] in ("alert", "block")]
        if alerted:
            explanations = self._sequence_reasons([items[rows[j]] for j in alerted])
            online = self.fusion.online
            # With trees the score is theirs: each input's exact share of their log-odds (TreeSHAP), so a reason
            # is given only when it pushed this score up; its text compares with the card's history (models.reasons).
            trees = online.trees
            shares = None if trees is None else trees.contributions(columns(inputs[alerted], trees.feature_names))
            for k, (j, extra) in enumerate(zip(alerted, explanations, strict=True)):
                t = kept[j]
                xj = dict(zip(ONLINE_INPUTS, inputs[j].tolist(), strict=True))
                contributions = online.contributions(xj)
                if trees is not None and shares is not None:
                    contributions = dict(zip(trees.feature_names, shares[k].tolist(), strict=True))
                reasons = (_rule_reasons(outcomes[j]) + top_reasons(t, xj, contributions, items[rows[j]].history)
                           + extra)[:MAX_REASONS]
                out.alerts.append((keys[j], dumps(alert_record(score_rows[j], t, reasons))))
        clock.lap("encode_produce")
        out.seconds = clock.seconds
        return out

    def _apply_rules(self, kept: list[Transaction], inputs: npt.NDArray[np.float64], scores: list[float],
                     components: dict[str, list[float]], score_rows: list[dict[str, Any]],
                     out: ScoredBatch) -> list[RuleOutcome]:
        """Evaluate the rules on the scored records (their inputs as scored) and write what they did on the records.

        Every score record gets ``rules`` (the versions applied), ``rule_hits``
        and ``shadow_hits``; ``tags`` and ``rule_errors`` when there are any;
        its ``decision`` becomes the rules' (allow > block > alert > pass).
        """
        rules = self.rules
        if not len(rules):
            for record in score_rows:
                record["rules"], record["rule_hits"], record["shadow_hits"] = {}, [], []
            return [RuleOutcome()] * len(score_rows)
        names = [name for name in ONLINE_INPUTS if name in self._rule_columns]
        matrix = inputs[:, [ONLINE_INPUTS.index(name) for name in names]]
        outcomes = rules.evaluate_batch(kept, matrix, names, scores, components)
        for record, outcome in zip(score_rows, outcomes, strict=True):
            record["rules"], record["rule_hits"], record["shadow_hits"] = (
                outcome.versions, outcome.hits, outcome.shadow_hits)
            if outcome.tags:
                record["tags"] = outcome.tags
            if outcome.failures:
                record["rule_errors"] = outcome.failures
            record["decision"] = outcome.decision(record["decision"] == "alert")
        out.rule_hits, out.rule_failures = rules.last_hits, rules.last_failures
        return outcomes

    @property
    def _rule_columns(self) -> frozenset[str]:
        """The inputs a rule may read: the engineered features and this deployment's entity features."""
        return frozenset(FEATURE_NAMES) | frozenset(() if self.routing is None else self.routing.names)

    def _entity_inputs(self, records: Sequence[SourceRecord]) -> npt.NDArray[np.float64] | None:
        """The records' entity features in :data:`~models.profile_features.ENTITY_INPUTS` order (None without entities).

        A record whose header is missing or holds the wrong count (a record
        that reached the enriched topic some other way) gets each kind's
        features of a transaction that names no such entity, as a hop would
        have given it.
        """
        if self.routing is None:
            return None
        out = np.zeros((len(records), len(ENTITY_INPUTS)))
        at = self._entity_columns
        blank = self.routing.blank
        for j, record in enumerate(records):
            carried = header(record.headers, FEATURES_HEADER)
            values = self.routing.values(carried)
            out[j, at] = blank if values is None else values
        return out

    def _first_inputs(self, rows: Sequence[tuple[int, Transaction]],
                      stored: Mapping[bytes, Any]) -> dict[int, npt.NDArray[np.float64]]:
        """The inputs redelivered transactions were first scored with (row -> ONLINE_INPUTS order, NaN unknown).

        Read from the vector stored for the label join. The state has moved on
        since the first scoring: the entity's profile has counted the
        transaction and what came after it, and with entity hops a card's
        transactions can reach scoring out of event-time order (each takes
        its own entity's partition), so the card's history may have gained
        an earlier one, or lost it to its length limit. A row whose entry is
        gone (expired, never written), belongs to another card's transaction of
        the same id, or was stored by a learner of other inputs is scored afresh.
        """
        names = self.fusion.online.feature_names
        where = np.array([ONLINE_INPUTS.index(name) for name in names if name in ONLINE_INPUTS], dtype=np.int64)
        mine = np.array([k for k, name in enumerate(names) if name in ONLINE_INPUTS], dtype=np.int64)
        out: dict[int, npt.NDArray[np.float64]] = {}
        for row, t in rows:
            entry = stored.get(t.transaction_id.encode())
            if (not isinstance(entry, Mapping) or "x" not in entry or entry.get("c") != t.card_id
                    or entry.get("t") != t.event_time_ms):  # not scored before, or another transaction's id
                continue
            try:
                vector = unpack_inputs(entry["x"])
            except (ValueError, TypeError):
                continue
            if len(vector) != len(names):
                continue
            first = np.full(len(ONLINE_INPUTS), np.nan)
            first[where] = np.asarray(vector, dtype=np.float64)[mine]
            out[row] = first
        return out

    def _sequence_reasons(self, items: list[ScoringItem]) -> list[list[dict[str, Any]]]:
        """What the sequence model saw in the alerted transactions (one batched backward pass); [] each without one."""
        sequence = self.fusion.sequence
        if sequence is None or not hasattr(sequence, "explain"):
            return [[] for _ in items]
        try:
            explained = sequence.explain(items, steps=1, features=1)
        except Exception:  # an explanation must never cost the alert itself
            log.exception("sequence explanation failed; alerts keep the online learner's reasons")
            return [[] for _ in items]
        return [[{k: r[k] for k in ("code", "text", "weight")} for r in reasons] for reasons in explained]

    def _fuse(self, items: list[ScoringItem], valid: list[tuple[int, Transaction]], records: Sequence[SourceRecord],
              out: ScoredBatch, first: dict[int, npt.NDArray[np.float64]]) -> tuple[list[float], dict[str, list[float]], npt.NDArray[np.float64],
                                         list[tuple[int, Transaction]]] | None:
        """Score the batch; if a model fails on it, isolate the failing records (``keep``: rows of ``valid``)."""
        fusion = self.fusion
        try:
            batch = fusion.score_batch(items, first)
            return (batch.score.tolist(), {k: v.tolist() for k, v in batch.components.items()}, batch.inputs,
                    [(row, t) for row, (_, t) in enumerate(valid)])
        except Exception:
            log.exception("batch scoring failed; scoring its %d records one by one", len(items))
        scores: list[float] = []
        components: dict[str, list[float]] = {}
        inputs: list[npt.NDArray[np.float64]] = []
        keep: list[tuple[int, Transaction]] = []
        for row, (item, (i, t)) in enumerate(zip(items, valid, strict=True)):
            try:
                one = fusion.score_batch([item], {0: first[row]} if row in first else None)
            except Exception as exc:  # noqa: BLE001 - any model failure dead-letters only this record
                out.dead_letters.append(DeadLetter.from_message(records[i], "scoring_error", repr(exc)))
                continue
            scores.append(float(one.score[0]))
            for k, v in one.components.items():
                components.setdefault(k, []).append(float(v[0]))
            inputs.append(one.inputs[0])
            keep.append((row, t))
        return (scores, components, np.vstack(inputs), keep) if keep else None
