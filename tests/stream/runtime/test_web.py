"""Card data behind the service token: every route of the worker's web app, and a card's history through a broker.

The routes are read from the web app Faust builds (its aiohttp router, with
Faust's own blueprints applied), not from a list here, so a view added later
is checked too: it must either need the token or be one of ``OPEN_PATHS``.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from stream.contracts.settings import Settings
from stream.runtime.web import OPEN_PATHS
from stream.tools.broker import free_port
from tests.support import as_records, fast_settings, make_traffic, produce, wait_for

TOKEN = "right-token-0123456789"


def _web_app(tmp_path: Path, token: str) -> Any:
    """The aiohttp application of an engine built in this process, with every blueprint applied (no broker)."""
    from stream.runtime.worker import create_engine

    settings = Settings(app_id=f"web-test-{free_port()}", model_signing_key="k" * 16, data_dir=str(tmp_path),
                        web_enabled=True, web_port=free_port(), web_token=token)
    app = create_engine(settings).app
    app.web.init_server()
    return cast(Any, app.web).web_app


def _routes(web_app: Any) -> Iterator[tuple[str, str]]:
    """``(method, path)`` of every route, placeholders such as ``{card_id}`` filled in."""
    for resource in web_app.router.resources():
        info = resource.get_info()
        pattern = info.get("path") or info.get("formatter")
        assert pattern, f"a route of a kind this test cannot address: {resource!r}"
        # {name} is a table in Faust's /table/ and /router/ views: the history table, the one with card data.
        path = re.sub(r"\{([^}:]+)[^}]*\}", lambda m: "history" if m.group(1) == "name" else "card-1", pattern)
        for route in resource:
            yield route.method, path


def _answers(web_app: Any, requests: list[tuple[str, str, dict[str, str]]]) -> list[tuple[int, str]]:
    from aiohttp.test_utils import TestClient, TestServer

    async def run() -> list[tuple[int, str]]:
        async with TestClient(TestServer(web_app)) as client:
            out = []
            for method, path, headers in requests:
                async with client.request(method, path, headers=headers) as resp:
                    out.append((resp.status, await resp.text()))
            return out

    return asyncio.run(run())


@pytest.fixture(scope="module")
def routes_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every route, asked without credentials, with wrong ones and with the right token."""
    web_app = _web_app(tmp_path_factory.mktemp("web"), TOKEN)
    routes = sorted(set(_routes(web_app)))
    tries = {
        "none": {},
        "wrong": {"Authorization": "Bearer wrong-token"},
        "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "scheme": {"Authorization": f"Basic {TOKEN}"},
        "right": {"Authorization": f"Bearer {TOKEN}"},
    }
    asked = [(m, p, h) for m, p in routes for h in tries.values()]
    got = iter(_answers(web_app, asked))
    return {"routes": routes, "answers": {(m, p): {name: next(got) for name in tries} for m, p in routes}}


def test_the_router_has_our_views_and_fausts(routes_answers: dict[str, Any]) -> None:
    paths = {p for _, p in routes_answers["routes"]}
    assert OPEN_PATHS <= paths, f"open paths that are not routes: {OPEN_PATHS - paths}"
    assert "/cards/card-1/history/" in paths
    assert any(p.startswith("/table/") for p in paths), "Faust's table views serve table values: they are checked too"


def test_no_route_but_the_open_ones_answers_without_the_right_token(routes_answers: dict[str, Any]) -> None:
    closed = [(m, p) for m, p in routes_answers["routes"] if p not in OPEN_PATHS]
    assert closed
    for route in closed:
        answers = routes_answers["answers"][route]
        for attempt in ("none", "wrong", "prefix", "scheme"):
            status, body = answers[attempt]
            assert status == 401, f"{route} {attempt}: {status} {body[:200]}"
            assert "card-1" not in body and "history" not in body, body
        assert answers["right"][0] not in (401, 403), f"{route}: the right token is refused: {answers['right']}"


def test_the_open_routes_need_no_token(routes_answers: dict[str, Any]) -> None:
    for (_, path), answers in routes_answers["answers"].items():
        if path in OPEN_PATHS:
            assert answers["none"][0] not in (401, 403), f"{path}: {answers['none']}"


def test_without_a_configured_token_card_views_are_refused_and_say_why(tmp_path: Path) -> None:
    web_app = _web_app(tmp_path, token="")
    (status, body), (open_status, _) = _answers(web_app, [
        ("GET", "/cards/card-1/history/", {"Authorization": "Bearer "}),
        ("GET", "/healthz", {}),
    ])
    assert status == 403 and "FRAUDSTREAM_WEB_TOKEN" in json.loads(body)["error"]
    assert open_status == 200


def _get(settings: Settings, path: str, token: str | None) -> tuple[int, Any]:
    url = f"http://{settings.web_host}:{settings.web_port}{path}"
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError:
        return 0, None


@pytest.mark.broker
def test_a_running_worker_serves_a_history_only_with_the_token(broker: str, tmp_path: Path,
                                                                worker_factory: Any) -> None:
    from stream.kafka.topics import ensure_topics

    settings = fast_settings(broker, tmp_path / "data", web_enabled=True, web_port=free_port())
    ensure_topics(settings)
    worker = worker_factory(settings)
    rows = [r for r in make_traffic(n_cards=2, per_card=3, seed=5) if r["card_id"] == "card-1"]
    produce(broker, settings.topic_transactions, as_records(rows))
    path = "/cards/card-1/history/"

    def history() -> list[Any]:
        status, body = _get(settings, path, settings.web_token)
        return body["history"] if status == 200 else []

    assert wait_for(lambda: len(history()) == len(rows), timeout=90), worker.log_tail()
    assert [e["event_time"] for e in history()] == [r["timestamp"] for r in rows]
    for token in (None, "not-" + settings.web_token):
        status, body = _get(settings, path, token)
        assert status == 401, (status, body)
        assert str(rows[0]["timestamp"]) not in body
