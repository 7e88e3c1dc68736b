"""Rules: records, compilation (what is refused and why), evaluation over a batch, precedence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.rules import (
    MAX_EXPRESSION_CHARS,
    VARIABLES,
    Rule,
    RuleError,
    RuleOutcome,
    RuleSet,
    compile_rule,
    decode_rule,
    encode_rule,
)

BR = {"amount": 950.0, "country": "BR", "score": 0.2, "components": {"online": 0.2}, "is_ecom": 1.0, "mcc": "5732"}
FR = {"amount": 12.0, "country": "FR", "score": 0.9, "components": {"online": 0.9}, "is_ecom": 0.0, "mcc": "5411"}


def alert(rid: str, expr: str, **kw: object) -> Rule:
    return Rule(rid, expr, kw.pop("action", "alert"), reason=str(kw.pop("reason", f"{rid} hit")), **kw)  # type: ignore[arg-type]


def test_a_rule_round_trips_through_its_topic_value() -> None:
    rule = Rule("r-1", "amount > 500.0", "block", reason="big", tag="", mode="shadow", enabled=False, version=7,
                author="ana", created_at=1_800_000_000_000)
    assert decode_rule(encode_rule(rule)) == rule


@pytest.mark.parametrize("value,message", [
    (b"{nope", "not JSON"),
    (b"[1]", "JSON list, not an object"),
    (b'{"id": "r", "expression": "true", "action": "alert"}', "schema None is not 1"),
    (b'{"schema": 1, "id": "r", "action": "alert"}', "lacks 'expression'"),
    (b'{"schema": 1, "id": "r", "expression": "true", "action": "alert", "reason": "x", "x": 1}', "unknown fields"),
    (b'{"schema": 1, "id": "r", "expression": "true", "action": "alert", "reason": "x", "version": true}',
     "'version' is bool, not int"),
    (b'{"schema": 1, "id": "r", "expression": "true", "action": "tag"}', "a tag rule needs a tag"),
    (b'{"schema": 1, "id": "r", "expression": "true", "action": "block"}', "needs a reason"),
    (b'{"schema": 1, "id": "r r", "expression": "true", "action": "allow"}', "rule id 'r r' must be"),
    (b'{"schema": 1, "id": "r", "expression": "true", "action": "allow", "mode": "dry"}', "mode 'dry'"),
])
def test_a_bad_record_is_refused_with_what_is_wrong(value: bytes, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        decode_rule(value)


@pytest.mark.parametrize("expr,message", [
    ("amount >", "syntax error at line:column 1:9"),
    ("amout > 3", "unknown variable 'amout'"),
    ("eval('1')", "unknown function 'eval'"),
    ("amount.__class__ == 1", "fails on a zero-valued transaction"),
    ("amount * 2.0", "must be a bool .* gives a double"),
    ("country", "must be a bool .* gives a string"),
    ("country > 3", "fails on a zero-valued transaction: No such overload"),
    ("   ", "empty expression"),
    ("true || " * 200 + "true", f"over the {MAX_EXPRESSION_CHARS} allowed"),
    ("(" * 17 + "true" + ")" * 17, "nested deeper than 16"),
])
def test_compile_refuses_with_the_reason(expr: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        compile_rule(alert("r", expr))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert compile_rule(alert("r", "country == '" + "(" * 40 + "'")).variables == {"country"}


@pytest.mark.parametrize("expr", [
    "amount > 500 && country in ['BR', 'NG']",
    "mcc.startsWith('57') && is_new_country == 1.0",
    "['BR', 'NG'].exists(c, c == country)",
    "has(components.sequence) && components.sequence > 0.9",
    "score >= 0.5 || merchant_fraud_7d > 2.0",
    "event_time % 86400000 < 6 * 3600000",  # before 06:00 UTC
    "type(amount) == double",
])
def test_useful_expressions_compile(expr: str) -> None:
    assert compile_rule(alert("r", expr)).variables <= VARIABLES.keys()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet="()[]{}'\"!&|<>=+-*/%.,? ab01_", max_size=120))
def test_any_string_gives_a_rule_or_a_rule_error(expr: str) -> None:
    try:
        compiled = compile_rule(alert("r", expr))
    except RuleError as exc:
        assert str(exc).startswith("rule 'r': ")
    else:
        assert compiled.rule.expression == expr


def test_hits_versions_and_shadow_per_record() -> None:
    rules = RuleSet([alert("big", "amount > 500.0", version=3), alert("sh", "country == 'FR'", mode="shadow"),
                     Rule("ecom", "is_ecom == 1.0", "tag", tag="ecom"), alert("off", "true", enabled=False)])
    br, fr = rules.evaluate([BR, FR])
    assert (br.hits, br.shadow_hits, br.tags, br.reasons) == (["big", "ecom"], [], ["ecom"], [("big", "big hit")])
    assert br.versions == {"big": 3, "ecom": 1, "sh": 1}  # the disabled rule is not applied
    assert (fr.hits, fr.shadow_hits, fr.actions) == ([], ["sh"], set())
    assert fr.decision(model_alert=False) == "pass"  # a shadow hit decides nothing
    assert rules.last_hits == {"big": 1, "ecom": 1, "sh": 1}


def test_a_rule_failing_on_one_record_is_left_out_for_that_record_only() -> None:
    rules = RuleSet([alert("seq", "components.sequence > 0.5"), alert("big", "amount > 500.0")])
    with_seq = {**BR, "components": {"online": 0.2, "sequence": 0.7}}
    failed, ok = rules.evaluate([BR, with_seq])
    assert (failed.failures, failed.hits, failed.versions) == (["seq"], ["big"], {"big": 1})
    assert (ok.failures, ok.hits) == ([], ["big", "seq"])
    assert rules.last_failures == {"seq": 1}


def test_a_missing_variable_is_a_failure_not_an_exception() -> None:
    outcome = RuleSet([alert("m", "merchant_fraud_7d > 1.0")]).evaluate([BR])[0]
    assert outcome.failures == ["m"] and outcome.decision(model_alert=False) == "pass"


@pytest.mark.parametrize("actions,model_alert,decision", [
    (set(), False, "pass"),
    (set(), True, "alert"),
    ({"tag"}, False, "pass"),
    ({"alert"}, False, "alert"),  # a rule's alert needs no model threshold
    ({"block"}, False, "block"),
    ({"block", "alert"}, True, "block"),
    ({"allow"}, True, "allow"),  # allow whitelists: it beats the model's alert...
    ({"allow", "block", "alert"}, True, "allow"),  # ...and every other rule
])
def test_precedence(actions: set[str], model_alert: bool, decision: str) -> None:
    assert RuleOutcome(actions=actions).decision(model_alert) == decision


def test_an_empty_rule_set_costs_nothing_and_decides_nothing() -> None:
    outcomes = RuleSet().evaluate([BR, FR])
    assert [o.decision(False) for o in outcomes] == ["pass", "pass"] and outcomes[0].versions == {}
