"""Replay: event-time planning, pacing, and resuming through a real broker with no gap and no duplicate."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.generate import GeneratorConfig, generate, write
from replay.mapping import Rows
from replay.plan import LabelPolicy, plan
from replay.progress import Pace, Schedule
from replay.replay import PACED_TICK_S, ReplayConfig, ReplayError, ReplaySummary, run_replay
from replay.replay_cli import cli
from stream.contracts.records import Limits, parse_feedback, parse_rfc3339_ms, parse_transaction
from stream.contracts.settings import Settings
from tests.support import REPO, read_to_end, wait_for

T0 = 1_740_830_400_000  # 2025-03-01T12:00:00Z
MIN = 60_000


def rows_of(*specs: tuple[str, str, int, int]) -> Rows:
    """Rows from ``(transaction_id, card_id, minutes after T0, label)``."""
    return Rows(
        row_number=np.arange(1, len(specs) + 1), transaction_id=pa.array([s[0] for s in specs]),
        card_id=pa.array([s[1] for s in specs]), time_ms=np.array([T0 + s[2] * MIN for s in specs]),
        amount=np.full(len(specs), 10.0), optional={}, label=np.array([s[3] for s in specs], np.int8), scenario=None)


def order(p: Any) -> list[tuple[str, str, int]]:
    return [(e.kind[0], e.value["transaction_id"], (e.time_ms - T0) // MIN) for e in p.events()]


# --------------------------------------------------------------------------- planning (pure)

def test_transactions_and_delayed_labels_interleave_in_event_time_order() -> None:
    rows = rows_of(("t1", "c1", 0, 1), ("t2", "c2", 10, 0), ("t3", "c1", 20, 1), ("t4", "c3", 30, 0))
    p = plan(rows, LabelPolicy(delay_ms=15 * MIN))
    assert order(p) == [("t", "t1", 0), ("t", "t2", 10), ("l", "t1", 15), ("t", "t3", 20),
                        ("l", "t2", 25), ("t", "t4", 30), ("l", "t3", 35), ("l", "t4", 45)]
    label = next(e for e in p.events() if e.kind == "label")
    assert label.key == "c1" and label.value == {
        "transaction_id": "t1", "card_id": "c1", "label": "fraud", "source": "chargeback",
        "labelled_at": "2025-03-01T12:15:00.000Z"}
    assert [e.seq for e in p.events()] == list(range(8))


def test_late_labels_come_at_the_end_in_order_unless_dropped() -> None:
    rows = rows_of(("t1", "c1", 0, 1), ("t2", "c2", 10, 0), ("t3", "c1", 20, 0))
    p = plan(rows, LabelPolicy(delay_ms=15 * MIN))
    assert order(p) == [("t", "t1", 0), ("t", "t2", 10), ("l", "t1", 15), ("t", "t3", 20),
                        ("l", "t2", 25), ("l", "t3", 35)]
    # late labels are sent at the end without waiting for their event time
    assert ((p.pace_times(0, len(p)) - T0) // MIN).tolist() == [0, 10, 15, 20, 20, 20]
    dropped = plan(rows, LabelPolicy(delay_ms=15 * MIN, drop_late=True))
    assert order(dropped) == [("t", "t1", 0), ("t", "t2", 10), ("l", "t1", 15), ("t", "t3", 20)]


def test_ties_put_the_transaction_before_labels_then_file_order() -> None:
    rows = rows_of(("b", "c1", 5, 1), ("a", "c2", 5, 0), ("c", "c3", 0, 0))
    assert order(plan(rows, LabelPolicy(delay_ms=0))) == [
        ("t", "c", 0), ("l", "c", 0), ("t", "b", 5), ("t", "a", 5), ("l", "b", 5), ("l", "a", 5)]


def test_immediate_share_of_fraud_gets_analyst_labels_chosen_by_seed() -> None:
    rows = rows_of(*[(f"t{i}", f"c{i % 7}", i, int(i % 3 == 0)) for i in range(60)])  # 20 fraud rows
    policy = LabelPolicy(delay_ms=1000 * MIN, immediate_share=0.25, immediate_delay_ms=2 * MIN, seed=1)
    labels = [e for e in plan(rows, policy).events() if e.kind == "label"]
    analyst = [e for e in labels if e.value["source"] == "analyst"]
    assert len(labels) == 60 and len(analyst) == 5
    assert all(e.value["label"] == "fraud" for e in analyst)
    tx_time = {f"t{i}": T0 + i * MIN for i in range(60)}
    for e in labels:
        delay = 2 * MIN if e.value["source"] == "analyst" else 1000 * MIN
        assert parse_rfc3339_ms(e.value["labelled_at"]) == e.time_ms == tx_time[e.value["transaction_id"]] + delay
    again = {e.value["transaction_id"] for e in plan(rows, policy).events() if e.value.get("source") == "analyst"}
    assert again == {e.value["transaction_id"] for e in analyst}
    other = {e.value["transaction_id"] for e in plan(rows, LabelPolicy(immediate_share=0.25, seed=2)).events()
             if e.value.get("source") == "analyst"}
    assert other != again


def test_labels_only_fraud_and_no_label_column() -> None:
    rows = rows_of(("t1", "c1", 0, 1), ("t2", "c2", 1, 0), ("t3", "c1", 2, 1))
    labels = [e.value["transaction_id"] for e in plan(rows, LabelPolicy(only_fraud=True)).events() if e.kind == "label"]
    assert labels == ["t1", "t3"]
    unlabelled = Rows(**{**rows.__dict__, "label": None})
    assert [e.kind for e in plan(unlabelled).events()] == ["transaction"] * 3


def test_schedule_is_anchored_and_caps_catch_up_bursts() -> None:
    now = [0.0]
    s = Schedule(Pace.parse(rate=100), clock=lambda: now[0], max_lag_s=1.0)
    times = np.zeros(1000, dtype=np.int64)
    s.start(0, 0)
    assert s.due_count(0, times) == 1
    now[0] = 0.5  # 50 more are due; no drift from how long sends took
    assert s.due_count(1, times[1:]) == 50
    now[0] = 10.0  # stalled 9.5 s: only 1 s worth (100 events) is sent in a burst
    assert s.due_count(51, times[51:]) == 101
    fast = Schedule(Pace.parse("60x"), clock=lambda: now[0])
    fast.start(0, 0)
    assert fast.delay(1, 120_000) == pytest.approx(2.0)


# --------------------------------------------------------------------------- through the broker

def headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    table = generate(GeneratorConfig(seed=5, n_transactions=1000, n_cards=80, n_merchants=60, days=3))
    return write(table, tmp_path / "tx.parquet")


def config(settings: Settings, path: Path, **kw: Any) -> ReplayConfig:
    return ReplayConfig(input=path, settings=settings, quiet=True, **kw)


def assert_exactly_once(settings: Settings, path: Path, labels: bool = True) -> list[Any]:
    """Each transaction (and label) once, none missing, each partition in replay order."""
    ids = pq.read_table(path, columns=["transaction_id"])["transaction_id"].to_pylist()
    topics = [settings.topic_transactions] + ([settings.topic_feedback] if labels else [])
    everything = []
    for topic in topics:
        records = read_to_end(settings.bootstrap_servers, topic, decode=False)
        counts = Counter(json.loads(r.value)["transaction_id"] for r in records)
        assert [tid for tid, n in counts.items() if n > 1] == [], f"duplicates on {topic}"
        assert sorted(counts) == sorted(ids), f"gap on {topic}"
        by_partition: dict[int, list[int]] = {}
        for r in records:
            by_partition.setdefault(r.partition, []).append(int(headers(r)["replay.seq"]))
        assert all(seqs == sorted(seqs) for seqs in by_partition.values()), f"out of order on {topic}"
        everything.extend(records)
    return everything


@pytest.mark.broker
def test_end_to_end_transactions_and_labels(settings: Settings, data_file: Path) -> None:
    policy = LabelPolicy(delay_ms=2 * 3_600_000, immediate_share=0.5, immediate_delay_ms=10 * MIN)
    summary = run_replay(config(settings, data_file, labels=policy, verify=True))
    assert summary.complete and summary.rejects == []
    assert (summary.transactions_sent, summary.labels_sent) == (1000, 1000)
    tx = read_to_end(settings.bootstrap_servers, settings.topic_transactions, decode=False)
    fb = read_to_end(settings.bootstrap_servers, settings.topic_feedback, decode=False)
    assert len(tx) == 1000 and len(fb) == 1000
    limits = Limits.from_settings(settings)
    times = {}
    for r in tx:
        t = parse_transaction(r.value, limits)
        assert r.key == t.card_id.encode()
        times[t.transaction_id] = t.event_time_ms
    sources = Counter()
    for r in fb:
        f = parse_feedback(r.value, limits)
        assert r.key == f.card_id.encode()
        delay = 10 * MIN if f.source == "analyst" else 2 * 3_600_000
        assert f.labelled_at_ms == times[f.transaction_id] + delay
        sources[f.source] += 1
    assert sources["analyst"] == round(0.5 * 7.5) and sources["chargeback"] == 1000 - sources["analyst"]
    # both topics of a card share a partition number (co-partitioning for the engine's joins)
    assert {(r.key, r.partition) for r in fb} <= {(r.key, r.partition) for r in tx}


class RecordedSchedule(Schedule):
    """The replay's own schedule, noting each send it allows: the clock reading it decided on, the index of the
    first event sent, how many were sent, and the event time of the last of them."""

    def __init__(self, pace: Pace, clock: Callable[[], float] = time.monotonic, max_lag_s: float = 1.0) -> None:
        self.now = 0.0

        def reading() -> float:
            self.now = clock()
            return self.now

        super().__init__(pace, clock=reading, max_lag_s=max_lag_s)
        self.anchor: tuple[float, int, int] | None = None
        self.sends: list[tuple[float, int, int, int]] = []

    def start(self, index: int, time_ms: int) -> None:
        super().start(index, time_ms)
        self.anchor = (self.now, index, time_ms)

    def due_count(self, index: int, times_ms: Any) -> int:
        count = super().due_count(index, times_ms)
        if count:
            self.sends.append((self.now, index, count, int(times_ms[count - 1])))
        return count


@pytest.fixture
def schedules(monkeypatch: pytest.MonkeyPatch) -> list[RecordedSchedule]:
    """The schedules the replays of a test make, recorded."""
    made: list[RecordedSchedule] = []

    def make(pace: Pace) -> RecordedSchedule:
        made.append(RecordedSchedule(pace))
        return made[-1]

    monkeypatch.setattr("replay.replay.Schedule", make)
    return made


def check_sends(schedule: RecordedSchedule, total: int) -> None:
    """Every event sent once, in order, in sends at least a tick apart."""
    assert schedule.anchor is not None and schedule.sends, "nothing was paced"
    assert [index for _, index, _, _ in schedule.sends] == list(
        np.cumsum([0] + [count for _, _, count, _ in schedule.sends[:-1]]))
    assert sum(count for _, _, count, _ in schedule.sends) == total
    times = [now for now, _, _, _ in schedule.sends]
    assert all(b - a >= PACED_TICK_S - 1e-6 for a, b in itertools.pairwise(times)), "two sends in one tick"


@pytest.mark.broker
def test_rate_paces_the_replay(settings: Settings, data_file: Path, schedules: list[RecordedSchedule]) -> None:
    """Never ahead of the rate: by each send, at most 1 + 400 events per second since the start have gone.

    Ordering and counts only: a loaded machine sends later, never earlier, so nothing here depends on its
    speed; how close to the rate it got is printed (``pytest -s``), not asserted.
    """
    small = data_file.with_name("small.parquet")
    pq.write_table(pq.read_table(data_file).slice(0, 600), small)
    summary = run_replay(config(settings, small, mapping={"label": ""}, pace=Pace.parse(rate=400)))
    assert summary.transactions_sent == 600 and summary.labels_sent == 0
    (schedule,) = schedules
    check_sends(schedule, 600)
    assert schedule.anchor is not None
    began = schedule.anchor[0]
    ahead = [(now - began, index + count) for now, index, count, _ in schedule.sends
             if index + count > math.floor((now - began) * 400 + 1e-9) + 1]
    assert ahead == [], f"(seconds since the start, events sent by then) ahead of 400/s: {ahead[:5]}"
    assert summary.batches_sent <= most_batches(summary, partitions=settings.topic_partitions)
    print(f"--rate 400: {summary.rate:.0f} events/s over {summary.elapsed_s:.2f} s, {len(schedule.sends)} sends")


@pytest.mark.broker
def test_a_fast_paced_replay_still_sends_once_per_tick(settings: Settings, data_file: Path) -> None:
    """At 5,000/s something is always due: without the tick every pass would send a batch of one or two."""
    summary = run_replay(config(settings, data_file, mapping={"label": ""}, pace=Pace.parse(rate=5000)))
    assert summary.transactions_sent == 1000
    assert summary.batches_sent <= most_batches(summary, partitions=settings.topic_partitions)


def most_batches(summary: ReplaySummary, partitions: int) -> float:
    """One send per PACED_TICK_S, each at most one batch per partition (transactions only)."""
    return partitions * (summary.elapsed_s / PACED_TICK_S + 1)


@pytest.mark.broker
def test_speed_compresses_event_time(settings: Settings, tmp_path: Path, schedules: list[RecordedSchedule]) -> None:
    """At 60x no event leaves before a sixtieth of its event-time distance from the first has passed."""
    path = tmp_path / "t.csv"  # 100 transactions 0.6 s apart: 59.4 s of event time, about 1 s at 60x
    path.write_text("transaction_id,card_id,timestamp,amount\n"
                    + "".join(f"t{i},c{i % 9},{T0 + i * 600},5\n" for i in range(100)))
    summary = run_replay(config(settings, path, pace=Pace.parse("60x")))
    assert summary.transactions_sent == 100
    (schedule,) = schedules
    check_sends(schedule, 100)
    assert schedule.anchor is not None
    began, _, first_ms = schedule.anchor
    early = [(now - began, (last_ms - first_ms) / 1000 / 60) for now, _, _, last_ms in schedule.sends
             if (last_ms - first_ms) / 1000 / 60 > now - began + 1e-9]
    assert early == [], f"(seconds since the start, seconds the last event sent was due at) sent early: {early[:5]}"
    assert len(schedule.sends) > 10, "59.4 s of event time at 60x spans about 50 ticks"
    print(f"60x: 59.4 s of event time in {summary.elapsed_s:.2f} s")


@pytest.mark.broker
def test_resume_after_a_clean_stop(settings: Settings, data_file: Path) -> None:
    first = run_replay(config(settings, data_file, chunk_events=100, stop_after=700))
    assert (first.position, first.complete, first.stopped) == (700, False, "stopped by --stop-after")
    second = run_replay(config(settings, data_file, chunk_events=100))
    assert second.complete and second.already_written == 0 and second.run_id == first.run_id
    assert first.transactions_sent + second.transactions_sent == 1000
    assert_exactly_once(settings, data_file)
    third = run_replay(config(settings, data_file))  # finished: nothing more is sent
    assert third.complete and third.transactions_sent == third.labels_sent == 0


@pytest.mark.broker
def test_resume_after_a_crash_with_the_checkpoint_behind_what_was_written(settings: Settings, data_file: Path) -> None:
    cfg = config(settings, data_file, chunk_events=100)
    run_replay(config(settings, data_file, chunk_events=100, stop_after=400))
    stale = data_file.with_name("stale.json")
    shutil.copy(cfg.checkpoint_path, stale)

    def crash(position: int) -> None:
        if position >= 900:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_replay(cfg, after_send=crash)  # records up to 900 reach Kafka, the checkpoint says 800
    # worse still: the checkpoint of long ago (position 400) is all that survived
    shutil.copy(stale, cfg.checkpoint_path)
    resumed = run_replay(cfg)
    assert resumed.complete and resumed.already_written == 500
    assert_exactly_once(settings, data_file)


@pytest.mark.broker
def test_sigterm_stops_cleanly_and_the_same_command_resumes(settings: Settings, data_file: Path) -> None:
    env = {**os.environ, **settings.to_env()}
    cmd = [sys.executable, "-m", "replay.replay_cli", str(data_file), "--rate", "400", "--quiet", "--checkpoint-every", "50"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    checkpoint = config(settings, data_file).checkpoint_path

    def under_way() -> bool:  # a checkpoint past the start: records are on their way (2,000 events take 5 s)
        assert proc.poll() is None, "the replay ended before it was signalled"
        return checkpoint.exists() and json.loads(checkpoint.read_text())["position"] > 0

    assert wait_for(under_way, timeout=60), "no checkpoint past the start"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command to resume" in err
    assert 0 < json.loads(checkpoint.read_text())["position"] < 2000, "stopped half-way"
    done = subprocess.run([*cmd[:4], "--quiet"], check=False, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "complete" in done.stderr
    assert_exactly_once(settings, data_file)


@pytest.mark.broker
def test_changed_arguments_refuse_to_resume_until_restart(settings: Settings, data_file: Path) -> None:
    run_replay(config(settings, data_file, stop_after=10))
    with pytest.raises(ReplayError, match="different labels"):
        run_replay(config(settings, data_file, labels=LabelPolicy(delay_ms=MIN)))
    restarted = run_replay(config(settings, data_file, labels=LabelPolicy(delay_ms=MIN), restart=True))
    assert restarted.complete and restarted.transactions_sent == 1000


def test_strict_aborts_before_sending_anything(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("transaction_id,card_id,timestamp,amount\nt1,c1,1740830400000,5\nt2,c1,1740830400000,-5\n")
    settings = Settings(bootstrap_servers="127.0.0.1:1")  # never contacted
    with pytest.raises(ReplayError, match="--strict: row 2 amount: invalid_amount"):
        run_replay(config(settings, path, strict=True))


@pytest.mark.broker
def test_cli_maps_columns_reports_rejects_and_sends_the_rest(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "bank.csv"
    path.write_text("ref,pan,ts,amt,fraud\n"
                    "r1,p1,1740830400,12.00,no\n"
                    "r2,p1,1740830460,12.00,0\n"
                    "r3,p2,1740830520,abc,1\n"
                    "r4,p3,1740830580,3.50,1\n")
    (tmp_path / "map.txt").write_text("transaction_id=ref\ncard_id=pan\ntimestamp=ts\n")
    rc = cli([str(path), "--mapping", str(tmp_path / "map.txt"), "--map", "amount=amt", "--map", "label=fraud",
              "--timestamp-unit", "s", "--label-delay", "30s", "--rejects", str(tmp_path / "rejects.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "2 of 4 rows rejected (invalid_label 1, invalid_amount 1)" in err
    assert "row 1 label: invalid_label: 'no' is not 1/0, true/false or fraud/legit" in err
    assert "sent 2 transactions and 2 labels" in err and "complete" in err
    assert (tmp_path / "rejects.csv").read_text().splitlines()[1:] == [
        "1,label,invalid_label,\"'no' is not 1/0, true/false or fraud/legit\"",
        "3,amount,invalid_amount,amount 'abc' is not a finite number"]
    fb = read_to_end(settings.bootstrap_servers, settings.topic_feedback, decode=False)
    assert sorted((json.loads(r.value)["transaction_id"], json.loads(r.value)["labelled_at"]) for r in fb) == [
        ("r2", "2025-03-01T12:01:30.000Z"), ("r4", "2025-03-01T12:03:30.000Z")]
