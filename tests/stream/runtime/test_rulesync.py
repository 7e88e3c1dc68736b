"""The workers' rules follower, without a broker: what each rules-topic record does to the rules in force."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from stream.contracts.settings import Settings
from stream.core.rules import Rule, RuleSet, encode_rule
from stream.runtime.rulesync import RuleSync
from stream.runtime.stats import Stats


def follower() -> tuple[RuleSync, SimpleNamespace, list[dict]]:
    sent: list[dict] = []

    async def send_ops(source: str, record: dict) -> None:
        sent.append({"source": source, **record})

    engine = SimpleNamespace(settings=Settings(), stats=Stats(), rules=RuleSet(), send_ops=send_ops)
    return RuleSync(engine), engine, sent  # type: ignore[arg-type]


def test_records_add_replace_disable_and_delete_rules() -> None:
    sync, engine, _ = follower()
    v1 = Rule("r", "amount > 1.0", "alert", reason="x")
    assert sync.apply(b"r", encode_rule(v1), 0) and engine.rules.versions() == {"r": 1}
    assert sync.apply(b"r", encode_rule(v1.replace(version=2, enabled=False)), 1)
    assert engine.rules.versions() == {} and engine.stats.rules_loaded == 0
    assert sync.apply(b"r", encode_rule(v1.replace(version=3)), 2) and engine.rules.versions() == {"r": 3}
    assert sync.apply(b"r", None, 3) and engine.rules.versions() == {} and sync.compiled == {}


def test_a_bad_record_is_refused_whole_and_the_previous_version_stays() -> None:
    async def run() -> tuple[bool, bool, list[dict]]:
        sync, engine, sent = follower()
        good = Rule("r", "amount > 1.0", "alert", reason="x")
        sync.apply(b"r", encode_rule(good), 0)
        bad = encode_rule(good.replace(version=2)).replace(b"amount > 1.0", b"amount >")
        refused = sync.apply(b"r", bad, 1)
        rekeyed = sync.apply(b"other", encode_rule(good), 2)  # the key must be the rule id
        await asyncio.sleep(0)  # the ops records are sent from a task
        assert engine.rules.versions() == {"r": 1} and engine.stats.rules_refused == 2
        return refused, rekeyed, sent

    refused, rekeyed, sent = asyncio.run(run())
    assert not refused and not rekeyed
    assert [(s["type"], s["rule"], s["offset"]) for s in sent] == [("rule_refused", "r", 1), ("rule_refused", "other", 2)]
    assert "syntax error" in sent[0]["reason"] and "keyed 'other'" in sent[1]["reason"]
