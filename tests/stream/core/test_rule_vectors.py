"""Rules in their NumPy form give what the CEL interpreter gives, record for record, or are left to it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.contracts.records import Transaction
from stream.core.rule_vectors import vectorise
from stream.core.rules import VARIABLES, Rule, RuleError, RuleSet, compile_rule

DOUBLES = ["0.0", "2.5", "500.0", "-1.0", "1e3"]
AMOUNTS = [0.0, 2.5, 500.0, 1000.0, 7.25]
STRINGS = ["BR", "FR", "", "57", "5750"]

double_var = st.sampled_from(["amount", "n_1h", "score"])
compare = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
atom = st.one_of(
    st.builds(lambda v, op, lit: f"{v} {op} {lit}", double_var, compare, st.sampled_from(DOUBLES)),
    st.builds(lambda v, op, lit: f"{v} {op} {lit}", double_var, compare, st.sampled_from(["0", "500", "-1"])),  # mixed
    st.builds(lambda v, lits: f"{v} in [{', '.join(lits)}]", double_var,
              st.lists(st.sampled_from(["500", "2.5", "0", "-1.0"]), min_size=1, max_size=3)),
    st.builds(lambda v, op, lit: f"{v} {op} '{lit}'", st.sampled_from(["country", "mcc"]),
              st.sampled_from(["==", "!=", "<", ">="]), st.sampled_from(STRINGS)),
    st.builds(lambda v, lits: f"{v} in [{', '.join(repr(x) for x in lits)}]", st.sampled_from(["country", "mcc"]),
              st.lists(st.sampled_from(STRINGS), min_size=1, max_size=3)),
    st.builds(lambda v, m, lit: f"{v}.{m}('{lit}')", st.sampled_from(["country", "mcc"]),
              st.sampled_from(["startsWith", "endsWith", "contains"]), st.sampled_from(STRINGS)),
    st.builds(lambda op, lit: f"event_time {op} {lit}", compare, st.sampled_from(["0", "5", "1000", "5.0", "999.5"])),
    st.builds(lambda op, lit: f"amount * 2.0 - n_1h {op} {lit}", compare, st.sampled_from(DOUBLES)),
    st.builds(lambda lit: f"components['sequence'] > {lit}", st.sampled_from(DOUBLES)),  # a map: interpreter
    st.builds(lambda lit: f"device_n_1h > {lit}", st.sampled_from(DOUBLES)),  # a kind not profiled: fails
    st.sampled_from(["true", "false", "-amount < -1.0", "!(amount > 1.0) == true"]),
)
expressions = st.recursive(atom, lambda inner: st.one_of(
    st.builds(lambda a, b: f"({a}) && ({b})", inner, inner),
    st.builds(lambda a, b: f"({a}) || ({b})", inner, inner),
    st.builds(lambda a: f"!({a})", inner)), max_leaves=6)
rules = st.lists(st.tuples(expressions, st.sampled_from(["alert", "block", "allow", "tag"]),
                           st.sampled_from(["active", "shadow"])), min_size=1, max_size=6)
records = st.lists(st.tuples(st.sampled_from(AMOUNTS), st.sampled_from(STRINGS), st.sampled_from(STRINGS),
                             st.sampled_from([0, 5, 1000]), st.sampled_from([0.0, 2.5, -1.0]),
                             st.sampled_from([0.0, 500.0, 0.9])), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(rules, records)
def test_a_batch_gets_the_interpreters_outcomes_record_for_record(specs, rows) -> None:
    compiled = []
    for j, (expression, action, mode) in enumerate(specs):
        try:
            compiled.append(compile_rule(Rule(f"r{j}", expression, action, reason=f"why {j}", tag=f"t{j}",
                                              mode=mode)))
        except RuleError:  # the interpreter refuses it (a type error on a zero-valued record): not a rule
            continue
    rule_set = RuleSet(compiled)
    transactions = [Transaction(f"t{i}", "c", event_time, amount, country=country, mcc=mcc)
                    for i, (amount, country, mcc, event_time, _, _) in enumerate(rows)]
    matrix = np.array([[n_1h] for *_, n_1h, _ in rows])
    scores = [score for *_, score in rows]
    components = {"sequence": [score for *_, score in rows]}
    reference = rule_set.evaluate(rule_set.activations(transactions, matrix, ["n_1h"], scores, components))
    assert rule_set.evaluate_batch(transactions, matrix, ["n_1h"], scores, components) == reference


OUTSIDE = ["amount * 2 > 1.0", "amount / 2.0 > 1.0", "amount > 9007199254740993", "event_time + 1 > 5", "components['sequence'] > 0.5",
           "country == 'B\\'R'", "size(country) > 1", "amount > 1.0 ? true : false", "mcc.matches('5.*')",
           "country == null", "123u > 5u", "country + 'x' == 'BRx'"]
INSIDE = ["amount > 500.0", "amount >= 500", "event_time == 1000.0", "amount in [500, 2.5]", "-amount <= -1.5", "country in ['BR', 'NG'] || mcc.startsWith('57')",
          "(amount * 2.0 + n_1h > 3.0) == true", "event_time >= 1000", "!(country != 'BR')"]


def test_outside_the_subset_is_left_to_the_interpreter() -> None:
    for expression in OUTSIDE:
        assert vectorise(expression, VARIABLES) is None, expression
    for expression in INSIDE:
        assert vectorise(expression, VARIABLES) is not None, expression


def test_both_paths_in_one_batch_give_the_interpreters_outcomes() -> None:
    """The rules of both lists that compile, side by side, over every combination of the record values."""
    compiled = []
    for j, expression in enumerate(OUTSIDE + INSIDE):
        try:
            compiled.append(compile_rule(Rule(f"r{j:02d}", expression, "alert", reason=f"why {j}")))
        except RuleError:
            continue
    assert {c.vector is None for c in compiled} == {True, False}
    rule_set = RuleSet(compiled)
    rows = [(amount, country, mcc) for amount in AMOUNTS for country in STRINGS for mcc in STRINGS]
    transactions = [Transaction(f"t{i}", "c", 1000 * (i % 2), amount, country=country, mcc=mcc)
                    for i, (amount, country, mcc) in enumerate(rows)]
    matrix = np.arange(len(rows), dtype=np.float64).reshape(-1, 1) % 4
    scores, components = [0.5] * len(rows), {"sequence": [0.7] * len(rows)}
    batch = rule_set.evaluate_batch(transactions, matrix, ["n_1h"], scores, components)
    assert batch == rule_set.evaluate(rule_set.activations(transactions, matrix, ["n_1h"], scores, components))
    assert len({tuple(o.hits) for o in batch}) > 5  # the records differ in which rules hit
