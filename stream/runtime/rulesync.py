"""Every worker follows the rules topic and scores each micro-batch with the rules read so far.

The rules topic (``FRAUDSTREAM_TOPIC_RULES``, one partition, compacted; key =
rule id, a tombstone deletes) is written by ``fraudstream rules``. Each worker
reads it with its own group-less consumer, as :mod:`stream.runtime.modelsync`
reads the model topic: at start the whole topic, then every new record. Each
change builds a new :class:`~stream.core.rules.RuleSet` and puts it on the
engine; the score agent takes it at the start of its next micro-batch, so a
rule applies from the next batch on every worker, without a restart.

A record that does not decode or compile (written by hand, or by a newer
release) is refused whole: logged, counted (``rules_refused``) and reported on
the ops topic (``rule_refused``); the rule's previous version, if any, stays.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from stream.core.rules import CompiledRule, RuleError, RuleSet, compile_rule, decode_rule
from stream.kafka.follow import follow_topic, wait_read

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["RuleSync"]

log = logging.getLogger("fraudstream.rules")


class RuleSync:
    """Follows ``settings.topic_rules``; ``ready`` is set once the backlog is read."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready = asyncio.Event()
        self.compiled: dict[str, CompiledRule] = {}

    def apply(self, key: bytes | None, value: bytes | None, offset: int) -> bool:
        """Take one rules-topic record; False when it is refused (the rule's previous version stays)."""
        engine = self.engine
        rule_id = (key or b"").decode("utf-8", "replace")
        if value is None:
            if self.compiled.pop(rule_id, None) is not None:
                log.info("rule %s deleted", rule_id)
                self._rebuild()
            return True
        try:
            rule = decode_rule(value)
            if rule.id != rule_id:
                raise RuleError(f"rule {rule.id!r} is keyed {rule_id!r}; the key must be the rule id")
            compiled = compile_rule(rule)
        except RuleError as exc:
            engine.stats.rules_refused += 1
            log.error("REFUSED rule record %r at %s offset %d: %s", rule_id, engine.settings.topic_rules, offset, exc)
            self._ops({"type": "rule_refused", "rule": rule_id, "offset": offset, "reason": str(exc)})
            return False
        self.compiled[rule_id] = compiled
        log.info("rule %s v%d %s (%s, %s): %s", rule.id, rule.version, "enabled" if rule.enabled else "disabled",
                 rule.action, rule.mode, rule.expression)
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        rules = RuleSet(self.compiled.values())
        self.engine.rules = rules
        self.engine.stats.rules_loaded = len(rules)

    def _ops(self, record: dict[str, Any]) -> None:
        asyncio.ensure_future(self.engine.send_ops("rules", record))  # apply() is not async

    async def run(self) -> None:
        """The worker task: read the backlog, set ``ready``, then follow."""
        settings = self.engine.settings
        if self.engine.topics.rules is not None:
            await self.engine.topics.rules.maybe_declare()  # compacted, one partition, before anyone auto-creates it

        def caught_up() -> None:
            self.ready.set()
            log.info("rules read: %d enabled of %d", len(self.engine.rules), len(self.compiled))

        def apply(msg: Any) -> None:
            self.apply(msg.key, msg.value, msg.offset)

        try:
            await follow_topic(settings, settings.topic_rules, apply, caught_up, apply)
        finally:
            self.ready.set()

    async def wait_ready(self) -> None:
        """Wait (bounded) for the rules backlog, so a new worker starts with the rules in force."""
        await wait_read(self.ready, self.engine.settings.model_sync_timeout_s, "rules topic",
                        "scoring without rules until it is")
