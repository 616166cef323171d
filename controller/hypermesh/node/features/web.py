"""The read-only pages over HTTP/1.1 on TCP (``node.web``), for browsers and Prometheus: the
same router, announcing the public interface's HTTP/3 port."""

from __future__ import annotations

import contextlib

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.runtime import previous_port, with_port
from hypermesh.node.web import WebServer, start_web
from hypermesh.transport.address import parse_address


class WebFeature:
    """A node with ``web_listen`` serves its pages over TCP too."""

    name = "web"

    def enabled(self, config: NodeConfig) -> bool:
        return config.web_listen is not None

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        assert node.config.web_listen is not None and node.addresses.public is not None
        web = await _listen(node, node.config.web_listen, parse_address(node.addresses.public)[1])
        stack.callback(web.close)
        node.addresses.web = web.address


async def _listen(node: NodeContext, listen: str, h3_port: int) -> WebServer:
    """On the port it had before, else on any free one."""
    before = previous_port(node.node_dir, listen, "web")
    try:
        return await start_web(with_port(listen, before), node.router, h3_port=h3_port)
    except OSError:
        if before is None:
            raise
        return await start_web(listen, node.router, h3_port=h3_port)
