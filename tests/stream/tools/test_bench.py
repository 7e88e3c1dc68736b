"""The benchmark works end to end (smoke mode), and its summary is right. Speeds are reported, never asserted."""

from __future__ import annotations

import asyncio
import json
import shlex
import threading
from pathlib import Path

import pytest

from stream.tools.bench import broker_fetch
from stream.tools.bench.bare import bare_loop
from stream.tools.bench.config import BenchConfig, preload, records, topic
from stream.tools.bench.run import run_bench
from stream.tools.bench.summary import figures, markdown_table, median, quartiles, spread, summarise, summary_lines
from stream.tools.broker import EmbeddedBroker
from stream.tools.cli import main
from tests.support import consume_all, produce, wait_for


def test_offered_loads_continue_the_preloads_event_time():
    """Each phase's transactions come after the previous phase's, as in a live stream (retention expires gradually)."""
    def times(phase):
        return [json.loads(value)["timestamp"] for _, value in records(200, 20, phase=phase)]

    assert max(times(0)) < min(times(1)) and max(times(1)) < min(times(2))


@pytest.mark.parametrize(("change", "reason"), [({"latency_workers": 0}, "latency_workers=0"),
                                                 ({"repeat": 0}, "repeat=0")])
def test_a_config_no_run_could_use_is_refused_before_anything_runs(tmp_path, change, reason):
    with pytest.raises(ValueError, match=reason):
        run_bench(BenchConfig(out=str(tmp_path / "bench.json"), **change))
    assert not (tmp_path / "bench.json").exists()


def test_median_and_quartiles_of_hand_computed_lists():
    assert median([1, 2, 3, 10]) == 2.5  # the two middle values' mean, not the mean (4.0)
    assert median([10, 1, 3]) == 3
    assert quartiles([1, 2, 3, 10]) == (1.75, 4.75)  # 1 + 0.75 * (2 - 1); 3 + 0.25 * (10 - 3)
    assert quartiles([5, 1, 4, 2, 3]) == (2.0, 4.0)
    with pytest.raises(ValueError, match="median of no values"):
        median([])


def test_spread_gives_the_interquartile_range_from_four_values_only():
    assert spread([3.0, 1.0, 2.0]) == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([1.0, 2.0, 3.0, 10.0]) == {"n": 4, "median": 2.5, "min": 1.0, "max": 10.0, "q1": 1.75, "q3": 4.75}


def _latency_run(floor_p99: float, engine_p99: float) -> dict:
    return {"latency_floor": {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": floor_p99},
            "latency": {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": engine_p99, "in_batch_ms": {"p50": 1.0, "p99": 3.0}}}


def test_the_p99_ratio_is_taken_in_each_repetition_then_summarised():
    """Median of the per-repetition ratios (1.0), not the ratio of the medians (30 / 20 = 1.5)."""
    runs = [_latency_run(10.0, 30.0), _latency_run(100.0, 50.0), _latency_run(20.0, 20.0)]
    ratio = summarise(runs)["p99_engine_over_floor"]
    assert ratio == {"n": 3, "median": 1.0, "min": 0.5, "max": 3.0}
    assert summarise(runs)["engine_p99_ms"]["median"] / summarise(runs)["floor_p99_ms"]["median"] == 1.5


def test_figures_of_a_repetition_name_every_engine_run_and_stage():
    run = {"bare_aiokafka": {"events_per_s": 40_000.0}, "bare_aiokafka_after": {"events_per_s": 38_000.0},
           "faust_passthrough": None, "engine_plumbing": {"events_per_s": 30_000.0},
           "engine": [{"workers": 2, "events_per_s": 16_000.0, "stage_us_per_event": {"state": 9.0}},
                      {"workers": 1, "events_per_s": 12_000.0, "stage_us_per_event": {"state": 16.0, "sequence": 17.0}}],
           "ratio_engine_to_bare": 0.3, "us_per_event": {"bare": 25.0, "plumbing": 33.3, "engine": 83.3}}
    got = figures(run)
    assert got["engine_1w_per_s"] == 12_000.0 and got["engine_2w_per_s"] == 16_000.0
    assert got["stage_state_us"] == 16.0 and got["stage_sequence_us"] == 17.0  # the one-worker run's stages
    assert got["engine_work_us"] == 50.0 and got["c_over_a"] == 0.3
    assert "faust_per_s" not in got and "floor_p99_ms" not in got  # what the run lacks is left out, not zero


def test_the_markdown_table_shows_the_interquartile_range_from_four_repetitions():
    runs = [_latency_run(10.0 * i, 12.0 * i) for i in range(1, 5)]
    table = markdown_table({"command": "fraudstream bench --repeat 4", "machine": {"cpus": 2}, "runs": runs})
    lines = table.splitlines()
    assert lines[0].startswith("`fraudstream bench --repeat 4`: median, min–max and interquartile range of 4")
    assert lines[2:4] == ["| | median | min–max | IQR |", "|---|---|---|---|"]
    assert "| latency floor p99, ms | 25 | 10–40 | 18–32 |" in lines  # q1 17.5 and q3 32.5, printed whole
    assert "| engine p99 / floor p99 | 1.200 | 1.200–1.200 | 1.200–1.200 |" in lines
    assert not any("inside its micro-batch" in line for line in lines)  # printed, but not the README's


def test_a_figure_some_repetitions_lack_says_of_how_many_it_is():
    """A stalled or failed (b) in one repetition: its median is of two runs, and the table must not hide that."""
    runs = [{**_latency_run(10.0, 12.0), "faust_passthrough": {"events_per_s": rate}} for rate in (5000.0, 6000.0)]
    runs.append({**_latency_run(10.0, 12.0), "faust_passthrough": None})
    lines = markdown_table({"command": "fraudstream bench --repeat 3", "machine": {"cpus": 2}, "runs": runs})
    assert "| (b) Faust per-event pass-through, events/s (2 of 3 repetitions) | 5,500 | 5,000–6,000 |" in lines
    assert "| latency floor p99, ms | 10 | 10–10 |" in lines  # every repetition has it: no count
    printed = summary_lines(summarise(runs))
    assert any(line.startswith("(b) Faust per-event pass-through, events/s (2 of 3 repetitions)") for line in printed)


def test_the_printed_command_is_one_the_cli_accepts_and_the_table_is_reprinted_from_a_saved_run(tmp_path, capsys):
    cfg = BenchConfig(events=100_000, cards=2_000, workers=(1,), latency_seconds=20.0, repeat=5, checkpoint="")
    command = cfg.command_line()
    assert command == ("fraudstream bench --events 100000 --cards 2000 --workers 1 --latency-seconds 20 --repeat 5 "
                       "--checkpoint ''")
    saved = tmp_path / "bench.json"
    runs = [_latency_run(10.0, 12.0), _latency_run(20.0, 20.0)]
    saved.write_text(json.dumps({"command": command, "machine": {"cpus": 2}, "runs": runs,
                                 "summary": summarise(runs)}))
    # Every option of the command parses (--summary-of runs nothing), and the table comes back from the JSON.
    assert main([*shlex.split(command)[1:], "--markdown", "--summary-of", str(saved)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"`{command}`: median and min–max of 2 repetitions")
    assert "| latency floor p99, ms | 15 | 10–20 |" in printed


@pytest.mark.broker
@pytest.mark.slow
def test_smoke_bench_repeated_twice_summarises_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    cfg = BenchConfig.smoke(str(out))
    cfg.repeat = 2
    results = run_bench(cfg)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    printed = capsys.readouterr().out
    runs = results["runs"]
    assert [run["repetition"] for run in runs] == [1, 2]
    # Every measurement of every repetition ran on a broker of its own (the embedded broker's fetches slow down
    # with what it holds), each preloaded alike, in the order throughput, floor, engine, throughput, floor, engine.
    workdir = Path(results["workdir"])
    phases = ("a", "b", "b2", "c1", "a2", "floor", "lat")
    assert sorted(p.name for p in workdir.glob("broker-*.log")) == sorted(
        f"broker-{r}{phase}.log" for r in (1, 2) for phase in phases)
    assert [list(run["preload_events_per_s"]) for run in runs] == [list(phases)] * 2
    started = {p.name: p.stat().st_mtime for p in workdir.glob("broker-*.log")}
    assert sorted(started, key=started.__getitem__) == [f"broker-{r}{phase}.log" for r in (1, 2) for phase in phases]
    assert printed.index("(a) bare aiokafka loop") < printed.index("latency floor at") < printed.index("latency at")
    assert printed.count("-- repetition") == 2
    for run in runs:
        assert run["bare_aiokafka"]["events"] == 3000 and run["bare_aiokafka_after"]["events"] == 3000
        assert run["faust_passthrough"]["events"] == 3000
        assert run["engine_plumbing"]["events"] >= 3000 and not run["engine_plumbing"].get("stalled")
        engine = run["engine"][0]
        assert engine["events"] >= 3000 and 0 < engine["mean_history"] < 32
        assert {"decode", "state", "features", "online", "encode_produce", "delivery"} <= set(engine["stage_share"])
        assert run["ratio_engine_to_bare"] == round(engine["events_per_s"] / run["bare_aiokafka"]["events_per_s"], 3)
        latency, floor = run["latency"], run["latency_floor"]
        assert latency["workers"] == 1 and latency["samples"] == floor["samples"] == latency["transactions"] == 900
        assert latency["unscored_after_120_s"] == 0 and run["latency_warmup"]["events"] >= 3000
        for phase in (floor, latency):
            assert 0 < phase["p50_ms"] <= phase["p95_ms"] <= phase["p99_ms"]
            assert len(phase["p99_by_third_ms"]) == 3 and all(t is not None for t in phase["p99_by_third_ms"])
            assert len(phase["broker_cpu_cores"]["samples"]) >= 2
    assert "soak" not in runs[0] and runs[1]["soak"]["samples"] == 600  # the soak runs once, at the end
    keys = runs[1]["soak"]["state"]["end"]["table_keys"]
    assert 0 < keys["history"] <= 300 and keys["pending"] == 0 and runs[1]["memory_rss_mb"]["start"] > 0

    summary = results["summary"]
    expected = {"bare_per_s", "faust_per_s", "plumbing_per_s", "engine_1w_per_s", "bare_after_per_s", "c_over_a",
                "c_over_b_prime", "engine_us", "floor_p50_ms", "floor_p95_ms", "floor_p99_ms", "engine_p50_ms",
                "engine_p95_ms", "engine_p99_ms", "p99_engine_over_floor", "stage_state_us", "stage_sequence_us"}
    assert expected <= set(summary)
    for key, s in summary.items():
        assert set(s) == {"n", "median", "min", "max"} and s["n"] == 2, key  # no quartiles from two runs
        assert s["min"] <= s["median"] <= s["max"], key
    assert summary["c_over_a"]["median"] == median([run["ratio_engine_to_bare"] for run in runs])
    assert "every figure over 2 repetition(s)" in printed and "engine p99 / floor p99" in printed

    table = markdown_table(results).splitlines()
    assert table[0].startswith("`fraudstream bench --smoke --repeat 2`: median and min–max of 2 repetitions")
    assert table[2:4] == ["| | median | min–max |", "|---|---|---|"]
    assert any(line.startswith("| c/a (1 worker) | ") for line in table)


@pytest.mark.broker
def test_the_latency_floor_forwards_only_the_offered_load_from_a_preloaded_topic(broker):
    """The embedded broker's end offset is its last batch's first: the floor must not time the preload's records."""
    cfg = BenchConfig(partitions=2)
    preload(broker, cfg, "tx", records(600, 60))  # two partitions of one or two large batches each
    source, sink = topic(cfg, "tx"), topic(cfg, "floor-out")
    positioned, result = threading.Event(), {}
    loop = threading.Thread(target=lambda: result.update(asyncio.run(bare_loop(
        broker, source, sink, 100, timeout_s=60, from_end=True, ready=positioned.set))))
    loop.start()
    assert wait_for(positioned.is_set, timeout=30)
    produce(broker, source, records(100, 60, prefix="load-", phase=1))
    loop.join(timeout=90)
    assert result["events"] == 100 and result["p50_ms"] is not None
    forwarded = consume_all(broker, sink, until=lambda got: len(got) >= 100, timeout=30)
    assert len(forwarded) == 100 and all(r["transaction_id"].startswith("load-") for r in forwarded)


@pytest.mark.broker
def test_broker_fetch_cost_prints_a_row_per_partition_size(capsys):
    assert broker_fetch.main(["30,10", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "broker CPU ms a fetch" in lines[0]
    assert [int(line.split()[0]) for line in lines[1:]] == [10, 30]  # filled in ascending order
    assert all(float(line.split()[1]) > 0 for line in lines[1:])


@pytest.mark.broker
@pytest.mark.slow
def test_bench_on_a_broker_it_did_not_start_gives_each_phase_its_own_topics(tmp_path, capsys):
    """As against Apache Kafka: nothing lands on the engine's topics, and no phase reads another's records."""
    from kafka import KafkaAdminClient

    with EmbeddedBroker() as broker:
        cfg = BenchConfig.smoke(str(tmp_path / "bench.json"))
        cfg.events, cfg.soak_seconds, cfg.bootstrap_servers = 1500, 0.0, broker.bootstrap_servers
        results = run_bench(cfg)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        topics = set(admin.list_topics())
        admin.close()
    run = results["runs"][0]
    assert run["engine"][0]["events"] >= 1500 and run["latency"]["samples"] == 900
    assert run["latency_floor"]["broker_cpu_cores"] is None  # not our process to sample
    printed = capsys.readouterr().out
    assert f"this run's topics are bench-{cfg.run_id}-*" in printed and "embedded broker CPU" not in printed
    ours = {t for t in topics if t.startswith(f"bench-{cfg.run_id}-")}
    faust_internal = {t for t in topics if t.startswith("bench-passthrough-")}  # (b)'s own Faust app
    assert ours and topics == ours | faust_internal, topics - ours - faust_internal
    # Each measurement preloaded a transactions topic of its own.
    assert {f"bench-{cfg.run_id}-1{phase}-tx" for phase in ("a", "b", "b2", "c1", "a2", "floor", "lat")} <= ours
