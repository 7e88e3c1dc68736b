"""HTTP views on the worker (when ``FRAUDSTREAM_WEB_ENABLED=1``).

Open to anyone who reaches the port (operations, no card data):

* ``GET /healthz`` — liveness: 200 while the worker runs and no agent has stopped.
* ``GET /ready`` — readiness: 200 only after table recovery and the model load, else 503.
* ``GET /metrics`` — Prometheus text exposition (``stream/runtime/telemetry.py``).
* ``GET /stats/`` — the worker's counters, model versions, keys per table and Python heap blocks as JSON.

Every other route, ours or Faust's own (``/table/...`` serves table values,
``/router/...`` where each key lives), needs the service token,
``Authorization: Bearer $FRAUDSTREAM_WEB_TOKEN``: a request without it, or with
another, gets 401; a worker without a token answers 403 (fail closed). Among them:

* ``GET /cards/{card_id}/history/`` — the card's history as the worker holds it,
  routed by Faust to whichever worker owns the card's partition (the request
  goes there with its headers, so every worker needs the same token): the first
  thing to look at when a score surprises you.
* ``GET /entities/{field}/{value}/`` — with ``FRAUDSTREAM_ENTITIES``, the
  profile of one entity (``/entities/merchant_id/T-17/``), routed the same way:
  what it counted (hourly buckets of the 30-day window, the last hour one by
  one, its cards, the labels it knows) and the features a new card's
  transaction would get from it just after its newest one.

The check is an aiohttp middleware on the whole web app rather than a
decorator per view, so a route added later (or one of Faust's) is closed unless
it is listed in :data:`OPEN_PATHS`.
"""

from __future__ import annotations

import hmac
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web as aiohttp_web

from models.history import Entry, new_history
from models.profile import EntityProfile, decode, readable
from models.profile_features import PROFILE_FEATURES, entity_feature_names, profile_features
from stream.contracts.records import format_rfc3339

if TYPE_CHECKING:
    from stream.runtime.engine import Engine

__all__ = ["OPEN_PATHS", "register", "register_profile_view", "token_middleware"]

#: Paths served without the token: probes and metrics, no card data.
OPEN_PATHS = frozenset({"/healthz", "/ready", "/metrics", "/stats/"})

_Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]


def token_middleware(token: str) -> Any:
    """An aiohttp middleware that lets a request past :data:`OPEN_PATHS` only with ``Bearer <token>``.

    An empty ``token`` refuses them all with 403: a worker that was not given
    a token must not serve card data to whoever asks.
    """
    expected = token.encode()

    @aiohttp_web.middleware
    async def require_token(request: aiohttp_web.Request, handler: _Handler) -> aiohttp_web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if not expected:
            return aiohttp_web.json_response(
                {"error": "this view needs a service token and the worker has none: set FRAUDSTREAM_WEB_TOKEN "
                          "(the same secret on every worker) and send `Authorization: Bearer <token>`"},
                status=403)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            return aiohttp_web.json_response(
                {"error": "missing or wrong service token: send `Authorization: Bearer <FRAUDSTREAM_WEB_TOKEN>`"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="fraudstream"'})
        return await handler(request)

    return require_token


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


def register_profile_view(app: Any, entity_field: str, table: Any) -> None:
    """``GET /entities/<entity_field>/{value}/``: one entity's profile, from the worker that owns its partition."""
    names = entity_feature_names(entity_field)

    @app.page(f"/entities/{entity_field}/{{value}}/")
    @app.table_route(table=table, match_info="value")
    async def entity_profile(web: Any, request: Any, value: str) -> Any:
        stored = table.get(value.encode())
        if stored is None:
            return web.json({"field": entity_field, "value": value, "error": "no profile: never seen"}, status=404)
        profile = stored if isinstance(stored, EntityProfile) else decode(stored)
        features = profile_features(profile, profile.newest_ms + 1, card="")
        return web.json({"field": entity_field, "value": value, "profile": readable(profile),
                         "features_after_newest": dict(zip(names, (features[n] for n in PROFILE_FEATURES),
                                                           strict=True))})

    entity_profile.__name__ = f"entity_profile_{entity_field}"  # Faust names views by function: one each


def register(engine: Engine) -> None:
    """Add the views to ``engine.app``, all but :data:`OPEN_PATHS` behind the service token."""
    app = engine.app
    # Faust's aiohttp driver (the only web driver it ships) builds its aiohttp Application
    # when the app's web is first touched; middlewares may be added until the server starts.
    web_app: aiohttp_web.Application = cast(Any, app.web).web_app
    web_app.middlewares.append(token_middleware(engine.settings.web_token))

    @app.page("/cards/{card_id}/history/")
    @app.table_route(table=engine.history, match_info="card_id")
    async def card_history(web: Any, request: Any, card_id: str) -> Any:
        history = engine.history.get(card_id.encode()) or new_history()
        return web.json({"card_id": card_id, "history": [_readable(e) for e in history],
                         "raw": [list(e) for e in history]})

    for entity_field, table in zip(engine.settings.entity_fields, engine.profiles, strict=True):
        register_profile_view(app, entity_field, table)

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
        # fragmented pymalloc arenas, which this count does not see: docs/benchmark-history.md, *Memory is flat*).
        return web.json({"stats": engine.stats.snapshot(), "model_versions": engine.fusion.versions(),
                         "table_keys": engine.table_keys(), "python_heap_blocks": sys.getallocatedblocks()})
