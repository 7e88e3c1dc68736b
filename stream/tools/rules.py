"""``fraudstream rules``: add, list, enable, disable, delete and backtest the dynamic rules.

Writes go to the compacted rules topic (``FRAUDSTREAM_TOPIC_RULES``), keyed by
rule id; every worker applies them from its next micro-batch
(:mod:`stream.runtime.rulesync`). A rule is compiled here first, as the
workers will compile it: one that does not compile is refused with the
reason (exit code 2) and never reaches the topic. Each change writes the
rule's next version; ``delete`` writes a tombstone.

``rules test EXPR --history FILE [--scores FILE]`` backtests an expression on a
labelled history (:mod:`replay.backtest`) and needs no broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from stream.contracts.settings import Settings
from stream.core.rules import ACTIONS, Rule, RuleError, check_record, compile_rule, decode_rule, encode_rule

__all__ = ["cli", "read_rules", "write_rule", "write_rules"]


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "bootstrap_servers", None):
        settings = settings.replace(bootstrap_servers=args.bootstrap_servers)
    return settings


def _ensure_topic(settings: Settings) -> None:
    """Create the rules topic (one partition, compacted) if it is missing."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from stream.kafka import clients

    admin = clients.admin(settings, client_id="fraudstream-rules")
    try:
        if settings.topic_rules not in set(admin.list_topics()):
            try:
                admin.create_topics([NewTopic(settings.topic_rules, 1, settings.replication_factor,
                                              topic_configs={"cleanup.policy": "compact"})])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def read_rules(settings: Settings, timeout_s: float = 30.0) -> dict[str, Rule | str]:
    """The rules on the topic now, by id: the newest record of each (a refused record as its error text)."""
    from kafka import TopicPartition

    from stream.kafka import clients
    from stream.kafka.security import client_kwargs
    from stream.patches.embedded_end_offsets import true_end_offsets

    _ensure_topic(settings)
    consumer = clients.consumer(settings, client_id="fraudstream-rules", enable_auto_commit=False, group_id=None)
    try:
        tp = TopicPartition(settings.topic_rules, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        if settings.embedded_broker_compat:
            end = asyncio.run(true_end_offsets(settings.bootstrap_servers, {tp: end},
                                               client=client_kwargs(settings)))[tp]
        rules: dict[str, Rule | str] = {}
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {consumer.position(tp)} of {end} records of {settings.topic_rules}")
            for msg in consumer.poll(timeout_ms=1000).get(tp, []):
                if msg.offset >= end:
                    continue
                rule_id = (msg.key or b"").decode("utf-8", "replace")
                if msg.value is None:
                    rules.pop(rule_id, None)
                    continue
                try:
                    rules[rule_id] = decode_rule(msg.value)
                except RuleError as exc:
                    rules[rule_id] = f"refused: {exc}"
        return rules
    finally:
        consumer.close()


def write_rule(settings: Settings, rule_id: str, rule: Rule | None) -> None:
    """Write ``rule`` (None: a tombstone) and wait for the broker's ack."""
    from stream.kafka import clients

    _ensure_topic(settings)
    producer = clients.producer(settings, client_id="fraudstream-rules", acks="all")
    try:
        producer.send(settings.topic_rules, key=rule_id.encode(),
                      value=None if rule is None else encode_rule(rule)).get(timeout=30)
    finally:
        producer.close()


def write_rules(settings: Settings, rules: list[Rule]) -> None:
    """Write ``rules`` (each compiled first) in one go and wait for the broker's acks (the bench's rule book)."""
    from stream.kafka import clients

    for rule in rules:
        compile_rule(rule)
    _ensure_topic(settings)
    producer = clients.producer(settings, client_id="fraudstream-rules", acks="all")
    try:
        sent = [producer.send(settings.topic_rules, key=r.id.encode(), value=encode_rule(r)) for r in rules]
        for future in sent:
            future.get(timeout=30)
    finally:
        producer.close()


def _current(settings: Settings, rule_id: str) -> Rule:
    found = read_rules(settings).get(rule_id)
    if found is None:
        raise RuleError(f"no rule {rule_id!r} on {settings.topic_rules}")
    if isinstance(found, str):
        raise RuleError(f"rule {rule_id!r} on {settings.topic_rules} is {found}; add it again with --replace")
    return found


def _add(args: argparse.Namespace) -> int:
    rule = Rule(args.id, args.expr, args.action, reason=args.reason, tag=args.tag,
                mode="shadow" if args.shadow else "active", enabled=not args.disabled, author=args.author,
                created_at=int(time.time() * 1000))
    compile_rule(rule)  # refused here, with the reason, before anything is written
    settings = _settings(args)
    existing = read_rules(settings).get(rule.id)
    if existing is not None and not args.replace:
        raise RuleError(f"rule {rule.id!r} exists; give --replace to write a new version of it")
    version = existing.version + 1 if isinstance(existing, Rule) else 1
    write_rule(settings, rule.id, rule.replace(version=version))
    print(f"rule {rule.id} v{version} written to {settings.topic_rules} ({rule.action}, {rule.mode}, "
          f"{'enabled' if rule.enabled else 'disabled'})")
    return 0


def _switch(args: argparse.Namespace, enabled: bool) -> int:
    settings = _settings(args)
    rule = _current(settings, args.id)
    new = rule.replace(enabled=enabled, version=rule.version + 1, created_at=int(time.time() * 1000))
    check_record(new)
    write_rule(settings, rule.id, new)
    print(f"rule {rule.id} v{new.version} {'enabled' if enabled else 'disabled'}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.id not in read_rules(settings):
        raise RuleError(f"no rule {args.id!r} on {settings.topic_rules}")
    write_rule(settings, args.id, None)
    print(f"rule {args.id} deleted (tombstone written)")
    return 0


def _list(args: argparse.Namespace) -> int:
    rules = read_rules(_settings(args))
    if args.json:
        for rule_id, rule in sorted(rules.items()):
            print(json.dumps({"id": rule_id, "refused": rule} if isinstance(rule, str) else
                             json.loads(encode_rule(rule))))
        return 0
    for rule_id, rule in sorted(rules.items()):
        if isinstance(rule, str):
            print(f"{rule_id}\t{rule}")
            continue
        state = ("enabled" if rule.enabled else "disabled") + (", shadow" if rule.mode == "shadow" else "")
        what = rule.reason or rule.tag
        print(f"{rule.id}\tv{rule.version}\t{rule.action}\t{state}\t{rule.expression}" + (f"\t# {what}" if what else ""))
    if not rules:
        print("no rules")
    return 0


def _test(args: argparse.Namespace) -> int:
    from replay.backtest import backtest, format_backtest
    from replay.generate import read
    from replay.inputs import load_scores_jsonl

    try:
        table = read(args.history)
    except (OSError, ValueError) as exc:
        raise RuleError(f"cannot read the history {args.history}: {exc}") from None
    scores = None
    if args.scores:
        scores = {str(r["transaction_id"]): r for r in load_scores_jsonl(args.scores)}
    result = backtest(args.expr, table, scores, history_length=_settings(args).history_length)
    print(json.dumps(result.to_dict()) if args.json else format_backtest(result))
    return 0


def cli(argv: Sequence[str]) -> int:
    """``fraudstream rules ...``; exit code 2 for invalid input (a rule refused, an unknown rule id)."""
    parser = argparse.ArgumentParser(prog="fraudstream rules", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", help="override FRAUDSTREAM_BOOTSTRAP_SERVERS")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("add", help="compile a rule and write it (refused with the reason if it does not compile)")
    p.add_argument("--id", required=True)
    p.add_argument("--expr", required=True, help="a CEL expression, true when the rule hits (docs/rules.md)")
    p.add_argument("--action", required=True, choices=ACTIONS)
    p.add_argument("--reason", default="", help="the alert's text (alert and block rules)")
    p.add_argument("--tag", default="", help="the tag a tag rule adds")
    p.add_argument("--shadow", action="store_true", help="record hits on the score record, act on nothing")
    p.add_argument("--disabled", action="store_true", help="write it disabled")
    p.add_argument("--replace", action="store_true", help="write a new version of an existing rule")
    p.add_argument("--author", default="")
    p.set_defaults(func=_add)
    p = sub.add_parser("list", help="the rules on the topic")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)
    for name, enabled in (("enable", True), ("disable", False)):
        p = sub.add_parser(name, help=f"{name} a rule (writes its next version)")
        p.add_argument("id")
        p.set_defaults(func=lambda a, e=enabled: _switch(a, e))
    p = sub.add_parser("delete", help="delete a rule (a tombstone)")
    p.add_argument("id")
    p.set_defaults(func=_delete)
    p = sub.add_parser("test", help="backtest an expression on a labelled history (no broker)")
    p.add_argument("expr")
    p.add_argument("--history", required=True, help="a history file as `fraudstream generate` writes (.csv, .parquet)")
    p.add_argument("--scores", default="", help="the engine's score records (JSONL) for score, components, entity "
                                                "features and the overlap with the models' alerts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_test)
    args = parser.parse_args(list(argv))
    try:
        return int(args.func(args))
    except RuleError as exc:
        print(f"fraudstream rules: {exc}", file=sys.stderr)
        return 2
