"""The benchmark works end to end (smoke mode). Its figures are reported, never asserted as speeds."""

from __future__ import annotations

import json

import pytest

from stream.bench import broker_fetch
from stream.bench.run import BenchConfig, _records, run_bench
from stream.broker import EmbeddedBroker


def test_offered_loads_continue_the_preloads_event_time():
    """Each phase's transactions come after the previous phase's, as in a live stream (retention expires gradually)."""
    def times(phase):
        return [json.loads(value)["timestamp"] for _, value in _records(200, 20, phase=phase)]

    assert max(times(0)) < min(times(1)) and max(times(1)) < min(times(2))


def test_latency_workers_must_be_one_of_the_engine_runs(tmp_path):
    with pytest.raises(ValueError, match="latency_workers=2"):
        run_bench(BenchConfig(workers=(1,), latency_workers=2, out=str(tmp_path / "bench.json")))
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.broker
@pytest.mark.slow
def test_smoke_bench_produces_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    results = run_bench(BenchConfig.smoke(str(out)))
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    printed = capsys.readouterr().out
    assert f"c/a = {results['ratio_engine_to_bare']}" in printed and "engine time per transaction" in printed
    assert results["bare_aiokafka"]["events"] == 3000 and results["bare_aiokafka_after"]["events"] == 3000
    after = results["ratio_engine_to_bare_after"]  # the same engine run against (a) run after it
    assert after == round(results["engine"][0]["events_per_s"] / results["bare_aiokafka_after"]["events_per_s"], 3)
    assert f"({after} against (a) after (c))" in printed
    assert results["faust_passthrough"]["events"] == 3000
    assert results["engine_plumbing"]["events"] >= 3000 and not results["engine_plumbing"].get("stalled")
    us = results["us_per_event"]  # the engine's cost split: what its plumbing costs, what its work costs
    assert us["engine"] == round(1e6 / results["engine"][0]["events_per_s"], 1) and us["plumbing"] > 0
    assert f"c/b' = {results['ratio_engine_to_plumbing']}" in printed and "engine plumbing" in printed
    engine = results["engine"][0]
    assert engine["events"] >= 3000 and engine["events_per_s"] > 0
    assert {"decode", "state", "features", "online", "encode_produce", "delivery"} <= set(engine["stage_share"])
    assert abs(sum(engine["stage_share"].values()) - 1.0) < 0.01
    assert 0 < engine["mean_history"] < 32
    assert 1 <= engine["mean_batch"] <= results["config"]["batch_size"]
    latency = results["latency"]
    assert latency["workers"] == 1
    assert latency["samples"] == int(latency["offered_per_s"] * latency["seconds"])
    assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert 0 <= latency["in_batch_ms"]["p50"] <= latency["p99_ms"] and latency["before_batch_ms"]["p50"] >= 0
    floor = results["latency_floor"]  # the bare loop under the same offered load, every record forwarded
    assert floor["samples"] == latency["samples"] and 0 < floor["p50_ms"] <= floor["p95_ms"] <= floor["p99_ms"]
    assert "latency floor at 300/s offered" in printed
    for phase in (floor, latency):  # the tail through the run, and the broker's CPU beside it
        thirds = phase["p99_by_third_ms"]
        assert len(thirds) == 3 and all(t is not None and t > 0 for t in thirds)
        cpu = phase["broker_cpu_cores"]
        assert len(cpu["samples"]) >= 2 and 0 <= cpu["first"] <= 2 and 0 <= cpu["last"] <= 2
    assert printed.count("p99 by thirds of the run") == 3 and "embedded broker CPU" in printed
    soak = results["soak"]
    assert soak["samples"] == int(soak["offered_per_s"] * soak["seconds"]) and soak["unscored_after_120_s"] == 0
    assert results["memory_rss_mb"]["start"] > 0 and results["ratio_engine_to_bare"] > 0
    keys = soak["state"]["end"]["table_keys"]  # one worker owns every partition: a history per card seen
    assert 0 < keys["history"] <= 300 and keys["features"] > 0 and keys["pending"] == 0
    assert soak["state"]["end"]["python_heap_blocks"] > 0
    assert len(soak["state"]["samples"]) == len(results["memory_rss_mb"]["samples"]) - 1  # all but the final RSS


@pytest.mark.broker
def test_broker_fetch_cost_prints_a_row_per_partition_size(capsys):
    assert broker_fetch.main(["30,10", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "broker CPU ms a fetch" in lines[0]
    assert [int(line.split()[0]) for line in lines[1:]] == [10, 30]  # filled in ascending order
    assert all(float(line.split()[1]) > 0 for line in lines[1:])


@pytest.mark.broker
@pytest.mark.slow
def test_bench_on_a_broker_it_did_not_start_keeps_to_its_own_topics(tmp_path, capsys):
    """As against Apache Kafka: nothing lands on the engine's topics, and a second run would read none of this one's."""
    from kafka import KafkaAdminClient

    with EmbeddedBroker() as broker:
        cfg = BenchConfig.smoke(str(tmp_path / "bench.json"))
        cfg.events, cfg.soak_seconds, cfg.bootstrap_servers = 1500, 0.0, broker.bootstrap_servers
        results = run_bench(cfg)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        topics = set(admin.list_topics())
        admin.close()
    assert results["engine"][0]["events"] >= 1500 and results["latency"]["samples"] == 900
    assert results["latency_floor"]["broker_cpu_cores"] is None  # not our process to sample
    printed = capsys.readouterr().out
    assert f"this run's topics are bench-{cfg.run_id}-*" in printed and "embedded broker CPU" not in printed
    ours = {t for t in topics if t.startswith(f"bench-{cfg.run_id}-")}
    faust_internal = {t for t in topics if t.startswith("bench-passthrough-")}  # (b)'s own Faust app
    assert ours and topics == ours | faust_internal, topics - ours - faust_internal
