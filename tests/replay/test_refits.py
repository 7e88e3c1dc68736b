"""``--wait-for-refits``: the replay holds where the engine's trees fall due, until the refit is reported."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer

from replay.generate import GeneratorConfig, generate, write
from replay.plan import LabelPolicy
from replay.refits import RefitGate, reported_until
from replay.replay import ReplayConfig, ReplayError, run_replay
from replay.replay_cli import cli
from stream.contracts.records import Limits, parse_feedback, parse_transaction
from stream.contracts.settings import Settings
from stream.tools.broker import free_port
from tests.support import read_to_end, wait_for

HOUR = 3_600_000


# --------------------------------------------------------------------------- the gate (no broker)

def test_the_gate_holds_each_engine_until_it_reports_the_refit_period_the_labels_reached() -> None:
    gate = RefitGate(refit_ms=10, engines=("a", "b"))
    assert gate.holding(10**9) == [] and gate.due_at() is None, "no label sent yet: nothing to wait for"
    gate.start(13)  # the first label: the trainer passes period 10 without a report
    gate.start(99)  # only the first counts
    assert (gate.holding(19), gate.holding(20), gate.due_at()) == ([], ["a", "b"], 20)
    gate.report("a", 20)
    gate.report("b", 30)  # a refit of a later period covers the ones before
    gate.report("c", 90)  # not watched
    assert (gate.holding(29), gate.holding(30), gate.holding(40), gate.due_at()) == ([], ["a"], ["a", "b"], 30)
    gate.report("a", 10)  # an older report changes nothing
    assert gate.reported["a"] == 20


def test_a_wait_ends_when_the_period_is_reported_or_gives_the_engine_up_after_the_timeout() -> None:
    async def scenario() -> tuple[float, float, RefitGate]:
        gate = RefitGate(refit_ms=10, engines=("a", "b"), timeout_s=0.3)
        gate.start(0)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, gate.report, "a", 10)
        loop.call_later(0.1, gate.report, "b", 10)
        began = time.monotonic()
        await gate.wait(12)
        reported = time.monotonic() - began
        began = time.monotonic()
        loop.call_later(0.05, gate.report, "a", 20)
        await gate.wait(25)  # b never reports: on after the timeout, and b is not waited for again
        gave_up = time.monotonic() - began
        return reported, gave_up, gate

    reported, gave_up, gate = asyncio.run(scenario())
    assert 0.08 < reported < 0.3 and gave_up >= 0.3
    assert (gate.waits, gate.timeouts, gate.given_up) == (1, 1, {"b"})
    assert (gate.holding(29), gate.holding(30)) == ([], ["a"])


def test_refits_and_skipped_periods_of_the_engine_count() -> None:
    refit = {"type": "trees_refit", "fitted_until_ms": 7, "app_id": "fraudstream"}
    skipped = {"type": "trees_refit_skipped", "until_ms": 8, "reason": "too_few_frauds", "app_id": "fraudstream"}
    assert reported_until(json.dumps(refit).encode(), "fraudstream") == 7
    assert reported_until(json.dumps(skipped).encode(), None) == 8
    assert reported_until(json.dumps(refit).encode(), "another-app") is None
    assert reported_until(json.dumps({**refit, "type": "trees_refit_failed"}).encode(), None) is None
    assert reported_until(json.dumps({**refit, "fitted_until_ms": "7"}).encode(), None) is None
    assert reported_until(json.dumps({**skipped, "until_ms": True}).encode(), None) is None
    assert reported_until(b"[1]", None) is None and reported_until(None, None) is None


def test_waiting_needs_trees(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_TREES_REFIT_S", "0")
    path = tmp_path / "t.csv"
    path.write_text("transaction_id,card_id,timestamp,amount\nt1,c1,1740830400000,5\n")
    assert cli([str(path), "--wait-for-refits", "--quiet"]) == 2
    assert "FRAUDSTREAM_TREES_REFIT_S is 0" in capsys.readouterr().err
    with pytest.raises(ReplayError, match="FRAUDSTREAM_TREES_REFIT_S"):
        run_replay(ReplayConfig(path, settings=Settings(trees_refit_s=0.0), quiet=True,
                                wait_for_refits=(("ops", None),)))


# --------------------------------------------------------------------------- through a broker

class Trainer(threading.Thread):
    """A stand-in trainer that reports as the engine's does: it reads the labels and, each time their newest
    transaction enters a new refit period, "fits" (a pause) and reports ``trees_refit`` up to that period's
    start, or, for the first period passed, ``trees_refit_skipped`` (too few frauds yet)."""

    def __init__(self, settings: Settings, refit_ms: int, delay_ms: int, fit_s: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.settings, self.refit_ms, self.delay_ms, self.fit_s = settings, refit_ms, delay_ms, fit_s
        self.stop = threading.Event()
        self.reports: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _run(self) -> None:
        s = self.settings
        limits = Limits.from_settings(s)
        consumer = KafkaConsumer(s.topic_feedback, bootstrap_servers=s.bootstrap_servers, auto_offset_reset="earliest",
                                 enable_auto_commit=False, group_id=None)
        producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers)
        passed: int | None = None
        try:
            while not self.stop.is_set():
                for records in consumer.poll(timeout_ms=50).values():
                    for r in records:
                        fb = parse_feedback(r.value, limits)
                        assert fb.labelled_at_ms is not None
                        period = (fb.labelled_at_ms - self.delay_ms) // self.refit_ms * self.refit_ms
                        if passed is None:
                            passed = period
                        if period <= passed:
                            continue
                        passed = period
                        if self.reports:
                            time.sleep(self.fit_s)
                            record = {"type": "trees_refit", "fitted_until_ms": period}
                        else:
                            record = {"type": "trees_refit_skipped", "until_ms": period, "reason": "too_few_frauds"}
                        self.reports.append(record)
                        producer.send(s.topic_ops, key=b"trainer", partition=0,
                                      value=json.dumps({**record, "app_id": s.app_id}).encode()).get(10)
        finally:
            producer.close()
            consumer.close()


@pytest.mark.broker
def test_the_replay_sends_nothing_past_a_due_refit_until_it_is_reported(settings: Settings, tmp_path: Path) -> None:
    """Every transaction after the label that made refit k due is on Kafka only after refit k's report.

    At full speed a replay of 3 days sends in about a second what a trainer that takes 0.3 s a fit could
    refit on only a few times; held, it gets a refit every 6 hours of event time.
    """
    refit_ms, delay_ms = 6 * HOUR, 2 * HOUR
    settings = settings.replace(trees_refit_s=refit_ms / 1000)
    path = write(generate(GeneratorConfig(seed=5, n_transactions=1500, n_cards=80, n_merchants=60, days=3)),
                 tmp_path / "tx.parquet")
    trainer = Trainer(settings, refit_ms, delay_ms)
    trainer.start()
    try:
        summary = run_replay(ReplayConfig(path, settings=settings, quiet=True, labels=LabelPolicy(delay_ms=delay_ms),
                                          wait_for_refits=((settings.topic_ops, settings.app_id),),
                                          refit_timeout_s=30))
    finally:
        trainer.stop.set()
        trainer.join(10)
    assert trainer.error is None, trainer.error
    assert summary.complete and summary.refit_timeouts == 0
    assert summary.refit_waits >= 8, f"3 days hold about 11 times for a 6-hour refit: {summary.line()}"
    assert "tree refits" in summary.line()

    ops = read_to_end(settings.bootstrap_servers, settings.topic_ops, decode=False)
    periods = [json.loads(r.value).get("fitted_until_ms", json.loads(r.value).get("until_ms")) for r in ops]
    assert periods == [r.get("fitted_until_ms", r.get("until_ms")) for r in trainer.reports]
    assert set(np.diff(periods)) == {refit_ms}, "every period reported once, in order"
    limits = Limits.from_settings(settings)
    sent = [(parse_transaction(r.value, limits).event_time_ms, r.timestamp)
            for r in read_to_end(settings.bootstrap_servers, settings.topic_transactions, decode=False)]
    times = np.sort([event_ms for event_ms, _ in sent])
    early: list[Any] = []
    for period, r in zip(periods, ops, strict=True):
        # The label that held the replay is that of the period's first transaction; whatever comes after it in
        # event time must be on Kafka only after the report.
        first = int(times[np.searchsorted(times, period)])
        early += [(event_ms, period) for event_ms, appended in sent
                  if event_ms > first + delay_ms and appended < r.timestamp]
    assert early == [], f"{len(early)} transactions sent before the report of the refit period they came after"


@pytest.mark.broker
@pytest.mark.slow
def test_a_replay_through_the_engine_gets_a_refit_each_refit_period(settings: Settings, worker_factory: Any,
                                                                    tmp_path: Path) -> None:
    """The real trainer: with the replay held, every whole refit period of event time gets its trees."""
    refit_ms, delay_ms = 12 * HOUR, 2 * HOUR
    # A CPU share of 1: nothing but the schedule holds a fit back (a trainer that fitted the period it had just
    # installed again would show here).
    settings = settings.replace(trees_refit_s=refit_ms / 1000, trees_min_frauds=5, trees_cpu_share=1.0,
                                web_enabled=True, web_port=free_port())
    path = write(generate(GeneratorConfig(seed=8, n_transactions=3000, n_cards=150, n_merchants=80, days=4,
                                          fraud_rate=0.01)), tmp_path / "tx.parquet")
    worker = worker_factory(settings)

    def ready() -> bool:
        try:
            return bool(worker.get_json("/ready")["ready"])
        except OSError:
            return False

    assert wait_for(ready, timeout=90), worker.log_tail()
    summary = run_replay(ReplayConfig(path, settings=settings, quiet=True, labels=LabelPolicy(delay_ms=delay_ms),
                                      wait_for_refits=((settings.topic_ops, settings.app_id),), refit_timeout_s=60))
    assert summary.complete and summary.refit_timeouts == 0, worker.log_tail()
    ops = [json.loads(r.value) for r in read_to_end(settings.bootstrap_servers, settings.topic_ops, decode=False)]
    fitted = [o["fitted_until_ms"] for o in ops if o["type"] == "trees_refit"]
    passed = sorted(fitted + [o["until_ms"] for o in ops if o["type"] == "trees_refit_skipped"])
    # 4 days less the label delay: periods skipped until 5 frauds are labelled, then a refit at each.
    assert summary.refit_waits >= 4 and len(fitted) >= 3, (summary.line(), ops)
    assert set(np.diff(passed)) == {refit_ms}, f"each refit period reported once: {passed}"
    assert all(f % refit_ms == 0 for f in fitted), f"refits fall on whole periods: {fitted}"
    assert fitted[-1] == passed[-1], "no skip after the first refit"
    assert worker.get_json("/stats/")["stats"]["trees_refits"] == len(fitted), "one fit per period"
