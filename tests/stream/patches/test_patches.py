"""The patches of Faust and aiokafka (stream/patches/): the version check, their documentation, apply()."""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import pkgutil
import re
import uuid
from pathlib import Path
from typing import Any

import faust
import pytest

from stream import patches
from stream.contracts.settings import Settings
from stream.patches import PatchVersionError, apply, check_versions

REPO = Path(__file__).resolve().parents[3]
SECTIONS = ("Symptom", "Upstream", "Test", "Versions")


def _app() -> faust.App:
    return faust.App(f"patches-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:9", autodiscover=False)


def test_the_installed_versions_are_those_the_patches_were_written_for() -> None:
    assert set(patches.WRITTEN_FOR) == {"faust-streaming", "aiokafka"}
    for distribution, expected in patches.WRITTEN_FOR.items():
        assert importlib.metadata.version(distribution) == expected
    assert check_versions() == []


def test_another_expected_version_is_refused_naming_both_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = importlib.metadata.version("aiokafka")
    monkeypatch.setitem(patches.WRITTEN_FOR, "aiokafka", "0.13.1")
    with pytest.raises(PatchVersionError, match=rf"aiokafka {re.escape(installed)} is installed, but the patches in "
                                                r"stream/patches/ were written for aiokafka 0\.13\.1 \(.*"
                                                r"aiokafka_accumulator.*\)"):
        check_versions()


def test_another_installed_version_is_refused_naming_both_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = patches.WRITTEN_FOR["faust-streaming"]
    installed = {"faust-streaming": "0.16.0", "aiokafka": None}
    monkeypatch.setattr(patches, "_installed_version", lambda distribution: installed[distribution])
    with pytest.raises(PatchVersionError, match=r"aiokafka \(not installed\) is installed, but .* aiokafka 0\.14\.0 "
                                                rf".*; faust-streaming 0\.16\.0 is installed, but .* written for "
                                                rf"faust-streaming {re.escape(expected)} "):
        check_versions()


def test_apply_checks_the_versions_before_it_patches_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    patched: list[int] = []
    monkeypatch.setattr(patches, "apply_consumer_fixes", lambda fetch_max_wait_ms=0: patched.append(fetch_max_wait_ms))
    monkeypatch.setitem(patches.WRITTEN_FOR, "faust-streaming", "0.14.9")
    with pytest.raises(PatchVersionError, match=r"written for faust-streaming 0\.14\.9"):
        apply(Settings())
    assert patched == []


def test_allowing_untested_dependencies_turns_the_refusal_into_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    installed = importlib.metadata.version("faust-streaming")
    patched: list[int] = []
    monkeypatch.setattr(patches, "apply_consumer_fixes", lambda fetch_max_wait_ms=0: patched.append(fetch_max_wait_ms))
    monkeypatch.setattr(patches, "raise_producer_buffer_limit", lambda at_least: None)
    monkeypatch.setitem(patches.WRITTEN_FOR, "faust-streaming", "0.14.9")
    settings = Settings.from_env({"FRAUDSTREAM_ALLOW_UNTESTED_DEPENDENCIES": "1", "FRAUDSTREAM_FETCH_MAX_WAIT_MS": "7"})
    with caplog.at_level(logging.WARNING, logger="fraudstream.patches"):
        apply(settings)
    assert patched == [7]  # the worker starts, patched as usual
    (record,) = [r for r in caplog.records if r.name == "fraudstream.patches"]
    assert record.levelno == logging.WARNING
    assert f"faust-streaming {installed} is installed" in record.getMessage()
    assert "written for faust-streaming 0.14.9" in record.getMessage()


def _sections(doc: str) -> dict[str, str]:
    """A module docstring's ``Name:`` sections (a line of its own, then an indented body)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^(\w+):\n((?:(?:    .*)?\n)+)", doc + "\n", re.MULTILINE):
        found[match.group(1)] = match.group(2).strip()
    return found


def _modules() -> list[Any]:
    return [importlib.import_module(f"stream.patches.{info.name}") for info in pkgutil.iter_modules(patches.__path__)]


def test_every_patch_module_documents_symptom_upstream_test_and_versions() -> None:
    modules = _modules()
    assert len(modules) >= 12
    assert set(modules) == set(patches.MODULES), "a patch module that MODULES (hence check_versions) misses"
    for module in modules:
        name = module.__name__
        sections = _sections(module.__doc__ or "")
        assert [s for s in SECTIONS if s in sections] == list(SECTIONS), f"{name} lacks a section: {list(sections)}"
        assert list(sections)[:4] == list(SECTIONS), f"{name}: sections out of order"
        assert all(len(sections[s]) > 20 for s in SECTIONS), f"{name}: an empty section"
        assert module.WRITTEN_FOR, f"{name} names no version it was written for"
        for distribution, version in module.WRITTEN_FOR.items():
            assert f"{distribution} {version}" in " ".join(sections["Versions"].split()), (name, distribution)
        upstream = sections["Upstream"]
        assert re.search(r"[\w-]+/[\w-]+#\d+", upstream) or "No upstream issue found" in upstream, name
        named = re.findall(r"(tests/[\w/]+\.py)::(\w+)", sections["Test"])
        assert named, f"{name} names no test that fails without it"
        for path, test in named:
            source = (REPO / path).read_text()
            assert re.search(rf"^def {test}\(", source, re.MULTILINE), f"{name} names a missing test {path}::{test}"


def _class_patch_points() -> list[tuple[Any, str]]:
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, ConsumerRebalanceListener
    from faust.transport.producer import ProducerBuffer

    return [(AIOKafkaConsumerThread, "_create_worker_consumer"), (AIOKafkaConsumerThread, "_fetch_records"),
            (AIOKafkaConsumerThread, "_highwaters"), (ConsumerRebalanceListener, "on_partitions_revoked"),
            (Recovery, "on_recovery_completed"), (Consumer, "on_buffer_drop"), (Consumer, "_wait_next_records"),
            (Consumer, "_drain_messages"), (ProducerBuffer, "size"), (ProducerBuffer, "max_messages"),
            (Fetcher, "_proc_fetch_request"), (GroupCoordinator, "_maybe_leave_group")]


def test_apply_twice_patches_nothing_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    points = _class_patch_points()
    for owner, name in points:  # every class goes back to how it was after the test
        monkeypatch.setattr(owner, name, owner.__dict__[name])
    for owner in {owner for owner, _ in points}:  # patched earlier in this process: the guards open again
        for marker in [k for k in owner.__dict__ if k.startswith("_fraudstream_") and k.endswith("_fix")]:
            monkeypatch.setattr(owner, marker, False)
    monkeypatch.setattr(patches, "_embedded", False)
    settings = Settings(embedded_broker_compat=True, fetch_max_wait_ms=10, batch_size=300)
    app = _app()

    def wrapped(function: Any) -> Any:
        """What a patched method calls on (the set_fetch_max_wait patch is remade on each call, around Faust's)."""
        cells = dict(zip(function.__code__.co_freevars, function.__closure__ or (), strict=True))
        return cells["original"].cell_contents if "original" in cells else None

    apply(settings, app)
    first = [owner.__dict__[name] for owner, name in points]
    apply(settings, app)
    apply(settings)
    again = [owner.__dict__[name] for owner, name in points]
    assert again[1:] == first[1:]  # the same patched methods, not patches of patches
    assert wrapped(again[0]) is wrapped(first[0]) is not None and wrapped(wrapped(again[0])) is None
    from faust.transport.consumer import Consumer

    assert Consumer._drain_messages.__name__ == "_drain_messages_direct"
    assert first[points.index((type(app.producer.buffer), "max_messages"))] >= 8 * 300


def test_the_fetch_wait_setting_reaches_fausts_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from stream.patches.faust_fetch_max_wait import set_fetch_max_wait

    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer",
                        AIOKafkaConsumerThread.__dict__["_create_worker_consumer"])
    set_fetch_max_wait(10)
    app = _app()

    async def built() -> int:
        thread: Any = app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)  # not started: no broker needed
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(built()) == 10  # Faust's own is a fixed 1500


def test_the_producer_buffer_holds_a_few_micro_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.transport.producer import ProducerBuffer

    monkeypatch.setattr(ProducerBuffer, "max_messages", 100)  # Faust's
    apply(Settings(batch_size=512))
    assert _app().producer.buffer.max_messages == 8 * 512
    apply(Settings(batch_size=16))
    assert ProducerBuffer.max_messages == 8 * 512  # never lowered


def test_a_tables_own_codec_reaches_its_changelog_topic() -> None:
    from models.history import new_history
    from stream.kafka.state import HistoryCodec, define_tables

    app = _app()
    history, features, _ = define_tables(app, Settings())
    topic = history.changelog_topic
    assert isinstance(topic.value_serializer, HistoryCodec)  # Faust had made it with JSON
    assert topic.get_topic_name() == f"{app.conf.id}-history-changelog"
    assert topic.schema.value_serializer is history.value_serializer
    assert HistoryCodec().loads(HistoryCodec().dumps(new_history())) == new_history()
    assert features.changelog_topic.value_serializer == "json"  # the other tables keep Faust's
