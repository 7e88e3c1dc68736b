"""HTTP views on the worker (when ``FRAUDSTREAM_WEB_ENABLED=1``).

* ``GET /healthz`` — liveness: 200 while the worker runs and no agent has stopped.
* ``GET /ready`` — readiness: 200 only after table recovery and the model load, else 503.
* ``GET /metrics`` — Prometheus text exposition (``stream/telemetry.py``).
* ``GET /stats/`` — the worker's counters, model versions, keys per table and Python heap blocks as JSON.
* ``GET /cards/{card_id}/history/`` — the card's history as the worker holds it,
  routed by Faust to whichever worker owns the card's partition: the first
  thing to look at when a score surprises you.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from models.history import Entry, new_history
from stream.records import format_rfc3339

if TYPE_CHECKING:
    from stream.app import Engine

__all__ = ["register"]


def _readable(entry: Entry) -> dict[str, Any]:
    return {
        "event_time": entry.ts,
        "timestamp": format_rfc3339(entry.ts),
        "amount": entry.amount,
        "merchant_hash": entry.merchant,
        "mcc": entry.mcc,
        "country": entry.country,
        "channel": entry.channel,
        "transaction_hash": entry.txid,
    }


def register(engine: Engine) -> None:
    """Add the views to ``engine.app``."""
    app = engine.app

    @app.page("/cards/{card_id}/history/")
    @app.table_route(table=engine.history, match_info="card_id")
    async def card_history(web: Any, request: Any, card_id: str) -> Any:
        history = engine.history.get(card_id.encode()) or new_history()
        return web.json({"card_id": card_id, "history": [_readable(e) for e in history],
                         "raw": [list(e) for e in history]})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        stopped = [name for name, agent in app.agents.items() if agent.should_stop]
        if stopped or app.should_stop:
            return web.json({"status": "failing", "stopped_agents": stopped}, status=503)
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        ok, checks = engine.ready()
        return web.json({"ready": ok, **checks}, status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        engine.update_gauges()
        return web.bytes(engine.telemetry.render(), content_type="text/plain")

    @app.page("/stats/")
    async def stats(web: Any, request: Any) -> Any:
        # Python's live objects in blocks (pymalloc's count, cheap): flat while RSS steps up means
        # no Python objects pile up; the growth is elsewhere (native memory kept at its peak, or
        # fragmented pymalloc arenas, which this count does not see: README, Benchmark).
        return web.json({"stats": engine.stats.snapshot(), "model_versions": engine.fusion.versions(),
                         "table_keys": engine.table_keys(), "python_heap_blocks": sys.getallocatedblocks()})
