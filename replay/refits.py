"""Holding a replay where a live engine would have refit its trees (``fraudstream replay --wait-for-refits``).

Live, a day of event time takes a day: the trainer refits the fused score's
trees at each whole ``FRAUDSTREAM_TREES_REFIT_S`` of the labelled
transactions' time (:meth:`stream.core.training.OnlineTraining.step`), the
fit takes seconds, and the next day's transactions are scored by trees that
know the labels received until then. A replay runs a day in seconds; the
trainer then refits only when ``FRAUDSTREAM_TREES_CPU_SHARE`` lets it, so a
set of trees serves several days of the replay and what the replay reports
depends on the machine's speed, not on the model.

With this gate the replay holds right after the first label of a
transaction in a new refit period (the label that makes the trainer pass
the period's start) until every engine it watches has reported, on its ops
topic, either the refit up to that point (``trees_refit``,
``fitted_until_ms``) or that it passed it without one
(``trees_refit_skipped``, ``until_ms``: too few frauds yet, say). A hold
that lasts ``timeout_s`` (a fit that failed, an engine that is not running
or already knows later history) ends with a warning, and that engine is not
waited for again: the replay goes on rather than hang.

Example:
    >>> day = 86_400_000
    >>> gate = RefitGate(refit_ms=day, engines=("ops-a", "ops-b"))
    >>> gate.start(5)  # the first label sent: a transaction of day 0
    >>> gate.holding(day - 1), gate.holding(day), gate.due_at()
    ([], ['ops-a', 'ops-b'], 86400000)
    >>> gate.report("ops-a", day)
    >>> gate.holding(day), gate.holding(2 * day)
    (['ops-b'], ['ops-a', 'ops-b'])
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from stream.contracts.settings import Settings
from stream.kafka.follow import follow_topic

__all__ = ["RefitGate", "follow_refits", "reported_until"]

log = logging.getLogger("fraudstream.replay")


class RefitGate:
    """Which of the watched engines (named by their ops topics) a replay must wait for."""

    def __init__(self, refit_ms: int, engines: Sequence[str], timeout_s: float = 120.0) -> None:
        if refit_ms <= 0:
            raise ValueError(f"refit_ms must be positive, got {refit_ms}")
        self.refit_ms = refit_ms
        self.timeout_s = timeout_s
        #: The latest refit period each engine reported having passed (None: none since the replay began).
        self.reported: dict[str, int | None] = dict.fromkeys(engines)
        #: The refit period of the first label sent: the trainer passes it without a report.
        self.started: int | None = None
        #: Engines not waited for any more (one hold for them timed out).
        self.given_up: set[str] = set()
        self.changed = asyncio.Event()
        #: Holds that ended in a report, and holds given up after ``timeout_s``.
        self.waits = 0
        self.timeouts = 0
        self.waited_s = 0.0

    def start(self, labelled_ms: int) -> None:
        """The first label sent is of a transaction at ``labelled_ms``."""
        if self.started is None:
            self.started = labelled_ms // self.refit_ms * self.refit_ms

    def report(self, engine: str, until_ms: int) -> None:
        """``engine`` reported having passed the refit period that starts at ``until_ms``."""
        last = self.reported.get(engine)
        if engine in self.reported and (last is None or until_ms > last):
            self.reported[engine] = until_ms
            self.changed.set()

    def _passed(self, engine: str) -> int | None:
        reported, started = self.reported[engine], self.started
        if reported is None or started is None:
            return reported if started is None else started
        return max(reported, started)

    def holding(self, labels_up_to_ms: int) -> list[str]:
        """The engines yet to report the refit period of ``labels_up_to_ms`` (the newest labelled transaction sent)."""
        period = labels_up_to_ms // self.refit_ms * self.refit_ms
        return [engine for engine in self.reported
                if engine not in self.given_up and (passed := self._passed(engine)) is not None and period > passed]

    def due_at(self) -> int | None:
        """The smallest ``labels_up_to_ms`` that :meth:`holding` holds at (None: none would)."""
        passed = [p for engine in self.reported if engine not in self.given_up
                  and (p := self._passed(engine)) is not None]
        return min(passed) + self.refit_ms if passed else None

    async def wait(self, labels_up_to_ms: int) -> None:
        """Until no engine is :meth:`holding` the replay, or ``timeout_s`` (then a warning, and on)."""
        if not self.holding(labels_up_to_ms):
            return
        began = time.monotonic()
        deadline = began + self.timeout_s
        while (held := self.holding(labels_up_to_ms)) and (left := deadline - time.monotonic()) > 0:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=left)
            except TimeoutError:
                break
        self.waited_s += time.monotonic() - began
        if held:
            self.timeouts += 1
            self.given_up.update(held)
            log.warning("%s reported no tree refit (trees_refit or trees_refit_skipped) within %.0f s of the refit "
                        "period that starts at %d ms; replaying on without waiting for it again", held, self.timeout_s,
                        labels_up_to_ms // self.refit_ms * self.refit_ms)
        else:
            self.waits += 1


def reported_until(value: bytes | None, app_id: str | None) -> int | None:
    """The refit period an ops record says was passed (``trees_refit``'s ``fitted_until_ms``,
    ``trees_refit_skipped``'s ``until_ms``), of ``app_id``'s trainer if given; else None.

    >>> reported_until(b'{"type": "trees_refit", "fitted_until_ms": 5, "app_id": "a"}', "a")
    5
    >>> reported_until(b'{"type": "trees_refit_skipped", "until_ms": 7, "app_id": "a"}', None)
    7
    >>> reported_until(b'{"type": "trees_refit", "fitted_until_ms": 5, "app_id": "b"}', "a") is None
    True
    >>> reported_until(b'not json', None) is None
    True
    """
    try:
        record: Any = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(record, dict) or (app_id is not None and record.get("app_id") != app_id):
        return None
    field = {"trees_refit": "fitted_until_ms", "trees_refit_skipped": "until_ms"}.get(str(record.get("type")))
    until = record.get(field) if field else None
    return int(until) if isinstance(until, int | float) and not isinstance(until, bool) else None


async def follow_refits(settings: Settings, gate: RefitGate, engines: Sequence[tuple[str, str | None]],
                        reading: asyncio.Event) -> None:
    """Feed ``gate`` what the ``(ops topic, app id)`` engines report from now on, until cancelled.

    ``reading`` is set once every topic is read up to its end: the replay
    starts then, so no report it causes can be taken for the backlog (which
    may be an earlier replay's).
    """
    behind = len(engines)

    def caught_up() -> None:
        nonlocal behind
        behind -= 1
        if not behind:
            reading.set()

    async def follow(topic: str, app_id: str | None) -> None:
        def seen(message: Any) -> None:
            until = reported_until(message.value, app_id)
            if until is not None:
                gate.report(topic, until)

        await follow_topic(settings, topic, lambda _: None, caught_up, seen)

    await asyncio.gather(*(follow(topic, app_id) for topic, app_id in engines))
