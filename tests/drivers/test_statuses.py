"""The controller's kept ``/status`` connections (``drivers.statuses``): while held, a node
process is asked on one connection pass after pass; a new process at the same address on a new
one (the old one closed); at release every kept connection is closed; unheld, each ask opens
its own. A real node endpoint on 127.0.0.1 (``bind_endpoint``), its accepted connections
counted by the server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hypermesh.drivers.statuses import StatusConnections
from hypermesh.errors import IdentityMismatch
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.identity import Identity

NODE = Identity.generate()


async def _status(_: Request) -> RouteResponse:
    return RouteResponse.json({"identity": NODE.node_id, "pid": 7})


def test_kept_while_held_new_for_a_new_process_and_closed_at_release() -> None:
    async def main() -> None:
        router = Router()
        router.add("/status", _status)
        served = await bind_endpoint(
            "127.0.0.1", 0, configuration=server_configuration(NODE), router=router
        )
        accepted: list[Any] = []
        original = served.server._create_protocol

        def counting(*args: Any, **kwargs: Any) -> Any:
            protocol = original(*args, **kwargs)
            accepted.append(protocol)
            return protocol

        served.server._create_protocol = counting  # type: ignore[method-assign]
        address, statuses = f"127.0.0.1:{served.port}", StatusConnections()

        async def ask(pid: int) -> dict[str, Any]:
            return await statuses.status(address, NODE.node_id, pid, lambda: None, 5.0)

        try:
            assert (await ask(7))["pid"] == 7 and len(accepted) == 1  # unheld: its own
            assert (await ask(7))["pid"] == 7 and len(accepted) == 2
            statuses.hold()
            for _ in range(3):
                assert (await ask(7))["identity"] == NODE.node_id
            assert len(accepted) == 3  # one connection for the three
            await ask(8)  # another process at that address (a restart): a new connection
            assert len(accepted) == 4
            with pytest.raises(IdentityMismatch):
                await statuses.status(address, Identity.generate().node_id, 8, lambda: None, 5.0)
            await statuses.release()
            async with asyncio.timeout(10):  # the server sees the kept connection closed
                await accepted[3].wait_closed()
        finally:
            served.close()

    asyncio.run(main())
