"""Every worker follows the model topic and installs each verified snapshot.

The single online learner (``stream/runtime/agents/train.py``) publishes signed
snapshots to a one-partition, compacted topic. Each worker reads it with its
own group-less consumer: at start, the whole topic (on a compacted topic that
is about one record), keeping the newest snapshot whose signature verifies;
then every new one. A snapshot that fails verification is refused, logged,
counted (``snapshots_rejected``) and reported on the ops topic; the worker
keeps the model it has.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from models.snapshot import SnapshotError, peek_header, unseal, unseal_trees, verify
from models.trees import TreeModel
from stream.kafka.follow import follow_topic, wait_read

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["ModelSync"]

log = logging.getLogger("fraudstream.modelsync")

#: Trees versions a worker keeps: the one in force and the newest, published before the snapshot naming it.
_TREES_KEPT = 3


class ModelSync:
    """Follows ``settings.models_topic``; ``ready`` is set once the backlog is read."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready = asyncio.Event()
        self.seq = 0
        self.latest_blob: bytes | None = None
        self.latest_meta: dict[str, Any] = {}
        #: Trees seen on the topic, by version (the newest few): a learner's snapshot names the ones it scores with.
        self.trees: dict[str, TreeModel] = {}

    def install(self, blob: bytes, offset: int) -> bool:
        """Verify and install ``blob`` if it is newer; False when refused or stale."""
        engine = self.engine
        try:
            if peek_header(blob).get("kind") == "trees":
                return self._install_trees(blob)
            learner, meta = unseal(blob, engine.settings.signing_key())
        except SnapshotError as exc:
            engine.stats.snapshots_rejected += 1
            try:
                claimed = peek_header(blob)
            except SnapshotError:
                claimed = {}
            log.error("REFUSED model snapshot at %s offset %d: %s (claimed header %s)",
                      engine.settings.models_topic, offset, exc, claimed)
            self._ops({"type": "snapshot_refused", "offset": offset, "reason": str(exc)})
            return False
        seq = int(meta.get("seq", 0))
        if seq <= self.seq:
            return False
        self.seq = seq
        self.latest_blob, self.latest_meta = blob, meta
        learner.snapshot_seq = seq
        named = meta.get("trees")
        learner.trees = self.trees.get(named) if named else None
        if named and learner.trees is None:  # published before the snapshot naming them: should not happen
            log.error("snapshot seq %d names trees %s this worker has not seen; keeping the current ones", seq, named)
            learner.trees = engine.fusion.online.trees
        engine.fusion.online = learner
        engine.stats.snapshots_installed += 1
        log.info("installed online model snapshot seq %d (%d labels)", seq, learner.n_labels)
        return True

    def _install_trees(self, blob: bytes) -> bool:
        trees, _ = unseal_trees(blob, self.engine.settings.signing_key())
        self.trees[trees.version] = trees
        while len(self.trees) > _TREES_KEPT:
            del self.trees[next(iter(self.trees))]
        log.info("received trees %s (%d examples)", trees.version, trees.examples)
        return True

    def _ops(self, record: dict[str, Any]) -> None:
        asyncio.ensure_future(self.engine.send_ops("modelsync", record))  # install() is not async

    async def run(self) -> None:
        """The worker task: read the backlog, set ``ready``, then follow."""
        settings = self.engine.settings
        newest: tuple[bytes, int] | None = None
        trees: dict[str, tuple[bytes, int]] = {}  # verified trees blobs of the backlog, by version

        def backlog(msg: Any) -> None:
            """Only the newest valid snapshot of the backlog is installed (and the trees it names)."""
            nonlocal newest
            if msg.value is None:
                return
            if _kind(msg.value) == "trees":
                self._keep_trees(trees, msg.value, msg.offset)
            else:
                newest = self._newer_valid(newest, msg.value, msg.offset)

        def caught_up() -> None:
            if newest is not None:
                named = peek_header(newest[0]).get("trees")
                if named in trees:
                    self.install(*trees[named])
                self.install(*newest)
            self.ready.set()

        def record(msg: Any) -> None:
            if msg.value is not None:
                self.install(msg.value, msg.offset)

        try:
            await follow_topic(settings, settings.models_topic, backlog, caught_up, record)
        finally:
            self.ready.set()

    def _newer_valid(self, current: tuple[bytes, int] | None, blob: bytes, offset: int) -> tuple[bytes, int] | None:
        """Keep the valid snapshot with the highest seq without unpickling the others."""
        header = self._verified(blob, offset, "model snapshot")
        if header is None:
            return current
        if current is not None and int(peek_header(current[0]).get("seq", 0)) >= int(header.get("seq", 0)):
            return current
        return blob, offset

    def _keep_trees(self, kept: dict[str, tuple[bytes, int]], blob: bytes, offset: int) -> None:
        """Keep a verified trees blob of the backlog by version, unpickled only if the newest snapshot names it."""
        header = self._verified(blob, offset, "trees")
        if header is not None:
            kept[str(header.get("version"))] = (blob, offset)

    def _verified(self, blob: bytes, offset: int, what: str) -> dict[str, Any] | None:
        """``blob``'s header once its signature verifies (nothing unpickled); None, counted and reported, otherwise."""
        try:
            return verify(blob, self.engine.settings.signing_key())[0]
        except SnapshotError as exc:
            self.engine.stats.snapshots_rejected += 1
            log.error("REFUSED %s at offset %d: %s", what, offset, exc)
            self._ops({"type": "snapshot_refused", "offset": offset, "reason": str(exc)})
            return None

    async def wait_ready(self) -> None:
        """Wait (bounded) for the initial snapshot, so a new worker starts from it."""
        await wait_read(self.ready, self.engine.settings.model_sync_timeout_s, "model topic",
                        "scoring with the model at hand")


def _kind(blob: bytes) -> str | None:
    """The kind a blob's header claims (``online`` or ``trees``; unverified: it only picks the check that follows)."""
    try:
        return peek_header(blob).get("kind")
    except SnapshotError:
        return None

