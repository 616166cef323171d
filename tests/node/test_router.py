"""The router and the JSON log format, without sockets."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from hypermesh.chain.store import NoSuchBlock
from hypermesh.chain.witness import WitnessRefusal
from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.inputs import BadInput
from hypermesh.messaging.envelope import BadMessage
from hypermesh.node.logs import JsonFormatter
from hypermesh.node.owner import NotTheOwner
from hypermesh.node.refusals import Refused
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.registry.errors import Conflict
from hypermesh.revocation import KeyRevoked, Revocation
from hypermesh.tunnel.relay import TunnelError


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


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (BadInput("seq: not a whole number"), 400, {"error": "seq: not a whole number"}),
        (NotTheOwner("only the node itself"), 403, {"code": "unauthorized"}),
        (Conflict("taken"), 409, {"error": "taken", "code": "conflict"}),
        (KeyRevoked(Revocation("k"), "a message"), 403, {}),
        (NoSuchBlock("no block 9"), 404, {"error": "no block 9"}),
        (WitnessRefusal("older", 409, held=7), 409, {"error": "older", "held": 7}),
        (Refused(413, "too large"), 413, {"error": "too large"}),
        (TunnelError(502, "the next hop refused"), 502, {}),
        (BadMessage("cannot open"), 400, {"error": "cannot open"}),
        (TransportError("a peer went away"), 500, {"error": "internal error"}),
    ],
)
def test_a_refusal_is_answered_by_its_type(
    error: HyperMeshError, status: int, body: dict[str, object]
) -> None:
    async def refuse(_: Request) -> RouteResponse:
        raise error

    router = Router()
    router.add("/refuse", refuse)
    answer = _dispatch(router, "GET", "/refuse")
    assert answer.status == status
    assert body.items() <= json.loads(answer.body).items()


def test_json_formatter_keeps_extras() -> None:
    record = logging.LogRecord("hypermesh.node", logging.INFO, __file__, 1, "hi %s", ("x",), None)
    record.address = "127.0.0.1:1"
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["msg"] == "hi x" and data["level"] == "info"
    assert data["logger"] == "hypermesh.node" and data["address"] == "127.0.0.1:1"
    assert data["ts"].endswith("Z") and "\n" not in line
