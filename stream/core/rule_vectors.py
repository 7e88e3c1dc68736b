"""The common shapes of rules, evaluated over a whole micro-batch with NumPy instead of record by record.

The CEL interpreter (:mod:`stream.core.rules`) costs about half a microsecond
per rule and record, most of it crossing into Rust and converting the record's
values: a hundred rules cost more than the rest of scoring. Most rules a fraud
team writes are comparisons of a field with a constant joined by ``&&`` and
``||`` (``amount > 500.0 && country in ['BR', 'NG']``,
``mcc.startsWith('57')``). :func:`vectorise` turns such an expression into
one NumPy operation per node over the batch's columns, and gives up (None) on
anything outside that subset, which then runs on the interpreter as before.

The subset is chosen so that it cannot disagree with CEL: no operation in it
can fail (no division, no integer arithmetic that could overflow, no map or
list access, no string escapes), arithmetic takes doubles only, and a
comparison takes operands of one type (``string`` with ``string``) or numbers
(``amount > 500``: CEL compares an ``int`` and a ``double`` as numbers; an
integer constant beyond 2**53, not exact as a double, is left to the
interpreter). A test holds the two to the same answers on generated rules
and records (``tests/stream/core/test_rule_vectors.py``).

Grammar (CEL's precedence)::

    or     := and ('||' and)*
    and    := rel ('&&' rel)*
    rel    := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum | 'in' '[' literal (',' literal)* ']')*
    sum    := prod (('+' | '-') prod)*          double only
    prod   := unary ('*' unary)*                double only
    unary  := '!' unary | '-' unary | member
    member := primary ('.' ('startsWith' | 'endsWith' | 'contains') '(' string ')')*
    primary:= number | string | 'true' | 'false' | variable | '(' or ')'

Example:
    >>> import numpy as np
    >>> f = vectorise("amount > 500.0 && country in ['BR', 'NG']", {"amount": 0.0, "country": ""})
    >>> f({"amount": np.array([900.0, 900.0, 10.0]), "country": np.array(["BR", "FR", "NG"], dtype=object)}, 3)
    array([ True, False, False])
    >>> vectorise("amount / 2.0 > 500.0", {"amount": 0.0}) is None  # division: left to the interpreter
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Columns", "VectorRule", "vectorise"]

#: A micro-batch's variables by name: float64 arrays (double), int64 arrays (int), object arrays of str (string).
Columns = Mapping[str, Any]
#: A vectorised rule: columns and the batch size in, one bool per record out.
VectorRule = Callable[[Columns, int], npt.NDArray[np.bool_]]

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<double>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>\d+)(?![\w.])
  | (?P<string>'[^'\\\n]*'|"[^"\\\n]*")
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*()\[\],.])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)
_CALLS = {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal}
_ORDERED = ("double", "int", "string")  # types '<' and friends take
_NUMBERS = ("double", "int")
#: Largest integer compared with a double here: every one up to it is exact as a float64, as CEL compares them.
_EXACT = 2**53

Node = tuple[str, Callable[[Columns], Any]]  # (CEL type, evaluation over the columns: an array or a scalar)


class _Unsupported(Exception):
    """Outside the subset: the interpreter evaluates it."""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float):
        return "double"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    raise _Unsupported(type(value).__name__)


def _tokens(expression: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(expression):
        m = _TOKEN.match(expression, at)
        if m is None:
            raise _Unsupported(expression[at:at + 10])
        at = m.end()
        if m.lastgroup != "space":
            out.append((str(m.lastgroup), m.group()))
    return out


class _Parser:
    def __init__(self, expression: str, variables: Mapping[str, Any]) -> None:
        self.tokens = _tokens(expression)
        self.at = 0
        self.variables = variables

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens) or (expected is not None and self.tokens[self.at][1] != expected):
            raise _Unsupported(f"expected {expected}")
        self.at += 1
        return self.tokens[self.at - 1]

    def parse(self) -> Node:
        node = self.disjunction()
        if self.at != len(self.tokens):
            raise _Unsupported("trailing tokens")
        return node

    def _logic(self, op: str, operand: Callable[[], Node], combine: Callable[[Any, Any], Any]) -> Node:
        kind, left = operand()
        while self.peek() == op:
            self.take()
            right_kind, right = operand()
            if kind != "bool" or right_kind != "bool":
                raise _Unsupported(f"{op} of {kind} and {right_kind}")
            left = _binary(combine, left, right)
        return kind, left

    def disjunction(self) -> Node:
        return self._logic("||", self.conjunction, np.logical_or)

    def conjunction(self) -> Node:
        return self._logic("&&", self.relation, np.logical_and)

    def relation(self) -> Node:
        kind, left = self.sum()
        while (op := self.peek()) in _COMPARE or op == "in":
            self.take()
            if op == "in":
                values = self.literal_list(kind)
                left = _isin(left, values)
            else:
                right_kind, right = self.sum()
                numbers = kind in _NUMBERS and right_kind in _NUMBERS  # CEL compares int and double as numbers
                if (right_kind != kind and not numbers) or (op not in ("==", "!=") and kind not in _ORDERED):
                    raise _Unsupported(f"{kind} {op} {right_kind}")
                left = _binary(_COMPARE[op], left, right)
            kind = "bool"
        return kind, left

    def literal_list(self, kind: str) -> list[Any]:
        self.take("[")
        values = [self.literal(kind)]
        while self.peek() == ",":
            self.take()
            values.append(self.literal(kind))
        self.take("]")
        return values

    def literal(self, kind: str) -> Any:
        negative = self.peek() == "-"
        if negative:
            self.take()
        token_kind, text = self.take()
        parse: dict[str, Callable[[str], Any]] = {"double": float, "int": int, "string": lambda s: s[1:-1]}
        value = _exact(parse.get(token_kind, _refuse)(text))
        if (_kind(value) != kind and not {kind, _kind(value)} <= set(_NUMBERS)) or (negative and kind == "string"):
            raise _Unsupported(f"{kind} in a list of {_kind(value)}")
        return -value if negative else value

    def sum(self) -> Node:
        kind, left = self.product()
        while (op := self.peek()) in ("+", "-"):
            self.take()
            right_kind, right = self.product()
            if kind != "double" or right_kind != "double":
                raise _Unsupported(f"{kind} {op} {right_kind}")
            f = np.add if op == "+" else np.subtract
            left = _binary(f, left, right)
        return kind, left

    def product(self) -> Node:
        kind, left = self.unary()
        while self.peek() == "*":
            self.take()
            right_kind, right = self.unary()
            if kind != "double" or right_kind != "double":
                raise _Unsupported(f"{kind} * {right_kind}")
            left = _binary(np.multiply, left, right)
        return kind, left

    def unary(self) -> Node:
        op = self.peek()
        if op in ("!", "-"):
            self.take()
            kind, operand = self.unary()
            if op == "!" and kind == "bool":
                return kind, _unary(np.logical_not, operand)
            if op == "-" and kind == "double":
                return kind, _unary(np.negative, operand)
            raise _Unsupported(f"{op}{kind}")  # -int could overflow (-(-2**63))
        return self.member()

    def member(self) -> Node:
        kind, node = self.primary()
        while self.peek() == ".":
            self.take()
            _, method = self.take()
            call = _CALLS.get(method)
            self.take("(")
            token_kind, text = self.take()
            self.take(")")
            if call is None or kind != "string" or token_kind != "string":
                raise _Unsupported(f"{kind}.{method}")
            node = _call(node, call, text[1:-1])
            kind = "bool"
        return kind, node

    def primary(self) -> Node:
        token_kind, text = self.take()
        if text == "(":
            node = self.disjunction()
            self.take(")")
            return node
        if token_kind == "name":
            if text in ("true", "false"):
                return "bool", _const(text == "true")
            if text not in self.variables:
                raise _Unsupported(text)
            return _kind(self.variables[text]), _column(text)
        if token_kind == "double":
            return "double", _const(float(text))
        if token_kind == "int":
            return "int", _const(_exact(int(text)))
        if token_kind == "string":
            return "string", _const(text[1:-1])
        raise _Unsupported(text)


Evaluate = Callable[[Columns], Any]


def _const(value: Any) -> Evaluate:
    return lambda columns: value


def _column(name: str) -> Evaluate:
    return lambda columns: columns[name]


def _unary(f: Callable[[Any], Any], a: Evaluate) -> Evaluate:
    return lambda columns: f(a(columns))


def _binary(f: Callable[[Any, Any], Any], a: Evaluate, b: Evaluate) -> Evaluate:
    return lambda columns: f(a(columns), b(columns))


def _isin(a: Evaluate, values: list[Any]) -> Evaluate:
    return lambda columns: np.isin(a(columns), values)


def _call(a: Evaluate, method: Callable[[str, str], bool], arg: str) -> Evaluate:
    return lambda columns: _strings(a(columns), method, arg)


def _exact(value: Any) -> Any:
    if isinstance(value, int) and abs(value) > _EXACT:
        raise _Unsupported(f"{value}: not exact as a double")
    return value


def _refuse(text: str) -> Any:
    raise _Unsupported(text)


def _strings(values: Any, method: Callable[[str, str], bool], arg: str) -> Any:
    if isinstance(values, str):
        return method(values, arg)
    return np.fromiter((method(v, arg) for v in values), dtype=bool, count=len(values))


def vectorise(expression: str, variables: Mapping[str, Any]) -> VectorRule | None:
    """The expression as one NumPy evaluation per micro-batch, or None when it is outside the subset.

    ``variables``: every variable a rule may read, with a value of its type
    (:data:`stream.core.rules.VARIABLES`). The expression must already be a
    compiled rule (the interpreter accepted it); this only decides whether
    the fast path can take it.
    """
    try:
        kind, node = _Parser(expression, variables).parse()
    except (_Unsupported, ValueError, OverflowError):
        return None
    if kind != "bool":
        return None

    def evaluate(columns: Columns, n: int) -> npt.NDArray[np.bool_]:
        return np.broadcast_to(np.asarray(node(columns), dtype=bool), (n,))

    return evaluate
