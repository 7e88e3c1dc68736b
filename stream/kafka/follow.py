"""Following a one-partition topic from its beginning: its backlog up to the true end, then each new record.

Every worker reads a few small topics whole, with its own group-less consumer:
the signed model snapshots, the rules, the alert threshold. Each wants the
backlog first (to start with what is in force), then a signal that it has it,
then every record as it comes. The embedded broker reports an end offset that
can be short of the last record (:mod:`stream.patches.embedded_end_offsets`),
so with ``FRAUDSTREAM_EMBEDDED_BROKER_COMPAT`` the end is asked for again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from stream.contracts.settings import Settings
from stream.kafka import clients
from stream.kafka.security import client_kwargs
from stream.patches.embedded_end_offsets import true_end_offsets

__all__ = ["follow_topic", "wait_read"]

log = logging.getLogger("fraudstream.follow")


async def follow_topic(settings: Settings, topic: str, backlog: Callable[[Any], None],
                       caught_up: Callable[[], None], record: Callable[[Any], None]) -> None:
    """Call ``backlog(message)`` for each record of partition 0 of ``topic`` up to its end as found now, then
    ``caught_up()``, then ``record(message)`` for each later one, until cancelled (aiokafka messages)."""
    from aiokafka import TopicPartition

    consumer = clients.aio_consumer(settings, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        if settings.embedded_broker_compat:
            end = (await true_end_offsets(settings.bootstrap_servers, {tp: end}, client=client_kwargs(settings)))[tp]
        later: list[Any] = []  # fetched with the backlog's last records, past its end
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for msg in batch.get(tp, []):
                if msg.offset < end:
                    backlog(msg)
                else:
                    later.append(msg)
        caught_up()
        for msg in later:
            record(msg)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for msg in batch.get(tp, []):
                record(msg)
    finally:
        await consumer.stop()


async def wait_read(ready: asyncio.Event, timeout_s: float, what: str, meanwhile: str) -> None:
    """Wait, at most ``timeout_s``, for a follower's backlog (``what``) to be read (``ready``); past it, say what
    the worker does ``meanwhile`` and go on: a new worker should start with what is in force, not hang for it."""
    try:
        await asyncio.wait_for(ready.wait(), timeout=timeout_s)
    except TimeoutError:
        log.warning("%s not read within %.0f s; %s", what, timeout_s, meanwhile)
