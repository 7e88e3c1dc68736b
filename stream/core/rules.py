"""Dynamic rules: CEL expressions over a scored transaction, applied per micro-batch. No Faust, no Kafka.

A :class:`Rule` is a record on the compacted rules topic (key = rule id, a
tombstone deletes it). Its expression is CEL (the Common Expression
Language, evaluated by the Rust ``cel`` interpreter through the
``common-expression-language`` package): no ``eval``, no access to Python
objects (the interpreter only sees the plain values :data:`VARIABLES` names),
no loops but the comprehension macros over the expression's own lists, so an
evaluation's cost is bounded by the expression's size, which
:func:`compile_rule` caps (:data:`MAX_EXPRESSION_CHARS`, :data:`MAX_NESTING`).

:func:`compile_rule` refuses, with a :class:`RuleError` naming what is wrong,
bad syntax, an unknown variable or function, and an expression that is not
a bool on a zero-valued transaction (a trial evaluation, which also catches
type errors such as ``country > 3`` on the paths it takes).

:class:`RuleSet` evaluates the enabled rules over a micro-batch and returns
one :class:`RuleOutcome` per record. A rule that fails on a record (a key
missing from ``components``, an entity feature this deployment has not got)
is left out for that record and counted; the record is scored all the same.

Precedence of the actions of the active rules that hit (shadow rules only
record their hits): ``allow`` > ``block`` > ``alert`` (a rule's, or the
model's score at or above the threshold) > ``pass``; ``tag`` adds its tag and
decides nothing. ``allow`` whitelists: it suppresses every alert, the model's
included. See docs/rules.md.

Example:
    >>> rules = RuleSet([Rule("big-br", "amount > 500 && country == 'BR'", "alert", reason="big BR"),
    ...                  Rule("t", "is_ecom == 1.0", "tag", tag="ecom", mode="shadow")])
    >>> outcome = rules.evaluate([{"amount": 950.0, "country": "BR", "is_ecom": 1.0}])[0]
    >>> outcome.hits, outcome.shadow_hits, outcome.versions, outcome.decision(model_alert=False)
    (['big-br'], ['t'], {'big-br': 1, 't': 1}, 'alert')
    >>> compile_rule(Rule("bad", "amount >", "alert", reason="x"))
    Traceback (most recent call last):
    ...
    stream.core.rules.RuleError: rule 'bad': syntax error at line:column 1:9: Syntax error: mismatched input ...
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cel
import numpy as np
import numpy.typing as npt

from models.features import FEATURE_NAMES
from models.profile_features import ENTITY_INPUTS
from stream.contracts.records import Transaction
from stream.core.rule_vectors import VectorRule, vectorise

__all__ = [
    "ACTIONS",
    "MAX_EXPRESSION_CHARS",
    "MAX_NESTING",
    "MODES",
    "RULE_SCHEMA_VERSION",
    "VARIABLES",
    "CompiledRule",
    "Rule",
    "RuleError",
    "RuleOutcome",
    "RuleSet",
    "check_record",
    "compile_rule",
    "decode_rule",
    "encode_rule",
]

ACTIONS = ("alert", "block", "allow", "tag")
MODES = ("active", "shadow")
RULE_SCHEMA_VERSION = 1
#: Longest expression accepted: an evaluation's cost grows with its size, and a rule is read by people.
MAX_EXPRESSION_CHARS = 1000
#: Deepest nesting of brackets accepted (the parser recurses; deep nesting is also unreadable).
MAX_NESTING = 16
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_TEXT = 500

#: Transaction contract fields a rule may read (strings, ``amount`` a double, ``event_time`` epoch ms).
CONTRACT_VARIABLES: dict[str, Any] = {
    "transaction_id": "", "card_id": "", "amount": 0.0, "currency": "", "merchant_id": "", "mcc": "",
    "country": "", "channel": "", "device_id": "", "ip": "", "account_id": "", "event_time": 0,
}
#: Every variable a rule may read, with the zero value a trial evaluation gives it.
VARIABLES: dict[str, Any] = {
    **CONTRACT_VARIABLES,
    **{name: 0.0 for name in FEATURE_NAMES},
    **{name: 0.0 for name in ENTITY_INPUTS},
    "score": 0.0,
    "components": {"online": 0.0, "sequence": 0.0},
}
#: Functions of the CEL standard library a rule may call (operators are always allowed).
FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string", "bool", "bytes",
    "dyn", "type", "timestamp", "duration", "getFullYear", "getMonth", "getDayOfMonth", "getDayOfWeek",
    "getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
})
_TYPE_NAMES = frozenset({"int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type",
                         "timestamp", "duration"})
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_STRING = re.compile(r"""(?s)[rRbB]*('''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""")


class RuleError(ValueError):
    """A rule record or expression that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class Rule:
    """One rule as it is stored on the rules topic (:func:`encode_rule`)."""

    id: str
    expression: str
    action: str
    reason: str = ""
    tag: str = ""
    mode: str = "active"
    enabled: bool = True
    version: int = 1
    author: str = ""
    created_at: int = 0  # epoch ms of this version

    def replace(self, **changes: Any) -> Rule:
        return replace(self, **changes)


def encode_rule(rule: Rule) -> bytes:
    """The rules-topic value of ``rule`` (JSON, with the record's schema version).

    >>> decode_rule(encode_rule(Rule("r1", "amount > 1.0", "block", reason="x"))).action
    'block'
    """
    return json.dumps({"schema": RULE_SCHEMA_VERSION, **asdict(rule)}, sort_keys=True).encode()


_FIELDS: dict[str, type] = {"id": str, "expression": str, "action": str, "reason": str, "tag": str, "mode": str,
                            "enabled": bool, "version": int, "author": str, "created_at": int}


def decode_rule(value: bytes) -> Rule:
    """A rule from its rules-topic value, checked field by field (:class:`RuleError` says which is wrong).

    >>> decode_rule(b'{"schema": 1, "id": "r1", "expression": "true", "action": "deny"}')
    Traceback (most recent call last):
    ...
    stream.core.rules.RuleError: rule 'r1': action 'deny' is not one of alert, block, allow, tag
    """
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RuleError(f"rule record is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RuleError(f"rule record is a JSON {type(data).__name__}, not an object")
    schema = data.pop("schema", None)
    if schema != RULE_SCHEMA_VERSION:
        raise RuleError(f"rule record schema {schema!r} is not {RULE_SCHEMA_VERSION} (written by a newer release?)")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise RuleError(f"rule record has unknown fields {unknown}")
    for name in ("id", "expression", "action"):
        if name not in data:
            raise RuleError(f"rule record lacks {name!r}")
    for name, kind in _FIELDS.items():
        if name in data and (type(data[name]) is not kind):  # bool is an int subclass: compare types exactly
            raise RuleError(f"rule record field {name!r} is {type(data[name]).__name__}, not {kind.__name__}")
    rule = Rule(**data)
    check_record(rule)
    return rule


def check_record(rule: Rule) -> None:
    """Raise :class:`RuleError` for a rule whose fields (not its expression) are not valid."""
    if not _ID.fullmatch(rule.id):
        raise RuleError(f"rule id {rule.id[:80]!r} must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)")
    where = f"rule {rule.id!r}"
    if rule.action not in ACTIONS:
        raise RuleError(f"{where}: action {rule.action!r} is not one of {', '.join(ACTIONS)}")
    if rule.mode not in MODES:
        raise RuleError(f"{where}: mode {rule.mode!r} is not one of {', '.join(MODES)}")
    if rule.action == "tag" and not rule.tag:
        raise RuleError(f"{where}: a tag rule needs a tag")
    if rule.action in ("alert", "block") and not rule.reason:
        raise RuleError(f"{where}: an {rule.action} rule needs a reason (it is the alert's text)")
    if len(rule.reason) > _MAX_TEXT or len(rule.tag) > 64 or len(rule.author) > 200:
        raise RuleError(f"{where}: reason over {_MAX_TEXT} characters, tag over 64 or author over 200")
    if rule.version < 1:
        raise RuleError(f"{where}: version {rule.version} must be at least 1")


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its compiled program, the variables it reads, and its NumPy form where it has one."""

    rule: Rule
    program: Any = field(repr=False)
    variables: frozenset[str]
    #: The same expression over a whole micro-batch (:mod:`stream.core.rule_vectors`); None: the interpreter only.
    vector: VectorRule | None = field(default=None, repr=False, compare=False)


def _nesting(expression: str) -> int:
    """Deepest bracket nesting outside string literals."""
    depth = deepest = 0
    for ch in _STRING.sub('""', expression):
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def compile_rule(rule: Rule) -> CompiledRule:
    """Check ``rule`` and compile its expression; :class:`RuleError` says why one is refused.

    >>> compile_rule(Rule("r", "amount + 1.0", "alert", reason="x"))
    Traceback (most recent call last):
    ...
    stream.core.rules.RuleError: rule 'r': the expression must be a bool (true when the rule hits), it gives a double
    >>> compile_rule(Rule("r", "amout > 3", "alert", reason="x"))
    Traceback (most recent call last):
    ...
    stream.core.rules.RuleError: rule 'r': unknown variable 'amout' (docs/rules.md lists them)
    """
    check_record(rule)
    where = f"rule {rule.id!r}"
    expression = rule.expression
    if not expression.strip():
        raise RuleError(f"{where}: empty expression")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise RuleError(f"{where}: expression of {len(expression)} characters, over the {MAX_EXPRESSION_CHARS} allowed")
    if _nesting(expression) > MAX_NESTING:
        raise RuleError(f"{where}: brackets nested deeper than {MAX_NESTING}")
    try:
        program = cel.compile(expression)
        variables = set(program.variables())
        functions = set(program.functions())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the Rust parser's panics are BaseExceptions
        detail = str(exc)
        at = detail.find("ERROR: <input>:")
        detail = detail[at + len("ERROR: <input>:"):] if at >= 0 else detail
        raise RuleError(f"{where}: syntax error at line:column {detail.strip()[:400]}") from None
    bound = set(_BOUND.findall(expression))
    unknown = sorted(variables - VARIABLES.keys() - bound - _TYPE_NAMES)
    if unknown:
        raise RuleError(f"{where}: unknown variable {unknown[0]!r} (docs/rules.md lists them)")
    calls = sorted(f for f in functions if f[:1] not in "_@!-" and f not in FUNCTIONS)
    if calls:
        raise RuleError(f"{where}: unknown function {calls[0]!r}")
    read = frozenset(variables & VARIABLES.keys())
    try:
        trial = program.execute(cel.Context({name: VARIABLES[name] for name in read}))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001
        raise RuleError(f"{where}: fails on a zero-valued transaction: {str(exc)[:400]}") from None
    if not isinstance(trial, bool):
        raise RuleError(f"{where}: the expression must be a bool (true when the rule hits), it gives a "
                        f"{_cel_type(trial)}")
    return CompiledRule(rule, program, read, vectorise(expression, VARIABLES))


def _cel_type(value: Any) -> str:
    return {int: "int", float: "double", str: "string", bytes: "bytes", list: "list", dict: "map"}.get(
        type(value), type(value).__name__)


@dataclass
class RuleOutcome:
    """What the rules did to one record."""

    #: ``{rule id: version}`` of every rule evaluated on the record without failing (active and shadow).
    versions: dict[str, int] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)  # active rules that hit
    shadow_hits: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # rules that failed on this record, left out
    tags: list[str] = field(default_factory=list)
    #: ``(rule id, reason)`` of the active alert and block rules that hit, in rule id order.
    reasons: list[tuple[str, str]] = field(default_factory=list)
    actions: set[str] = field(default_factory=set)

    def hit(self, rule: Rule) -> None:
        """Record that ``rule`` hit: in shadow mode only that; active, its action, tag or reason too."""
        if rule.mode == "shadow":
            self.shadow_hits.append(rule.id)
            return
        self.hits.append(rule.id)
        self.actions.add(rule.action)
        if rule.action == "tag":
            self.tags.append(rule.tag)
        elif rule.action in ("alert", "block"):
            self.reasons.append((rule.id, rule.reason))

    def decision(self, model_alert: bool) -> str:
        """``allow`` > ``block`` > ``alert`` (a rule's or the model's) > ``pass``.

        >>> RuleOutcome(actions={"block", "allow"}).decision(True), RuleOutcome(actions={"tag"}).decision(True)
        ('allow', 'alert')
        """
        actions = self.actions
        if "allow" in actions:
            return "allow"
        if "block" in actions:
            return "block"
        return "alert" if model_alert or "alert" in actions else "pass"


_NO_RULES = RuleOutcome()


def _execute(compiled: CompiledRule, context: Any) -> bool | None:
    """The rule on one record through the interpreter; None when it fails there (or gives no bool)."""
    try:
        result = compiled.program.execute(context)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - any failure leaves this rule out for this record only
        return None
    return result if isinstance(result, bool) else None


def _contract_column(transactions: Sequence[Transaction], name: str) -> list[Any]:
    """The values of contract variable ``name`` (``event_time`` is the transaction's ``event_time_ms``)."""
    attribute = "event_time_ms" if name == "event_time" else name
    return [getattr(t, attribute) for t in transactions]


def _columns(transactions: Sequence[Transaction], matrix: Any, names: Sequence[str],
             scores: Sequence[float] | None, wanted: set[str]) -> dict[str, Any]:
    """The batch's columns of the variables in ``wanted`` that have values here, as :mod:`stream.core.rule_vectors`
    reads them; a contract field holding anything but its validated type is left out."""
    at = {name: j for j, name in enumerate(names)}
    columns: dict[str, Any] = {}
    for name in wanted:
        if name in CONTRACT_VARIABLES:
            values = _contract_column(transactions, name)
            kind = type(CONTRACT_VARIABLES[name])
            if not all(type(v) is kind for v in values):  # not as validated: its rules go to the interpreter
                continue
            columns[name] = np.array(values, dtype=object if kind is str else np.float64 if kind is float
                                     else np.int64)
        elif name in at:
            columns[name] = np.asarray(matrix[:, at[name]], dtype=np.float64)
        elif name == "score" and scores is not None:
            columns[name] = np.asarray(scores, dtype=np.float64)
    return columns


class RuleSet:
    """The enabled rules of a worker, compiled; immutable (a change builds a new one).

    Rules that do not compile raise :class:`RuleError` here: callers compile
    each rule as it arrives (:func:`compile_rule`) and keep the good ones.
    """

    def __init__(self, rules: Iterable[Rule | CompiledRule] = ()) -> None:
        compiled = [r if isinstance(r, CompiledRule) else compile_rule(r) for r in rules]
        self.rules: list[CompiledRule] = sorted((r for r in compiled if r.rule.enabled), key=lambda r: r.rule.id)
        self.variables: frozenset[str] = frozenset().union(*(r.variables for r in self.rules))
        #: Seconds the last :meth:`evaluate` took, and its per-rule hit and failure counts.
        self.last_seconds = 0.0
        self.last_hits: dict[str, int] = {}
        self.last_failures: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def versions(self) -> dict[str, int]:
        return {r.rule.id: r.rule.version for r in self.rules}

    def activations(self, transactions: Sequence[Transaction], matrix: Any, names: Sequence[str],
                    scores: Sequence[float] | None = None,
                    components: Mapping[str, Sequence[float]] | None = None) -> list[dict[str, Any]]:
        """Each transaction's variables the rules read: its contract fields, ``matrix[i]``'s columns by ``names``
        (engineered and entity features, as scored), ``score`` and ``components`` when given.

        A variable with no value here (an entity feature of a kind the deployment has not got, the models'
        scores in a backtest without them) is left out: a rule reading it fails on the record, counted.

        >>> import numpy as np
        >>> t = Transaction("t1", "c1", 0, 20.0, country="BR")
        >>> RuleSet([Rule("r", "country == 'BR' && n_1h > 1.0", "tag", tag="x")]).activations(
        ...     [t], np.array([[3.0, 0.5]]), ["n_1h", "n_24h"])
        [{'country': 'BR', 'n_1h': 3.0}]
        """
        n = len(transactions)
        columns: dict[str, list[Any]] = {}
        at = {name: j for j, name in enumerate(names)}
        for name in sorted(self.variables):
            if name in CONTRACT_VARIABLES:
                columns[name] = _contract_column(transactions, name)
            elif name in at:
                columns[name] = matrix[:, at[name]].tolist()
            elif name == "score" and scores is not None:
                columns[name] = list(scores)
            elif name == "components" and components is not None:
                models = list(components)
                columns[name] = [dict(zip(models, row, strict=True)) for row in
                                 zip(*(components[m] for m in models), strict=True)] if models else [{}] * n
        return [{name: column[i] for name, column in columns.items()} for i in range(n)]

    def evaluate_batch(self, transactions: Sequence[Transaction], matrix: Any, names: Sequence[str],
                       scores: Sequence[float] | None = None,
                       components: Mapping[str, Sequence[float]] | None = None) -> list[RuleOutcome]:
        """:meth:`evaluate` of :meth:`activations`, the same outcomes, with the rules that have a NumPy form
        evaluated once over the batch's columns (:mod:`stream.core.rule_vectors`) and only the others record by
        record through the interpreter.

        >>> import numpy as np
        >>> rules = RuleSet([Rule("big", "amount > 500.0", "alert", reason="big"),
        ...                  Rule("seq", "components['sequence'] > 0.9", "tag", tag="seq")])  # map: interpreter
        >>> ts = [Transaction("t1", "c1", 0, 900.0), Transaction("t2", "c1", 0, 5.0)]
        >>> [o.hits for o in rules.evaluate_batch(ts, np.zeros((2, 0)), [], [0.1, 0.2], {"sequence": [0.95, 0.1]})]
        [['big', 'seq'], []]
        """
        started = time.perf_counter()
        n = len(transactions)
        if not self.rules or not n:
            self.last_seconds, self.last_hits, self.last_failures = 0.0, {}, {}
            return [_NO_RULES] * n
        columns = _columns(transactions, matrix, names, scores,
                           {v for r in self.rules if r.vector is not None for v in r.variables})
        hit = np.zeros((len(self.rules), n), dtype=bool)
        failed = np.zeros((len(self.rules), n), dtype=bool)
        slow: list[int] = []
        for k, compiled in enumerate(self.rules):
            if compiled.vector is not None and compiled.variables <= columns.keys():
                hit[k] = compiled.vector(columns, n)
            else:  # no NumPy form, or a variable without a clean column here: the interpreter decides
                slow.append(k)
        if slow:
            reader = RuleSet([self.rules[k] for k in slow])
            for i, activation in enumerate(reader.activations(transactions, matrix, names, scores, components)):
                context = cel.Context({name: activation[name] for name in reader.variables if name in activation})
                for k in slow:
                    result = _execute(self.rules[k], context)
                    if result is None:
                        failed[k, i] = True
                    else:
                        hit[k, i] = result
        hit &= ~failed
        out = self._outcomes(hit, failed)
        self.last_hits = {self.rules[k].rule.id: int(c) for k, c in enumerate(hit.sum(axis=1)) if c}
        self.last_failures = {self.rules[k].rule.id: int(c) for k, c in enumerate(failed.sum(axis=1)) if c}
        self.last_seconds = time.perf_counter() - started
        return out

    def _outcomes(self, hit: npt.NDArray[np.bool_], failed: npt.NDArray[np.bool_]) -> list[RuleOutcome]:
        """One outcome per record (column) from the rules' hits and failures, as :meth:`evaluate` builds them."""
        rules = self.rules
        n = hit.shape[1]
        every = self.versions()  # shared by the records on which no rule failed: read-only from here on
        out = [RuleOutcome(versions=every) for _ in range(n)]
        for i in np.flatnonzero(failed.any(axis=0)).tolist():
            outcome = out[i]
            outcome.versions = {r.rule.id: r.rule.version for k, r in enumerate(rules) if not failed[k, i]}
            outcome.failures = [rules[k].rule.id for k in np.flatnonzero(failed[:, i]).tolist()]
        records, which = np.nonzero(hit.T)  # by record, then by rule (id order)
        for i, k in zip(records.tolist(), which.tolist(), strict=True):
            out[i].hit(rules[k].rule)
        return out

    def evaluate(self, activations: Sequence[Mapping[str, Any]]) -> list[RuleOutcome]:
        """One outcome per activation (its variables by name: :data:`VARIABLES`; more are ignored)."""
        started = time.perf_counter()
        if not self.rules:
            self.last_seconds, self.last_hits, self.last_failures = 0.0, {}, {}
            return [_NO_RULES] * len(activations)
        hits: dict[str, int] = {}
        failures: dict[str, int] = {}
        needed = self.variables
        out = []
        for activation in activations:
            context = cel.Context({name: activation[name] for name in needed if name in activation})
            outcome = RuleOutcome()
            for compiled in self.rules:
                rule = compiled.rule
                hit = _execute(compiled, context)
                if hit is None:
                    outcome.failures.append(rule.id)
                    failures[rule.id] = failures.get(rule.id, 0) + 1
                    continue
                outcome.versions[rule.id] = rule.version
                if not hit:
                    continue
                hits[rule.id] = hits.get(rule.id, 0) + 1
                outcome.hit(rule)
            out.append(outcome)
        self.last_hits, self.last_failures = hits, failures
        self.last_seconds = time.perf_counter() - started
        return out
