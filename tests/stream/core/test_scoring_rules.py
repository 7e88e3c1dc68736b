"""Rules inside the scoring core: the score record names the rules applied, their hits and the decision; alerts."""

from __future__ import annotations

import orjson

from stream.core.rules import Rule, RuleSet
from tests.stream.core.test_scoring import HOUR, T0, Fixed, scores_of, scoring, tx


def alerts_of(batch) -> dict[str, dict]:
    return {r["transaction_id"]: r for r in (orjson.loads(v) for _, v in batch.alerts)}


def test_without_rules_the_record_says_none_applied_and_the_model_decides() -> None:
    batch = scoring(Fixed({"a": 0.9}), threshold=0.5).score([tx("a", "A", T0, 10.0)], {})
    record = scores_of(batch)["a"]
    assert (record["rules"], record["rule_hits"], record["shadow_hits"], record["decision"]) == ({}, [], [], "alert")
    assert "tags" not in record and "rule_errors" not in record


def test_a_rule_alert_needs_no_threshold_and_its_reason_leads_the_alert() -> None:
    core = scoring(Fixed({}), threshold=0.5)  # every model score is 0.01: no model alert
    core.rules = RuleSet([Rule("big-br", "amount > 500.0 && country == 'BR'", "alert", reason="big BR ticket",
                               version=4),
                          Rule("br", "country == 'BR'", "alert", reason="BR", mode="shadow")])
    batch = core.score([tx("a", "A", T0, 900.0, country="BR"), tx("b", "B", T0, 900.0)], {})
    a, b = scores_of(batch)["a"], scores_of(batch)["b"]
    assert (a["decision"], a["rule_hits"], a["shadow_hits"], a["rules"]) == ("alert", ["big-br"], ["br"],
                                                                               {"big-br": 4, "br": 1})
    assert (b["decision"], b["rule_hits"], b["shadow_hits"]) == ("pass", [], [])
    alert = alerts_of(batch)["a"]
    assert list(alerts_of(batch)) == ["a"]
    assert alert["reasons"][0] == {"code": "rule:big-br", "text": "big BR ticket", "weight": 1.0}
    assert (alert["decision"], alert["rule_hits"], alert["score"]) == ("alert", ["big-br"], 0.01)
    assert batch.rule_hits == {"big-br": 1, "br": 1} and "rules" in batch.seconds


def test_block_alerts_and_allow_whitelists_even_a_model_alert() -> None:
    core = scoring(Fixed({"blocked": 0.01, "allowed": 0.99}), threshold=0.5)
    core.rules = RuleSet([Rule("no-ng", "country == 'NG'", "block", reason="NG blocked"),
                          Rule("vip", "card_id == 'VIP'", "allow"),
                          Rule("night", "amount > 0.0", "tag", tag="seen")])
    batch = core.score([tx("blocked", "B", T0, 5.0, country="NG"), tx("allowed", "VIP", T0, 5.0, country="NG")], {})
    blocked, allowed = scores_of(batch)["blocked"], scores_of(batch)["allowed"]
    assert (blocked["decision"], blocked["tags"]) == ("block", ["seen"])
    assert (allowed["decision"], sorted(allowed["rule_hits"])) == ("allow", ["night", "no-ng", "vip"])
    assert list(alerts_of(batch)) == ["blocked"] and alerts_of(batch)["blocked"]["decision"] == "block"


def test_a_rule_failing_on_one_record_scores_it_without_that_rule_and_dead_letters_nothing() -> None:
    core = scoring(threshold=0.5)  # no sequence model: components.sequence is missing on every record
    core.rules = RuleSet([Rule("seq", "components.sequence > 0.5", "block", reason="seq"),
                          Rule("many", "n_1h >= 1.0", "alert", reason="second in the hour")])
    batch = core.score([tx("a1", "A", T0, 10.0), tx("a2", "A", T0 + HOUR // 2, 10.0)], {})
    a1, a2 = scores_of(batch)["a1"], scores_of(batch)["a2"]
    assert batch.dead_letters == [] and len(batch.scored) == 2
    assert (a1["rule_errors"], a1["rules"], a1["decision"]) == (["seq"], {"many": 1}, "pass")
    assert (a2["rule_hits"], a2["decision"]) == (["many"], "alert")  # features as scored: a1 came before it
    assert batch.rule_failures == {"seq": 2}
