"""Health, readiness, Prometheus metrics and JSON logs of a running worker."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from stream.tools.broker import free_port
from tests.support import as_records, consume_all, make_traffic, produce, wait_for

pytestmark = pytest.mark.broker


def _get(worker, path):
    url = f"http://{worker.settings.web_host}:{worker.settings.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return None, b""


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The sample of ``name`` whose labels are exactly ``labels`` (in any order)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        sample, _, raw = head.partition("{")
        found = dict(part.split("=", 1) for part in raw.rstrip("}").split(",") if part)
        if sample == name and {k: v.strip('"') for k, v in found.items()} == labels:
            return float(value)
    return None


def test_health_ready_metrics_and_json_logs(settings, worker_factory, broker):
    settings = settings.replace(web_enabled=True, web_port=free_port(), log_format="json")
    worker = worker_factory(settings)
    assert wait_for(lambda: _get(worker, "/ready")[0] == 200, timeout=60), worker.log_tail()
    status, body = _get(worker, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert json.loads(_get(worker, "/ready")[1]) == {"ready": True, "tables_recovered": True,
                                                     "model_loaded": True, "rules_loaded": True,
                                                     "agents_running": True}

    rows = make_traffic(n_cards=30, per_card=10, seed=31)
    produce(broker, settings.topic_transactions, [*as_records(rows), (b"card-0", b"not json")])
    ids = {r["transaction_id"] for r in rows}
    consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids, timeout=60)

    def scraped() -> str:
        return _get(worker, "/metrics")[1].decode()

    assert wait_for(lambda: _metric(scraped(), "fraudstream_scores_out_total") == len(rows), timeout=20)
    text = scraped()
    assert _metric(text, "fraudstream_events_in_total", topic=settings.topic_transactions) == len(rows) + 1
    assert _metric(text, "fraudstream_dlq_total", topic=settings.topic_transactions_dlq, reason="malformed_json") == 1
    for stage in ("decode", "state", "features", "online", "encode_produce", "delivery"):
        assert _metric(text, "fraudstream_stage_seconds_count", stage=stage), stage
    # The score agent's micro-batches: with entity profiles the bad record is dead-lettered where it arrives,
    # by the route agent, and never reaches scoring.
    assert _metric(text, "fraudstream_batch_size_sum") == len(rows) + (0 if settings.entity_fields else 1)
    assert _metric(text, "fraudstream_model_info", model="online", version="online-0") == 1
    assert "fraudstream_latency_seconds_bucket" in text and "fraudstream_consumer_lag" in text
    # One worker owns every partition: a history per card, every scored transaction's features kept.
    assert _metric(text, "fraudstream_table_keys", table="history") == 30
    assert _metric(text, "fraudstream_table_keys", table="features") == len(rows)
    stats = json.loads(_get(worker, "/stats/")[1])
    assert stats["table_keys"] == {"history": 30, "features": len(rows), "pending": 0}
    assert stats["python_heap_blocks"] > 10_000

    log_lines = [line for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    assert log_lines and all(json.loads(line)["level"] for line in log_lines)
    assert settings.model_signing_key not in worker.log_path.read_text(), "secrets never reach the log"
