"""Every worker follows the threshold topic and scores each micro-batch with the threshold read last.

With ``FRAUDSTREAM_ALERT_BUDGET`` the budget agent (:mod:`stream.runtime.agents.budget`),
on whichever worker holds the one partition of ``<app_id>-budget-scores``,
publishes the model threshold to ``<app_id>-threshold`` (one partition,
compacted, key ``threshold``). Each worker reads that topic with its own
group-less consumer, as :mod:`stream.runtime.rulesync` reads the rules: at
start the whole topic, then every new record; the score agent takes the
threshold at the start of its next micro-batch. Until a worker has read one
(a new deployment, before the controller's warm-up ends) it scores with the
fixed ``FRAUDSTREAM_ALERT_THRESHOLD``.

A record is JSON signed as the model snapshots are
(:func:`models.snapshot.seal_record`, ``FRAUDSTREAM_MODEL_SIGNING_KEY``):
every worker obeys it, and a forged threshold of 0.999 would silence every
alert. Its fields: ``threshold`` (in force from now on), ``event_time`` (the
controller's clock), ``budget`` (the setting it was computed for) and
``state`` (the controller's, for the next owner). One that is unsigned,
signed with another key, altered or does not decode is refused: logged and
reported on the ops topic (``threshold_refused``); the threshold in force
stays.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from models.snapshot import unseal_record
from stream.kafka.follow import follow_topic, wait_read

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["ThresholdSync", "parse_threshold"]

log = logging.getLogger("fraudstream.budget")


def parse_threshold(value: bytes, key: bytes) -> dict[str, Any]:
    """A threshold record signed with ``key``, or ``ValueError`` saying what is wrong with it.

    >>> from models.snapshot import seal_record
    >>> key = b"k" * 32
    >>> parse_threshold(seal_record({"threshold": 0.93, "event_time": 1, "budget": "0.5%"}, key, "threshold"),
    ...                 key)["threshold"]
    0.93
    >>> parse_threshold(seal_record({"threshold": 1.5}, key, "threshold"), key)
    Traceback (most recent call last):
    ...
    ValueError: threshold record's threshold must be a number in [0, 1], got 1.5
    >>> parse_threshold(b'{"threshold": 0.999}', key)
    Traceback (most recent call last):
    ...
    models.snapshot.SnapshotError: not a fraudstream snapshot (unsigned or another format)
    """
    record = unseal_record(value, key, "threshold")  # SnapshotError is a ValueError
    threshold = record.get("threshold")
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
            or not 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold record's threshold must be a number in [0, 1], got {threshold!r}")
    return record


class ThresholdSync:
    """Follows ``settings.threshold_topic``; ``ready`` is set once the backlog is read."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready = asyncio.Event()
        #: The last record applied (its ``state`` is where a new budget owner starts from).
        self.latest: dict[str, Any] | None = None

    def apply(self, value: bytes | None, offset: int) -> bool:
        """Take one threshold-topic record; False when it is refused (the threshold in force stays)."""
        if value is None:
            return True
        engine = self.engine
        try:
            record = parse_threshold(value, engine.settings.signing_key())
        except ValueError as exc:  # SnapshotError is one
            log.error("REFUSED threshold record at %s offset %d: %s", engine.settings.threshold_topic, offset, exc)
            asyncio.ensure_future(engine.send_ops("budget", {"type": "threshold_refused", "offset": offset,
                                                             "reason": str(exc)}))
            return False
        self.latest = record
        engine.alert_threshold = float(record["threshold"])
        engine.telemetry.alert_threshold.set(engine.alert_threshold)
        return True

    async def run(self) -> None:
        """The worker task: read the backlog, set ``ready``, then follow."""
        settings = self.engine.settings
        if self.engine.topics.thresholds is not None:
            await self.engine.topics.thresholds.maybe_declare()  # compacted, one partition, before auto-creation

        def caught_up() -> None:
            self.ready.set()
            log.info("alert threshold in force: %s", self.engine.alert_threshold)

        def apply(msg: Any) -> None:
            self.apply(msg.value, msg.offset)

        try:
            await follow_topic(settings, settings.threshold_topic, apply, caught_up, apply)
        finally:
            self.ready.set()

    async def wait_ready(self) -> None:
        """Wait (bounded) for the threshold backlog, so a new worker starts with the threshold in force."""
        await wait_read(self.ready, self.engine.settings.model_sync_timeout_s, "threshold topic",
                        f"scoring at {self.engine.alert_threshold} until it is")
