"""Signed snapshots of the online learner, safe to pass between workers over Kafka.

River models are pickled, and unpickling runs code, so a model topic that
anyone could write to would be a remote-code-execution path. A snapshot is
therefore authenticated with HMAC-SHA256 under a key from the environment
(``FRAUDSTREAM_MODEL_SIGNING_KEY``) and the signature is checked *before* the
payload is unpickled. Anything unsigned, signed with another key, truncated or
altered is refused with :class:`SnapshotError`.

Layout: ``MAGIC | u32 header length | header JSON | payload | 32-byte HMAC``,
the HMAC covering everything before it.

Example:
    >>> from models.online import OnlineLearner
    >>> blob = seal(OnlineLearner(), b"k" * 32, {"seq": 1})
    >>> learner, meta = unseal(blob, b"k" * 32)
    >>> meta["seq"], meta["n_labels"], learner.version
    (1, 0, 'online-0')
    >>> unseal(blob[:-1] + bytes([blob[-1] ^ 1]), b"k" * 32)
    Traceback (most recent call last):
    ...
    models.snapshot.SnapshotError: snapshot signature does not verify (tampered, or signed with another key)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import struct
import time
from typing import Any

from models.online import OnlineLearner
from models.trees import TreeModel

__all__ = ["MAGIC", "SnapshotError", "peek_header", "seal", "seal_record", "seal_trees", "unseal", "unseal_record",
           "unseal_trees", "verify"]

MAGIC = b"FSNAP1"
_SIG = 32


class SnapshotError(ValueError):
    """A snapshot that must not be loaded."""


def seal(learner: OnlineLearner, key: bytes, meta: dict[str, Any]) -> bytes:
    """Pickle ``learner`` and sign it with ``key``; ``meta`` goes in the header.

    The learner's trees (:mod:`models.trees`) are not in it: they change once a
    day and weigh a few hundred kilobytes, the learner with every label. They
    travel on their own (:func:`seal_trees`); the header names their version
    (``trees``) and whoever installs the learner attaches them.
    """
    trees = learner.trees
    learner.trees = None
    try:
        payload = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        learner.trees = trees
    return _signed(payload, key, {**meta, "kind": "online", "trees": None if trees is None else trees.version,
                                  "n_labels": learner.n_labels, "n_fraud": learner.n_fraud})


def seal_trees(trees: TreeModel, key: bytes) -> bytes:
    """Pickle ``trees`` and sign them (header: ``kind`` trees, their ``version``).

    >>> from models.trees import ExampleWindow
    >>> w = ExampleWindow(("a",), window_ms=10, max_examples=100)
    >>> for i in range(100):
    ...     w.add([i % 2], i % 2, event_time_ms=0)
    >>> trees, meta = unseal_trees(seal_trees(TreeModel.fit(w, rounds=2), b"k" * 32), b"k" * 32)
    >>> meta["kind"], meta["version"] == trees.version
    ('trees', True)
    """
    return _signed(pickle.dumps(trees, protocol=pickle.HIGHEST_PROTOCOL), key,
                   {"kind": "trees", "version": trees.version, "examples": trees.examples})


def _signed(payload: bytes, key: bytes, meta: dict[str, Any]) -> bytes:
    if len(key) < 16:
        raise SnapshotError("signing key must be at least 16 bytes")
    header = {
        **meta,
        "created_at": int(time.time() * 1000),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    head = json.dumps(header, sort_keys=True).encode()
    body = MAGIC + struct.pack(">I", len(head)) + head + payload
    return body + hmac.new(key, body, hashlib.sha256).digest()


def _split(blob: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4 + _SIG:
        raise SnapshotError("not a fraudstream snapshot (unsigned or another format)")
    (n,) = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if start + n > len(blob) - _SIG:
        raise SnapshotError("snapshot truncated")
    try:
        header = json.loads(blob[start:start + n])
    except ValueError:
        raise SnapshotError("snapshot header is not JSON") from None
    return header, blob[start + n:-_SIG], blob[:-_SIG], blob[-_SIG:]


def peek_header(blob: bytes) -> dict[str, Any]:
    """The header, unverified: for logging only, never for trust decisions."""
    return _split(blob)[0]


def verify(blob: bytes, key: bytes) -> tuple[dict[str, Any], bytes]:
    """Check the signature without unpickling; return ``(header, payload)``."""
    header, payload, body, signature = _split(blob)
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), signature):
        raise SnapshotError("snapshot signature does not verify (tampered, or signed with another key)")
    return header, payload


def unseal(blob: bytes, key: bytes) -> tuple[OnlineLearner, dict[str, Any]]:
    """Verify, then unpickle. Raises :class:`SnapshotError` for anything untrusted."""
    header, payload = verify(blob, key)
    learner = pickle.loads(payload)
    if not isinstance(learner, OnlineLearner):
        raise SnapshotError(f"signed snapshot holds a {type(learner).__name__}")
    return learner, header


def unseal_trees(blob: bytes, key: bytes) -> tuple[TreeModel, dict[str, Any]]:
    """Verify, then unpickle trees sealed by :func:`seal_trees`. Raises :class:`SnapshotError` for anything else."""
    header, payload = verify(blob, key)
    if header.get("kind") != "trees":
        raise SnapshotError(f"signed snapshot is not trees (kind {header.get('kind')!r})")
    trees = pickle.loads(payload)
    if not isinstance(trees, TreeModel):
        raise SnapshotError(f"signed snapshot holds a {type(trees).__name__}")
    return trees, header


def seal_record(record: dict[str, Any], key: bytes, kind: str) -> bytes:
    """A JSON ``record`` signed as snapshots are, for a topic whose records every worker obeys (the alert threshold:
    a forged one could silence every alert).

    >>> blob = seal_record({"threshold": 0.9}, b"k" * 32, "threshold")
    >>> unseal_record(blob, b"k" * 32, "threshold")
    {'threshold': 0.9}
    >>> unseal_record(b'{"threshold": 0.999}', b"k" * 32, "threshold")
    Traceback (most recent call last):
    ...
    models.snapshot.SnapshotError: not a fraudstream snapshot (unsigned or another format)
    """
    return _signed(json.dumps(record, sort_keys=True).encode(), key, {"kind": kind})


def unseal_record(blob: bytes, key: bytes, kind: str) -> dict[str, Any]:
    """Verify, then decode a record sealed by :func:`seal_record` as ``kind``; :class:`SnapshotError` otherwise."""
    header, payload = verify(blob, key)
    if header.get("kind") != kind:
        raise SnapshotError(f"signed record is not a {kind} record (kind {header.get('kind')!r})")
    try:
        record = json.loads(payload)
    except ValueError:
        raise SnapshotError(f"signed {kind} record is not JSON") from None
    if not isinstance(record, dict):
        raise SnapshotError(f"signed {kind} record is not a JSON object")
    return record
