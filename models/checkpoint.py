"""Sequence model checkpoints: a directory of weights plus ``config.json``.

Layout::

    <path>/weights.safetensors   (if the safetensors package is importable)
    <path>/weights.pt            (otherwise: torch.save of the state dict)
    <path>/config.json           schema_version, version, architecture, features,
                                 normalisation, training_data_hash, metrics, created_at

``weights.pt`` is read with ``torch.load(..., weights_only=True)``, so loading a
checkpoint never unpickles code. ``version`` is ``seq-`` plus a hash of the
weights and the config, checked again on load: a directory that was swapped
half-way through a read fails loudly instead of scoring with mixed parts.
:func:`save_checkpoint` writes a temporary directory and renames it into
place, so a :class:`CheckpointWatcher` never sees a half-written checkpoint.

Example:
    >>> import tempfile
    >>> from models.sequence import SequenceModel
    >>> from models.steps import StepSpec
    >>> with tempfile.TemporaryDirectory() as d:
    ...     version = save_checkpoint(SequenceModel(StepSpec(n=4)), {"metrics": {"val_ap": 0.5}}, d + "/seq")
    ...     scorer = load_checkpoint(d + "/seq")
    ...     read_config(d + "/seq")["metrics"]
    {'val_ap': 0.5}
    >>> scorer.version == version and version.startswith("seq-")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.sequence import Architecture, SequenceModel, SequenceScorer
from models.steps import StepSpec

__all__ = ["SCHEMA_VERSION", "CheckpointError", "CheckpointWatcher", "load_checkpoint", "read_config", "save_checkpoint"]

#: Bump when the checkpoint layout or feature semantics change; older code refuses newer checkpoints.
SCHEMA_VERSION = 1
_SUPPORTED = frozenset({1})
_CONFIG = "config.json"
_SAFETENSORS = "weights.safetensors"
_TORCH = "weights.pt"
_MODEL_KEYS = ("schema_version", "architecture", "features", "normalisation", "entity")
_DERIVED_KEYS = ("version", "created_at", "weights")  # not part of the version hash

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (unknown schema, corrupt, mismatched)."""


def _safetensors() -> Any:
    try:
        import safetensors.torch as st
    except ImportError:
        return None
    return st


def _digest(state: Mapping[str, torch.Tensor], body: Mapping[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(body, sort_keys=True).encode())
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return "seq-" + h.hexdigest()[:12]


def _body(model: SequenceModel, config: Mapping[str, Any]) -> dict[str, Any]:
    clash = set(config) & {*_MODEL_KEYS, *_DERIVED_KEYS}
    if clash:
        raise ValueError(f"config may not set {sorted(clash)}: they come from the model")
    body = json.loads(json.dumps(dict(config)))  # JSON-ready copy; fails early on odd values
    body.update(
        schema_version=SCHEMA_VERSION,
        architecture=model.arch.to_dict(),
        features=model.spec.to_dict(),
        normalisation={
            "mean": model.num_mean.tolist(),
            "std": model.num_std.tolist(),
            "logit_offset": float(model.logit_offset),
        },
    )
    if model.entity_names:  # absent in checkpoints without entity features (and in older ones): none read
        body["entity"] = {"names": list(model.entity_names), "mean": model.entity_mean.tolist(),
                          "std": model.entity_std.tolist()}
    return body


def save_checkpoint(model: SequenceModel, config: Mapping[str, Any], path: str | Path) -> str:
    """Write ``model`` and ``config`` (training metadata: data hash, metrics, ...) to ``path``; return the version.

    The directory is written beside ``path`` and renamed into place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    body = _body(model, config)
    version = _digest(state, body)
    st = _safetensors()
    weights = _SAFETENSORS if st is not None else _TORCH
    meta = {"version": version, "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "weights": weights}
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        if st is not None:
            st.save_file(state, str(tmp / weights))
        else:
            torch.save(state, tmp / weights)
        (tmp / _CONFIG).write_text(json.dumps({**meta, **body}, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)
        if path.exists():
            # A directory cannot be renamed over a non-empty one: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.rename(path, old / "ckpt")
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return version


def read_config(path: str | Path) -> dict[str, Any]:
    """The checkpoint's ``config.json``, schema version checked."""
    file = Path(path) / _CONFIG
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    schema = config.get("schema_version") if isinstance(config, dict) else None
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise CheckpointError(f"{file}: schema_version missing or not an integer: {schema!r}")
    if schema > SCHEMA_VERSION:
        raise CheckpointError(
            f"{file}: schema_version {schema} is newer than this fraudstream supports ({SCHEMA_VERSION}); "
            "upgrade fraudstream or retrain with this version"
        )
    if schema not in _SUPPORTED:
        raise CheckpointError(f"{file}: unknown schema_version {schema}; supported: {sorted(_SUPPORTED)}")
    return config


def _load_state(path: Path, weights: str) -> dict[str, torch.Tensor]:
    if weights == _SAFETENSORS:
        st = _safetensors()
        if st is None:
            raise CheckpointError(f"{path}: weights are safetensors but the safetensors package is not installed")
        return dict(st.load_file(str(path / weights)))
    if weights == _TORCH:
        try:
            # weights_only: tensors and plain containers only; a pickled object is refused.
            state = torch.load(path / weights, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError) as exc:
            raise CheckpointError(f"{path / weights}: refused or unreadable ({exc})") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path / weights}: expected a state dict, got {type(state).__name__}")
        return state
    raise CheckpointError(f"{path}: unknown weights file {weights!r}")


def load_checkpoint(path: str | Path, threads: int | None = None, precision: str = "float32") -> SequenceScorer:
    """A :class:`SequenceScorer` from a checkpoint directory (``threads``, ``precision``: see :class:`SequenceScorer`)."""
    path = Path(path)
    config = read_config(path)
    try:
        spec = StepSpec.from_dict(config["features"])
        arch = Architecture(**config["architecture"])
        norm = config["normalisation"]
        entity = config.get("entity") or {}
        model = SequenceModel(spec, arch, norm["mean"], norm["std"], norm["logit_offset"],
                              entity_names=entity.get("names", ()), entity_mean=entity.get("mean"),
                              entity_std=entity.get("std"))
        state = _load_state(path, config.get("weights", _TORCH))
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: does not match this model ({exc})") from None
    body = {k: v for k, v in config.items() if k not in _DERIVED_KEYS}
    if _digest(model.state_dict(), body) != config.get("version"):
        raise CheckpointError(f"{path}: weights and config.json do not match version {config.get('version')!r}")
    return SequenceScorer(model, version=config["version"], threads=threads, config=config, precision=precision)


class CheckpointWatcher:
    """Polls a checkpoint directory; :meth:`maybe_reload` returns a new scorer when it changed.

    Call it between micro-batches. ``current_version`` is the checkpoint id
    already serving (:attr:`SequenceScorer.checkpoint_version`, without
    ``+bf16``); None: the first present checkpoint counts as new. A checkpoint
    that fails to load is logged and retried at the next poll; the old model
    keeps serving.
    """

    def __init__(
        self,
        path: str | Path,
        poll_s: float = 5.0,
        threads: int | None = None,
        current_version: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        precision: str = "float32",
    ) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self.threads = threads
        self.precision = precision
        self.current_version = current_version
        self._clock = clock
        self._next_poll = float("-inf")
        self._seen: tuple[int, int, int] | None = None

    def maybe_reload(self) -> SequenceScorer | None:
        """A freshly loaded scorer if the checkpoint's version changed since last time, else None."""
        now = self._clock()
        if now < self._next_poll:
            return None
        self._next_poll = now + self.poll_s
        try:
            st = (self.path / _CONFIG).stat()
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return None
        try:
            if read_config(self.path).get("version") == self.current_version:
                self._seen = key
                return None
            scorer = load_checkpoint(self.path, self.threads, self.precision)
        except (OSError, CheckpointError) as exc:
            log.warning("sequence checkpoint %s not loaded, keeping %s: %s", self.path, self.current_version, exc)
            return None
        self._seen = key
        self.current_version = scorer.checkpoint_version
        log.info("sequence model switched to %s", scorer.version)
        return scorer
