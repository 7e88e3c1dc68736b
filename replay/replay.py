"""``fraudstream replay``: send a labelled file through Kafka in event-time order.

Rows of a CSV, Parquet or JSON Lines file are mapped onto the transactions
contract (:mod:`replay.mapping`; rows that do not map are reported with their
row number and skipped, never silently), then :func:`replay.plan.plan` merges
them with their labels into one event-time ordered stream: a transaction at
its timestamp, its label (if the file has a label column) at ``timestamp +
label_delay``. Transactions go to the transactions topic, labels to the
feedback topic, both keyed by ``card_id``. This module sends that stream
(:func:`run_replay`, configured by :class:`ReplayConfig`, reporting a
:class:`ReplaySummary`); :mod:`replay.replay_cli` is the command line.

Resume (:mod:`replay.resume`). Every record carries the headers
``replay.run`` and ``replay.seq``; after each chunk the producer waits for
Kafka's acknowledgement of every record, then the checkpoint moves on. A
restart with the same arguments skips exactly the records already on the
topics: no gap and no duplicate, after a Ctrl-C, a SIGTERM, a crash or a
SIGKILL alike.

Pacing (``--rate``, ``--speed``) sends what has come due once per
:data:`PACED_TICK_S` (20 ms), not event by event: one send per event made
one-record batches (each topic partition gets its own), and the embedded
broker slows down as its partitions fill with those (docs/replay.md has the
measurements). Records are timestamped when they are
appended, so the tick is not in any latency measured from them (nor is the
lateness it adds: an event leaves about a tick after its due time at most).

Example (the checkpoint sits next to the input unless ``--checkpoint`` says otherwise):
    >>> ReplayConfig(Path("data/transactions.csv")).checkpoint_path.name
    'transactions.csv.replay-checkpoint.json'
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replay.mapping import map_rows, resolve_mapping, write_rejects
from replay.plan import LabelPolicy, Plan, plan
from replay.progress import Pace, Schedule, make_bar
from replay.refits import RefitGate, follow_refits
from replay.resume import RUN_HEADER, SEQ_HEADER, Checkpoint, ReplayError, replay_fingerprint, scan_tails
from replay.source import Reject, open_source
from stream.contracts.records import InvalidRecord, Limits, parse_feedback, parse_transaction
from stream.contracts.settings import Settings
from stream.kafka import clients

__all__ = ["PACED_TICK_S", "ReplayConfig", "ReplayError", "ReplaySummary", "run_replay"]

#: Longest a paced replay waits before sending what has come due (see the module docstring).
PACED_TICK_S = 0.02

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)



@dataclass(frozen=True)
class ReplayConfig:
    """Everything ``fraudstream replay`` does; the CLI fills it from flags and the environment."""

    input: Path
    mapping: dict[str, str] = field(default_factory=dict)
    input_format: str | None = None
    timestamp_unit: str = "ms"
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    pace: Pace = field(default_factory=Pace)
    settings: Settings = field(default_factory=Settings.from_env)
    checkpoint: Path | None = None
    restart: bool = False
    rejects_path: Path | None = None
    strict: bool = False
    quiet: bool = False
    verify: bool = False
    stop_after: int | None = None
    chunk_events: int = 20_000
    #: Engines to wait for where their trees fall due for a refit (:mod:`replay.refits`): ``(ops topic, app id)``
    #: pairs (app id None: any). Refits every ``settings.trees_refit_s`` of event time.
    wait_for_refits: tuple[tuple[str, str | None], ...] = ()
    refit_timeout_s: float = 120.0

    @property
    def checkpoint_path(self) -> Path:
        """``--checkpoint``, else ``<input>.replay-checkpoint.json``."""
        return self.checkpoint or Path(str(self.input) + ".replay-checkpoint.json")


@dataclass(frozen=True)
class ReplaySummary:
    """What one call of :func:`run_replay` did."""

    rows: int
    rejects: list[Reject]
    transactions_sent: int
    labels_sent: int
    already_written: int
    position: int
    total_events: int
    elapsed_s: float
    run_id: str
    stopped: str | None = None
    already_complete: bool = False
    batches_sent: int = 0  # record batches handed to the producer (one per topic partition per send)
    refit_waits: int = 0  # holds for a refit (--wait-for-refits), and how long they took
    refit_wait_s: float = 0.0
    refit_timeouts: int = 0

    @property
    def complete(self) -> bool:
        return self.position >= self.total_events

    @property
    def rate(self) -> float:
        """Events sent per second (acknowledged by Kafka)."""
        sent = self.transactions_sent + self.labels_sent
        return sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        """The one-line summary printed at the end."""
        state = "complete" if self.complete else f"{self.stopped or 'stopped'}; rerun the same command to resume"
        skipped = f", {self.already_written:,} already on the topic" if self.already_written else ""
        if self.refit_waits or self.refit_timeouts:
            skipped += (f", held {self.refit_wait_s:.0f} s for {self.refit_waits:,} tree refits"
                        + (f" ({self.refit_timeouts} not reported in time)" if self.refit_timeouts else ""))
        return (f"replay: sent {self.transactions_sent:,} transactions and {self.labels_sent:,} labels{skipped}, "
                f"{len(self.rejects):,} rejected rows, in {self.elapsed_s:.1f} s ({self.rate:,.0f} events/s); "
                f"position {self.position:,}/{self.total_events:,}, {state}")


def run_replay(config: ReplayConfig, *, stop: threading.Event | None = None,
               after_send: Callable[[int], None] | None = None) -> ReplaySummary:
    """Replay ``config.input``; resume from its checkpoint unless ``config.restart``.

    ``stop`` ends the replay cleanly (acknowledged, checkpointed) when set.
    ``after_send(position)`` runs after records up to ``position`` were handed
    to the producer and before they are acknowledged (tests inject crashes there).
    """
    if config.wait_for_refits and config.settings.trees_refit_s <= 0:
        raise ReplayError("waiting for tree refits needs FRAUDSTREAM_TREES_REFIT_S > 0 (the engines' setting)")
    source = open_source(config.input, config.input_format)
    mapping = resolve_mapping(config.mapping, source.columns)
    data = source.read(sorted(set(mapping.values())))
    settings = config.settings
    limits = Limits.from_settings(settings)
    fingerprint = replay_fingerprint(config.input, source.format, mapping, config.timestamp_unit,
                                     config.labels, settings, limits)
    path = config.checkpoint_path
    ckpt = None if config.restart else Checkpoint.load(path)
    if ckpt is not None and ckpt.mismatch(fingerprint):
        raise ReplayError(f"checkpoint {path} belongs to a replay with different {', '.join(ckpt.mismatch(fingerprint))}; "
                          "rerun with the original arguments, or --restart to replay from the start")
    reference_ms = ckpt.reference_ms if ckpt else int(time.time() * 1000)
    rows, rejects = map_rows(data, mapping, unit=config.timestamp_unit, limits=limits, now_ms=reference_ms)
    n_rows = len(data.row_number) + len(data.rejects)
    del data  # the rows hold their own columns; the file's table can go
    if config.rejects_path is not None:
        write_rejects(config.rejects_path, rejects)
    if config.strict and rejects:
        raise ReplayError(f"--strict: {rejects[0]}")
    stream = plan(rows, config.labels)
    if ckpt is None:
        ckpt = Checkpoint(uuid.uuid4().hex, fingerprint, reference_ms, len(stream))
    elif ckpt.total != len(stream):
        raise ReplayError(f"checkpoint {path} expects {ckpt.total} events, the plan has {len(stream)}; use --restart")
    if ckpt.position >= len(stream):
        return ReplaySummary(n_rows, rejects, 0, 0, 0,
                             ckpt.position, len(stream), 0.0, ckpt.run_id, None, already_complete=len(stream) > 0)
    from stream.kafka.topics import ensure_topics

    ensure_topics(settings)
    sender = _Sender(config, stream, ckpt, limits, stop or threading.Event(), after_send)
    asyncio.run(sender.run())
    return ReplaySummary(n_rows, rejects, sender.sent[0], sender.sent[1],
                         sender.skipped, ckpt.position, len(stream), sender.elapsed, ckpt.run_id, sender.stopped,
                         batches_sent=sender.batches, refit_waits=sender.gate.waits if sender.gate else 0,
                         refit_wait_s=sender.gate.waited_s if sender.gate else 0.0,
                         refit_timeouts=sender.gate.timeouts if sender.gate else 0)


class _Sender:
    """Produces the plan from the checkpointed position; owns the checkpoint while it runs."""

    def __init__(self, config: ReplayConfig, stream: Plan, ckpt: Checkpoint, limits: Limits,
                 stop: threading.Event, after_send: Callable[[int], None] | None) -> None:
        self.config, self.plan, self.ckpt, self.limits = config, stream, ckpt, limits
        self.stop, self.after_send = stop, after_send
        s = config.settings
        self.topics = (s.topic_transactions, s.topic_feedback)
        self.sent = [0, 0]  # transactions, labels
        self.batches = 0
        self.skipped = 0
        self.elapsed = 0.0
        self.stopped: str | None = None
        self.futures: list[tuple[asyncio.Future[Any], str, int]] = []
        self.gate = RefitGate(int(s.trees_refit_s * 1000), [topic for topic, _ in config.wait_for_refits], config.refit_timeout_s) \
            if config.wait_for_refits else None
        #: The newest transaction time among the labels sent (what makes a refit due).
        self.labelled_up_to = -1

    async def run(self) -> None:
        s = self.config.settings
        # Batches are built here per partition (create_batch/send_batch): ~3x
        # the throughput of send() per record. acks=all so an acknowledged
        # record survives a broker failover, which the checkpoint relies on.
        producer = clients.aio_producer(s, client_id="fraudstream-replay", acks="all", max_batch_size=256 * 1024,
                                        linger_ms=5)
        await producer.start()
        try:
            self.partitions = {t: sorted(await producer.partitions_for(t)) for t in self.topics}
            if len(set(map(tuple, self.partitions.values()))) != 1:  # ensure_topics checks this too
                raise ReplayError(f"topics {self.topics} have different partitions {self.partitions}; "
                                  "a card's transactions and labels must share a partition number")
            fresh = not self.ckpt.offsets
            written = await scan_tails(s, self.partitions, self.ckpt, len(self.plan), fresh)
            if fresh:
                self.ckpt.save(self.config.checkpoint_path)
            following = None
            if self.gate is not None:
                reading = asyncio.Event()
                following = asyncio.ensure_future(follow_refits(s, self.gate, self.config.wait_for_refits, reading))
                await asyncio.wait([following, asyncio.ensure_future(reading.wait())],
                                   return_when=asyncio.FIRST_COMPLETED, timeout=60)
                if following.done():  # it failed: say why rather than replay unheld
                    following.result()
            try:
                await self._loop(producer, written)
            finally:
                if following is not None:
                    following.cancel()
                    await asyncio.gather(following, return_exceptions=True)
        finally:
            await producer.stop()  # also delivers what was queued: the next resume finds it by its headers

    async def _loop(self, producer: Any, written: set[int]) -> None:
        from aiokafka.partitioner import DefaultPartitioner

        config, stream, ckpt = self.config, self.plan, self.ckpt
        total = len(stream)
        limit = total if config.stop_after is None else min(total, ckpt.position + config.stop_after)
        schedule = Schedule(config.pace)
        partition_of: dict[str, int] = {}
        run = ckpt.run_id.encode()
        bar = make_bar(total, ckpt.position, config.quiet)
        pos = ckpt.position
        if pos < limit:
            schedule.start(pos, int(stream.pace_times(pos, pos + 1)[0]))
        began = last_commit = time.monotonic()
        paced = config.pace.mode != "max"
        last_send = -PACED_TICK_S
        try:
            while pos < limit and not self.stop.is_set():
                end = min(limit, ckpt.position + config.chunk_events)
                if paced and pos < end:
                    # One send per tick, busy or not: due times come from the schedule's
                    # anchor, so waiting here delays events by up to a tick but not the rate.
                    tick_left = last_send + PACED_TICK_S - time.monotonic()
                    if tick_left > 0:
                        await asyncio.sleep(tick_left)
                count = schedule.due_count(pos, stream.pace_times(pos, end)) if pos < end else 0
                held = False
                if self.gate is not None and count:
                    count, held = self._up_to_refit(pos, count)
                if count == 0:
                    if pos >= end or time.monotonic() - last_commit >= 1.0:
                        await self._commit(pos)
                        last_commit = time.monotonic()
                    else:
                        due_in = schedule.delay(pos, int(stream.pace_times(pos, pos + 1)[0]))
                        await asyncio.sleep(min(0.2, max(0.0, due_in)))
                    continue
                last_send = time.monotonic()
                batches: dict[tuple[str, int], Any] = {}
                for event in stream.records(pos, pos + count):
                    if event.seq in written:
                        self.skipped += 1
                        continue
                    is_label = event.kind == "label"
                    topic = self.topics[is_label]
                    key, value = event.key.encode(), _JSON.encode(event.value).encode()
                    if config.verify:
                        self._verify(key, value, is_label)
                    part = partition_of.get(event.key)
                    if part is None:
                        part = partition_of[event.key] = DefaultPartitioner()(key, self.partitions[topic], None)
                    headers = [(RUN_HEADER, run), (SEQ_HEADER, str(event.seq).encode())]
                    batch = batches.get((topic, part))
                    if batch is None:
                        batch = batches[(topic, part)] = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        await self._send(producer, batch, topic, part)
                        batch = batches[(topic, part)] = producer.create_batch()
                        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                            raise ReplayError(f"record {event.seq} ({len(value)} bytes) does not fit in a batch")
                    self.sent[is_label] += 1
                for (topic, part), batch in batches.items():
                    await self._send(producer, batch, topic, part)
                pos += count
                bar.update(count)
                if self.after_send is not None:
                    self.after_send(pos)
                if held or pos - ckpt.position >= config.chunk_events or pos >= limit or \
                        time.monotonic() - last_commit >= 1.0:
                    await self._commit(pos)  # a hold waits for the engines to have what made the refit due
                    last_commit = time.monotonic()
                if held:
                    assert self.gate is not None
                    await self.gate.wait(self.labelled_up_to)
                    if pos < limit:  # on from here at the pace asked for, not in a burst to catch up the hold
                        schedule.start(pos, int(stream.pace_times(pos, pos + 1)[0]))
            if pos < total:
                self.stopped = "interrupted" if self.stop.is_set() else "stopped by --stop-after"
            await self._commit(pos)
        except asyncio.CancelledError:  # Ctrl-C under asyncio.run: keep what was acknowledged
            self.stopped = "interrupted"
            await self._commit(pos)
            raise
        finally:
            bar.close()
            self.elapsed = time.monotonic() - began

    def _up_to_refit(self, pos: int, count: int) -> tuple[int, bool]:
        """How many of the ``count`` events due from ``pos`` go before a hold for a refit, and whether one follows.

        The hold comes right after the first label of a new refit period, while
        transactions are still to come (labels after the last one change no
        score).
        """
        assert self.gate is not None
        labelled = self.plan.labelled_ms(pos, pos + count)
        if self.gate.started is None and (labels := labelled[labelled >= 0]).size:
            self.gate.start(int(labels[0]))  # the trainer passes the first period without a report
        reach = np.maximum.accumulate(np.maximum(labelled, self.labelled_up_to))
        live = self.plan.times[pos:pos + count] <= self.plan.last_transaction_ms
        threshold = self.gate.due_at()
        due = live & (labelled >= 0) & (reach >= threshold) if threshold is not None else np.zeros(count, dtype=bool)
        if due.any():
            count = int(np.argmax(due)) + 1
        if count:
            self.labelled_up_to = int(reach[count - 1])
        return count, bool(due.any())

    async def _send(self, producer: Any, batch: Any, topic: str, part: int) -> None:
        batch.close()
        count = batch.record_count()
        self.batches += 1
        self.futures.append((await producer.send_batch(batch, topic, partition=part), f"{topic}:{part}", count))

    async def _commit(self, pos: int) -> None:
        """Wait for Kafka to acknowledge everything sent, then move the checkpoint to ``pos``."""
        # Cleared only once all are acknowledged: a commit cancelled half-way
        # (Ctrl-C) and retried must wait for the same records again.
        for future, tp, count in self.futures:
            try:
                meta = await future
            except Exception as exc:  # aiokafka raises its KafkaError family; all mean "not written"
                raise ReplayError(f"Kafka did not acknowledge {count} records for {tp}: {exc!r}") from exc
            self.ckpt.offsets[tp] = max(self.ckpt.offsets.get(tp, 0), meta.offset + count)
        if pos != self.ckpt.position or self.futures:
            self.futures = []
            self.ckpt.position = pos
            self.ckpt.save(self.config.checkpoint_path)

    def _verify(self, key: bytes, value: bytes, is_label: bool) -> None:
        try:
            record = parse_feedback(value, self.limits) if is_label else parse_transaction(value, self.limits)
        except InvalidRecord as exc:
            raise ReplayError(f"internal error: replay built a record the engine rejects ({exc}): {value[:200]!r}") from exc
        if record.card_id.encode() != key:
            raise ReplayError(f"internal error: key {key!r} is not card_id {record.card_id!r}")

