"""Resuming a replay: the checkpoint, its fingerprint, and the records written after it.

Every record carries two headers: ``replay.run`` (an id for this replay) and
``replay.seq`` (its position in the stream, :attr:`replay.plan.Event.seq`).
After each chunk the producer waits for Kafka's acknowledgement of every
record, then the :class:`Checkpoint` file is atomically replaced with the
position reached, the partition offsets just past the acknowledged records
and a fingerprint of the input bytes, mapping and options
(:func:`replay_fingerprint`). A restart with the same arguments checks the
fingerprint, reads the topics from the checkpointed offsets to their end
(:func:`scan_tails`) and collects the ``replay.seq`` of this run's records
found there (those sent after the last checkpoint, e.g. before a crash), then
continues from the checkpointed position, skipping exactly those. Hence: no
gap and no duplicate, after a Ctrl-C, a SIGTERM, a crash or a SIGKILL alike.

Example:
    >>> ckpt = Checkpoint("run-1", {"input_sha256": "ab", "mapping": {}}, 0, total=10)
    >>> ckpt.mismatch({"input_sha256": "cd", "mapping": {}, "seed": 1})
    ['input_sha256', 'seed']
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.plan import LabelPolicy
from replay.source import file_digest
from stream.contracts.records import Limits
from stream.contracts.settings import Settings
from stream.kafka import clients

__all__ = ["RUN_HEADER", "SEQ_HEADER", "Checkpoint", "ReplayError", "replay_fingerprint", "scan_tails"]

RUN_HEADER, SEQ_HEADER = "replay.run", "replay.seq"


class ReplayError(RuntimeError):
    """The replay cannot start or go on (checkpoint mismatch, strict reject, Kafka failure)."""


@dataclass
class Checkpoint:
    """What a restart needs: the run, how far acknowledged, where to look for later records."""

    run_id: str
    fingerprint: dict[str, Any]
    reference_ms: int
    total: int
    position: int = 0
    offsets: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at ``path``, or ``None`` when there is none."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReplayError(f"checkpoint {path} is unreadable ({exc}); use --restart to start over") from None

    def save(self, path: Path) -> None:
        """Write atomically and durably: a crash leaves the old or the new file, never half of one."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**dataclasses.asdict(self), "saved_at": time.time()}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def mismatch(self, fingerprint: dict[str, Any]) -> list[str]:
        """Fingerprint entries that differ from ``fingerprint``."""
        return sorted(k for k in fingerprint.keys() | self.fingerprint.keys()
                      if self.fingerprint.get(k) != fingerprint.get(k))



def replay_fingerprint(input_path: Path, input_format: str, mapping: dict[str, str], timestamp_unit: str,
                       labels: LabelPolicy, settings: Settings, limits: Limits) -> dict[str, Any]:
    """What a resume must find unchanged: the input's bytes, the mapping and every option that shapes the stream."""
    return {
        "input_sha256": file_digest(input_path), "input_format": input_format, "mapping": mapping,
        "timestamp_unit": timestamp_unit, "labels": dataclasses.asdict(labels),
        "bootstrap_servers": settings.bootstrap_servers, "topic": settings.topic_transactions,
        "feedback_topic": settings.topic_feedback, "limits": dataclasses.asdict(limits),
    }


async def scan_tails(settings: Settings, partitions: dict[str, list[int]], ckpt: Checkpoint, total: int,
                     fresh: bool) -> set[int]:
    """Fresh run: note the topics' end offsets. Resume: seqs of this run written past the checkpoint.

    ``partitions`` maps each topic to its partition numbers; ``total`` is the
    plan's length. A fresh run sets ``ckpt.offsets`` to the topics' ends and
    returns an empty set.
    """
    from aiokafka import TopicPartition

    consumer = clients.aio_consumer(settings, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                    client_id="fraudstream-replay-resume")
    await consumer.start()
    written: set[int] = set()
    try:
        tps = [TopicPartition(t, p) for t, parts in partitions.items() for p in parts]
        end = await consumer.end_offsets(tps)
        if fresh:
            ckpt.offsets = {f"{tp.topic}:{tp.partition}": end[tp] for tp in tps}
            return written
        first = await consumer.beginning_offsets(tps)
        begin = {tp: ckpt.offsets.get(f"{tp.topic}:{tp.partition}", first[tp]) for tp in tps}
        todo = {tp: end[tp] for tp in tps if end[tp] > begin[tp]}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, begin[tp])
        run = ckpt.run_id.encode()
        deadline = time.monotonic() + 60.0
        while todo:
            if time.monotonic() > deadline:
                raise ReplayError(f"could not read the topic tails in 60 s: {sorted(map(str, todo))} unread")
            for messages in (await consumer.getmany(*todo, timeout_ms=500)).values():
                for m in messages:
                    headers = dict(m.headers or ())
                    if headers.get(RUN_HEADER) == run:
                        written.add(int(headers[SEQ_HEADER]))
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
                    consumer.pause(tp)
    finally:
        await consumer.stop()
    if any(seq >= total for seq in written):
        raise ReplayError(f"the topic holds records of run {ckpt.run_id} beyond the plan's end; use --restart")
    return {seq for seq in written if seq >= ckpt.position}
