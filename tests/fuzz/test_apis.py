"""Fuzzing each HTTP/3 API of a node in-process (``node.FuzzNode``): signed writes with bodies
that are mostly right and partly anything, reads with any query, forged signature headers,
sealed messages and tunnel layers with any fields, and any request on any path. No answer is a
5xx (but the few that report the server's own state) and nothing fails inside the node
(``targets.check_request``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from . import strategies as s
from .budget import fuzz
from .corpus import run
from .node import NODES
from .targets import encode_spec

# Strategies over long sample lists make Hypothesis warn when it describes them.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def _run(parser: str, spec: dict[str, Any], test: str) -> None:
    run(parser, encode_spec(spec), test)


@fuzz(150)
@given(s.registry_requests())
def test_registry_api(spec: dict[str, Any]) -> None:
    _run("registry-api", spec, "registry")


@fuzz(100)
@given(s.forged_headers())
def test_signature_headers(spec: dict[str, Any]) -> None:
    _run("registry-api", spec, "signature-headers")


@fuzz(200)
@given(s.chain_requests())
def test_chain_api(spec: dict[str, Any]) -> None:
    _run("chain-api", spec, "chain")


@fuzz(150)
@given(s.message_requests())
def test_message_api(spec: dict[str, Any]) -> None:
    _run("message-api", spec, "message")


@fuzz(60)
@given(s.mirror_requests())
def test_mirror_api(spec: dict[str, Any]) -> None:
    _run("mirror-api", spec, "mirror")


@fuzz(60)
@given(s.dns_requests())
def test_dns_over_https(spec: dict[str, Any]) -> None:
    _run("dns-api", spec, "doh")


@fuzz(150)
@given(s.tunnel_requests())
def test_tunnel_api(spec: dict[str, Any]) -> None:
    _run("tunnel-api", spec, "tunnel")


def _paths() -> list[str]:
    node = NODES.get()
    return sorted({*node.public.paths(), *node.mirror.paths(), *node.ephemeral.paths()})


@fuzz(300)
@given(st.deferred(lambda: s.raw_requests(_paths())))
def test_any_request_on_any_path(spec: dict[str, Any]) -> None:
    _run("any-api", spec, "any")
