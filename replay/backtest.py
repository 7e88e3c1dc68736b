"""What a rule would have caught on a labelled history: ``fraudstream rules test EXPR --history FILE``.

The rule is compiled as the workers compile it (:func:`stream.core.rules.compile_rule`)
and evaluated by the same :class:`~stream.core.rules.RuleSet` over the same
variables: the transaction's contract fields and its engineered features,
computed by the engine's feature code with each card's history replayed in
event time (:func:`replay.baseline.feature_matrix`, as the score agent does).
The models' scores and the entity features come from score records
(``--scores``, a JSONL dump of the scores topic, as ``fraudstream evaluate``
reads): a history file has none, so a rule reading ``score``,
``components`` or an entity feature needs them; with them the backtest also
says how the rule's hits overlap the models' alerts (score at or above the
record's threshold).

Figures: hits (and hits per UTC day), precision (fraud among hits), recall
(hits among fraud), fraud amount caught, and, with scores, the hits the models
alerted on too and the fraud only the rule caught. A row on which the rule
fails (a missing score record, say) counts as no hit and is reported.

Example:
    >>> from replay.generate import GeneratorConfig, generate
    >>> table = generate(GeneratorConfig(seed=3, n_transactions=2_000, n_cards=100, n_merchants=50, days=4))
    >>> result = backtest("amount > 1000.0", table)
    >>> result.rows, result.hits == sum(a > 1000.0 for a in table["amount"].to_pylist())
    (2000, True)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from models.features import FEATURE_NAMES
from models.profile_features import ENTITY_INPUTS
from replay.baseline import feature_matrix
from stream.contracts.records import Transaction
from stream.core.rules import Rule, RuleError, RuleSet, compile_rule

__all__ = ["Backtest", "backtest", "format_backtest"]

_MODEL_VARIABLES = frozenset({"score", "components", *ENTITY_INPUTS})


@dataclass
class Backtest:
    """A rule's figures over a labelled history."""

    expression: str
    rows: int
    frauds: int
    hits: int
    fraud_hits: int
    precision: float | None  # None without hits
    recall: float | None  # None without fraud
    fraud_amount: float
    fraud_amount_caught: float
    failures: int  # rows the rule failed on (no hit counted)
    hits_per_day: dict[str, int] = field(default_factory=dict)  # UTC date -> hits
    #: With score records: hits the models alerted on too, and fraud caught by the rule the models missed.
    model_alerts: int | None = None
    overlap: int | None = None
    fraud_only_rule: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _transactions(table: pa.Table) -> list[Transaction]:
    cols = {name: table[name].to_pylist() for name in
            ("transaction_id", "card_id", "timestamp", "amount", "currency", "merchant_id", "mcc", "country",
             "channel")}
    return [Transaction(str(tid), str(card), int(ts), float(amount), str(cur), str(m), str(mcc), str(country),
                        str(ch))
            for tid, card, ts, amount, cur, m, mcc, country, ch in zip(*cols.values(), strict=True)]


def backtest(expression: str, table: pa.Table, scores: Mapping[str, Mapping[str, Any]] | None = None,
             history_length: int = 32) -> Backtest:
    """The figures of ``expression`` over ``table`` (a history file's rows, ``is_fraud`` the label).

    ``scores``: score records by ``transaction_id``. Raises :class:`RuleError` for a
    rule that does not compile, or that reads the models' scores or entity
    features without ``scores``.
    """
    compiled = compile_rule(Rule("backtest", expression, "alert", reason="backtest"))
    needs = sorted(compiled.variables & _MODEL_VARIABLES)
    if needs and scores is None:
        raise RuleError(f"the rule reads {', '.join(needs)}, which a history file has not got: give the engine's "
                        "score records (--scores FILE)")
    rules = RuleSet([compiled])
    transactions = _transactions(table)
    features = feature_matrix(table, history_length)
    activations = rules.activations(transactions, features, FEATURE_NAMES)
    alerted = np.zeros(len(transactions), dtype=bool)
    if scores is not None:
        for activation, t, j in zip(activations, transactions, range(len(transactions)), strict=True):
            record = scores.get(t.transaction_id)
            if record is None:
                continue  # no score: a rule reading one fails on this row
            activation["score"] = float(record["score"])
            activation["components"] = dict(record.get("components") or {})
            activation.update(record.get("entity_features") or {})
            alerted[j] = float(record["score"]) >= float(record.get("threshold", 1.0))
    outcomes = rules.evaluate(activations)
    hit = np.array([bool(o.hits) for o in outcomes], dtype=bool)
    fraud = np.asarray(table["is_fraud"].to_numpy(zero_copy_only=False), dtype=np.int64) == 1
    amount = np.array([t.amount for t in transactions])
    days: dict[str, int] = {}
    for t, h in zip(transactions, hit.tolist(), strict=True):
        if h:
            day = dt.datetime.fromtimestamp(t.event_time_ms / 1000, tz=dt.UTC).date().isoformat()
            days[day] = days.get(day, 0) + 1
    hits, fraud_hits = int(hit.sum()), int((hit & fraud).sum())
    result = Backtest(
        expression=expression, rows=len(transactions), frauds=int(fraud.sum()), hits=hits, fraud_hits=fraud_hits,
        precision=fraud_hits / hits if hits else None,
        recall=fraud_hits / int(fraud.sum()) if fraud.any() else None,
        fraud_amount=round(float(amount[fraud].sum()), 2), fraud_amount_caught=round(float(amount[hit & fraud].sum()), 2),
        failures=sum(1 for o in outcomes if o.failures), hits_per_day=dict(sorted(days.items())))
    if scores is not None:
        result.model_alerts = int(alerted.sum())
        result.overlap = int((hit & alerted).sum())
        result.fraud_only_rule = int((hit & fraud & ~alerted).sum())
    return result


def format_backtest(b: Backtest) -> str:
    """The figures as a person reads them."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        f"rule: {b.expression}",
        f"rows {b.rows}, fraud {b.frauds}; hits {b.hits}, of them fraud {b.fraud_hits}",
        f"precision {pct(b.precision)}  recall {pct(b.recall)}",
        (f"fraud amount caught {b.fraud_amount_caught:.2f} of {b.fraud_amount:.2f} "
        f"({pct(b.fraud_amount_caught / b.fraud_amount if b.fraud_amount else None)})"),
    ]
    if b.model_alerts is not None:
        lines.append(f"models alerted on {b.model_alerts} rows; {b.overlap} of the rule's hits too; "
                     f"fraud caught by the rule alone: {b.fraud_only_rule}")
    else:
        lines.append("overlap with the models' alerts: n/a (give --scores FILE)")
    if b.failures:
        lines.append(f"the rule failed on {b.failures} rows (counted as no hit)")
    lines.append("hits per day:")
    lines += [f"  {day}  {n}" for day, n in b.hits_per_day.items()] or ["  (none)"]
    return "\n".join(lines)
