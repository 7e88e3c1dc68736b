"""Checkpoints: round trip, safe loading, schema checks, atomic replace, hot reload."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from models import checkpoint
from models.checkpoint import (
    SCHEMA_VERSION,
    CheckpointError,
    CheckpointWatcher,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from models.sequence import Architecture, SequenceModel
from models.steps import STEP_NUMERIC, StepSpec
from tests.models.test_sequence import card_items

SMALL = Architecture(d_model=16, n_layers=1, n_heads=2, dim_feedforward=32)
_UNPICKLED: list[str] = []


def _mark(text: str) -> None:
    """What a malicious pickle would run on load."""
    _UNPICKLED.append(text)


def small_model(seed: int = 0) -> SequenceModel:
    torch.manual_seed(seed)
    return SequenceModel(StepSpec(n=8, merchant_buckets=64), SMALL, [0.5] * len(STEP_NUMERIC), [2.0] * len(STEP_NUMERIC), logit_offset=-3.0)


def edit_config(path: Path, **changes: object) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def test_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    model = small_model()
    meta = {"training_data_hash": "ab" * 32, "metrics": {"val_average_precision": 0.42}}
    version = save_checkpoint(model, meta, tmp_path / "seq")
    scorer = load_checkpoint(tmp_path / "seq", threads=torch.get_num_threads())
    items = card_items()
    from models.sequence import SequenceScorer

    assert np.array_equal(scorer.score_batch(items), SequenceScorer(model, "x").score_batch(items))
    config = read_config(tmp_path / "seq")
    assert scorer.version == version == config["version"] and version.startswith("seq-")
    assert config["schema_version"] == SCHEMA_VERSION and config["training_data_hash"] == "ab" * 32
    assert config["architecture"]["d_model"] == 16 and config["features"]["n"] == 8
    assert config["normalisation"]["logit_offset"] == -3.0 and config["normalisation"]["std"] == [2.0] * len(STEP_NUMERIC)
    assert config["metrics"] == {"val_average_precision": 0.42} and config["created_at"]
    # Same weights and metadata, same version; different weights, different version.
    assert save_checkpoint(model, meta, tmp_path / "again") == version
    assert save_checkpoint(small_model(seed=1), meta, tmp_path / "other") != version


def test_a_model_reading_terminal_features_round_trips_and_scores_with_them(tmp_path: Path) -> None:
    from models.profile_features import ENTITY_INPUTS, entity_feature_names
    from models.sequence import SequenceScorer

    names = entity_feature_names("merchant_id")
    torch.manual_seed(0)
    model = SequenceModel(StepSpec(n=8, merchant_buckets=64), SMALL, [0.5] * len(STEP_NUMERIC),
                          [2.0] * len(STEP_NUMERIC), entity_names=names, entity_mean=[0.1] * len(names),
                          entity_std=[0.5] * len(names))
    torch.nn.init.normal_(model.entity.weight)  # type: ignore[union-attr]
    save_checkpoint(model, {}, tmp_path / "seq")
    scorer = load_checkpoint(tmp_path / "seq", threads=torch.get_num_threads())
    assert scorer.model.entity_names == names and read_config(tmp_path / "seq")["entity"]["std"] == [0.5] * len(names)
    items = card_items()
    risky = np.zeros(len(ENTITY_INPUTS))
    risky[ENTITY_INPUTS.index("merchant_fraud_30d")] = 3.0
    with_risk = [item._replace(entity=risky) for item in items]
    assert np.array_equal(scorer.score_batch(with_risk), SequenceScorer(model, "x").score_batch(with_risk))
    assert not np.array_equal(scorer.score_batch(with_risk), scorer.score_batch(items))  # it reads them
    # A model trained without them (or before them) reads none: its checkpoint has no "entity" section.
    save_checkpoint(small_model(), {}, tmp_path / "plain")
    assert "entity" not in read_config(tmp_path / "plain")
    assert load_checkpoint(tmp_path / "plain").model.entity_names == ()


def test_weights_file_is_loaded_without_unpickling_code(tmp_path: Path) -> None:
    save_checkpoint(small_model(), {}, tmp_path / "seq")
    if read_config(tmp_path / "seq")["weights"] != "weights.pt":
        pytest.skip("safetensors installed: no pickle involved at all")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (_mark, ("code ran",))

    weights = tmp_path / "seq" / "weights.pt"
    torch.save({"numeric.weight": Evil()}, weights)
    with pytest.raises(CheckpointError, match="refused or unreadable"):
        load_checkpoint(tmp_path / "seq")
    assert _UNPICKLED == []
    torch.load(weights, weights_only=False)  # the payload is real: plain unpickling runs it
    assert _UNPICKLED == ["code ran"]
    _UNPICKLED.clear()


def test_unknown_or_newer_schema_is_refused(tmp_path: Path) -> None:
    save_checkpoint(small_model(), {}, tmp_path / "seq")
    edit_config(tmp_path / "seq", schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(CheckpointError, match="newer than this fraudstream supports"):
        load_checkpoint(tmp_path / "seq")
    for bad in (0, "1", None):
        edit_config(tmp_path / "seq", schema_version=bad)
        with pytest.raises(CheckpointError, match="schema_version"):
            load_checkpoint(tmp_path / "seq")


def test_mismatched_weights_are_refused(tmp_path: Path) -> None:
    save_checkpoint(small_model(), {}, tmp_path / "seq")
    edit_config(tmp_path / "seq", metrics={"val_average_precision": 0.99})  # changes the hashed body
    with pytest.raises(CheckpointError, match="do not match version"):
        load_checkpoint(tmp_path / "seq")
    save_checkpoint(small_model(), {}, tmp_path / "seq")
    edit_config(tmp_path / "seq", architecture={**SMALL.to_dict(), "d_model": 32})
    with pytest.raises(CheckpointError, match="does not match this model"):
        load_checkpoint(tmp_path / "seq")


def test_missing_safetensors_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(small_model(), {}, tmp_path / "seq")
    edit_config(tmp_path / "seq", weights="weights.safetensors")
    monkeypatch.setattr(checkpoint, "_safetensors", lambda: None)
    with pytest.raises(CheckpointError, match="safetensors package"):
        load_checkpoint(tmp_path / "seq")


def test_model_keys_cannot_be_overridden(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="schema_version"):
        save_checkpoint(small_model(), {"schema_version": 9}, tmp_path / "seq")


def test_save_replaces_in_place_without_leftovers(tmp_path: Path) -> None:
    first = save_checkpoint(small_model(0), {}, tmp_path / "seq")
    second = save_checkpoint(small_model(1), {}, tmp_path / "seq")
    assert first != second and load_checkpoint(tmp_path / "seq").version == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


def test_watcher_switches_to_a_new_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    path = tmp_path / "seq"
    watcher = CheckpointWatcher(path, poll_s=10.0, clock=lambda: now[0])
    assert watcher.maybe_reload() is None  # nothing there yet
    first = save_checkpoint(small_model(0), {}, path)
    assert watcher.maybe_reload() is None  # within the poll interval
    now[0] = 10.0
    scorer = watcher.maybe_reload()
    assert scorer is not None and scorer.version == first
    now[0] = 20.0
    assert watcher.maybe_reload() is None  # unchanged
    second = save_checkpoint(small_model(1), {}, path)
    now[0] = 30.0
    new = watcher.maybe_reload()
    assert new is not None and new.version == second == watcher.current_version
    # A broken checkpoint keeps the current model and is retried later.
    save_checkpoint(small_model(2), {}, path)
    edit_config(path, schema_version=SCHEMA_VERSION + 1)
    now[0] = 40.0
    with caplog.at_level(logging.WARNING, logger="models.checkpoint"):
        assert watcher.maybe_reload() is None
    assert "keeping " + second in caplog.text
    third = save_checkpoint(small_model(3), {}, path)
    now[0] = 50.0
    latest = watcher.maybe_reload()
    assert latest is not None and latest.version == third


def test_watcher_knows_the_version_already_serving(tmp_path: Path) -> None:
    version = save_checkpoint(small_model(), {}, tmp_path / "seq")
    watcher = CheckpointWatcher(tmp_path / "seq", poll_s=0.0, current_version=version)
    assert watcher.maybe_reload() is None


def test_watcher_loads_in_the_workers_precision_and_tracks_the_checkpoint_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.sequence.bfloat16_supported", lambda: True)  # emulated where not native: slow, same path
    path = tmp_path / "seq"
    version = save_checkpoint(small_model(0), {}, path)
    watcher = CheckpointWatcher(path, poll_s=0.0, precision="bfloat16")
    scorer = watcher.maybe_reload()
    assert scorer is not None and scorer.checkpoint_version == version == watcher.current_version
    assert scorer.version == version + "+bf16"
    edit_config(path)  # rewritten, same version: not a new model
    assert watcher.maybe_reload() is None
