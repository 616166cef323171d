"""The router and the JSON log format, without sockets."""

from __future__ import annotations

import asyncio
import json
import logging

from hypermesh.node.logs import JsonFormatter
from hypermesh.node.router import Request, Router, RouteResponse


async def _hello(request: Request) -> RouteResponse:
    return RouteResponse.json({"hello": request.query})


async def _broken(request: Request) -> RouteResponse:
    raise RuntimeError("boom")


def _dispatch(router: Router, method: str, path: str, query: str = "") -> RouteResponse:
    return asyncio.run(router.dispatch(Request(method=method, path=path, query=query)))


def test_routes_404_405_500() -> None:
    router = Router()
    router.add("/hello", _hello)
    router.add("/broken", _broken)
    ok = _dispatch(router, "GET", "/hello", "x=1")
    assert (ok.status, json.loads(ok.body)) == (200, {"hello": "x=1"})
    missing = _dispatch(router, "GET", "/nope")
    assert missing.status == 404 and "error" in json.loads(missing.body)
    wrong = _dispatch(router, "POST", "/hello")
    assert wrong.status == 405 and ("allow", "GET") in wrong.headers
    assert _dispatch(router, "GET", "/broken").status == 500


def test_json_formatter_keeps_extras() -> None:
    record = logging.LogRecord("hypermesh.node", logging.INFO, __file__, 1, "hi %s", ("x",), None)
    record.address = "127.0.0.1:1"
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["msg"] == "hi x" and data["level"] == "info"
    assert data["logger"] == "hypermesh.node" and data["address"] == "127.0.0.1:1"
    assert data["ts"].endswith("Z") and "\n" not in line
