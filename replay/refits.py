"""Holding a replay where a live engine would have refit its trees (``fraudstream replay --wait-for-refits``).

Live, a day of event time takes a day: the trainer refits the fused score's
trees every ``FRAUDSTREAM_TREES_REFIT_S`` of event time, the fit takes
seconds, and the next day's transactions are scored by trees that know the
labels received until then. A replay runs a day in seconds; the trainer then
refits only when ``FRAUDSTREAM_TREES_CPU_SHARE`` lets it, so a set of trees
serves several days of the replay and what the replay reports depends on
the machine's speed, not on the model. With this gate the replay waits, after
sending the label that makes a refit due, until every engine it watches has
reported the refit on its ops topic (``trees_refit``), as live traffic would
have waited a few seconds of the day.

The rule, per engine: once it has reported a first refit (before that its
trainer may still lack ``FRAUDSTREAM_TREES_MIN_FRAUDS`` frauds: nothing to
wait for), the replay holds while the newest transaction time among the
labels it has sent is ``refit_ms`` or more past the newest example its trees
were fitted on (``fitted_until_ms``). That is the trainer's own rule
(:meth:`stream.core.training.OnlineTraining.step`'s ``refit_due``), seen from
the replay's side. A hold that lasts ``timeout_s`` (a refit failed, a
trainer lost its partition) is given up with a warning: the replay goes on
rather than hang.

Example:
    >>> gate = RefitGate(refit_ms=86_400_000, engines=("ops-a", "ops-b"))
    >>> gate.refit("ops-a", fitted_until_ms=0)
    >>> gate.holding(labels_up_to_ms=86_399_999), gate.holding(labels_up_to_ms=86_400_000), gate.due_at()
    ([], ['ops-a'], 86400000)
    >>> gate.refit("ops-a", fitted_until_ms=86_400_000)
    >>> gate.holding(labels_up_to_ms=86_400_000)  # ops-b has not refit yet: nothing known to wait for
    []
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

__all__ = ["RefitGate", "follow_refits"]

log = logging.getLogger("fraudstream.replay")


class RefitGate:
    """Which of the watched engines (named by their ops topics) a replay must wait for."""

    def __init__(self, refit_ms: int, engines: Sequence[str], timeout_s: float = 120.0) -> None:
        if refit_ms <= 0:
            raise ValueError(f"refit_ms must be positive, got {refit_ms}")
        self.refit_ms = refit_ms
        self.timeout_s = timeout_s
        #: The newest ``fitted_until_ms`` each engine reported (None: no refit yet).
        self.fitted: dict[str, int | None] = dict.fromkeys(engines)
        self.changed = asyncio.Event()
        #: Holds that ended in a refit, and holds given up after ``timeout_s``.
        self.waits = 0
        self.timeouts = 0
        self.waited_s = 0.0

    def refit(self, engine: str, fitted_until_ms: int) -> None:
        """``engine`` reported trees fitted on examples up to ``fitted_until_ms``."""
        last = self.fitted.get(engine)
        if engine in self.fitted and (last is None or fitted_until_ms > last):
            self.fitted[engine] = fitted_until_ms
            self.changed.set()

    def holding(self, labels_up_to_ms: int) -> list[str]:
        """The engines whose refit is due once labels of transactions up to ``labels_up_to_ms`` have been sent."""
        return [engine for engine, fitted in self.fitted.items()
                if fitted is not None and labels_up_to_ms - fitted >= self.refit_ms]

    def due_at(self) -> int | None:
        """The smallest ``labels_up_to_ms`` that :meth:`holding` holds at (None: none would)."""
        known = [fitted for fitted in self.fitted.values() if fitted is not None]
        return min(known) + self.refit_ms if known else None

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
            log.warning("no trees refit reported by %s within %.0f s of it falling due; replaying on", held,
                        self.timeout_s)
            for engine in held:  # wait again only for the next refit after this one's due point
                self.fitted[engine] = labels_up_to_ms
        else:
            self.waits += 1


def trees_refit(value: bytes | None, app_id: str | None) -> int | None:
    """``fitted_until_ms`` of an ops record that reports a refit (of ``app_id``'s trainer, if given), else None.

    >>> trees_refit(b'{"type": "trees_refit", "fitted_until_ms": 5, "app_id": "a"}', "a")
    5
    >>> trees_refit(b'{"type": "trees_refit", "fitted_until_ms": 5, "app_id": "b"}', "a") is None
    True
    >>> trees_refit(b'not json', None) is None
    True
    """
    try:
        record: Any = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("type") != "trees_refit":
        return None
    if app_id is not None and record.get("app_id") != app_id:
        return None
    fitted = record.get("fitted_until_ms")
    return int(fitted) if isinstance(fitted, int | float) else None


async def follow_refits(settings: Settings, gate: RefitGate, engines: Sequence[tuple[str, str | None]]) -> None:
    """Feed ``gate`` each refit the ``(ops topic, app id)`` engines report from now on, until cancelled."""

    async def follow(topic: str, app_id: str | None) -> None:
        def seen(message: Any) -> None:
            fitted = trees_refit(message.value, app_id)
            if fitted is not None:
                gate.refit(topic, fitted)

        # Only refits reported from now on: an ops topic's backlog may report the trees of an earlier replay of the
        # same history, which would let this one run past its first refits unheld.
        await follow_topic(settings, topic, lambda _: None, lambda: None, seen)

    await asyncio.gather(*(follow(topic, app_id) for topic, app_id in engines))
