"""The benchmark works end to end (smoke mode). Its figures are reported, never asserted as speeds."""

from __future__ import annotations

import json

import pytest

from stream.bench.run import BenchConfig, run_bench

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_smoke_bench_produces_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    results = run_bench(BenchConfig.smoke(str(out)))
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["bare_aiokafka"]["events"] == 3000
    assert results["faust_passthrough"]["events"] == 3000
    engine = results["engine"][0]
    assert engine["events"] >= 3000 and engine["events_per_s"] > 0
    assert {"decode", "state", "features", "online", "encode_produce"} <= set(engine["stage_share"])
    assert abs(sum(engine["stage_share"].values()) - 1.0) < 0.01
    latency = results["latency"]
    assert latency["samples"] == int(latency["offered_per_s"] * latency["seconds"])
    assert latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    soak = results["soak"]
    assert soak["samples"] == int(soak["offered_per_s"] * soak["seconds"]) and soak["unscored_after_120_s"] == 0
    assert results["memory_rss_mb"]["start"] > 0 and results["ratio_engine_to_bare"] > 0
