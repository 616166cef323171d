"""The HTTP/3 client's QUIC PING (``H3ClientProtocol.ping``), which the paths use to ask whether
a direct path still carries anything: answered while the peer is there; a wait cut short by a
timeout leaves nothing behind, so the connection's end later fails no orphaned future (aioquic's
own ping shields its waiter, and every timed-out ping then logged "Future exception was never
retrieved" when the connection closed). A real node endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity


def test_a_ping_cut_short_leaves_no_orphaned_future_when_the_connection_ends() -> None:
    async def test() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        unhandled: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
        server_identity = Identity.generate()
        served = await bind_endpoint(
            "127.0.0.1", 0, configuration=server_configuration(server_identity), router=Router()
        )
        async with connect_h3(
            f"127.0.0.1:{served.port}", expected_id=server_identity.node_id, identity=None
        ) as client:
            await asyncio.wait_for(client.ping(), 5)  # the peer is there: acknowledged
            # gone without a word (its socket drops everything): pings are never acknowledged
            setattr(served.server, "_dispatch", lambda data, addr: None)  # noqa: B010
            for _ in range(3):
                try:
                    await asyncio.wait_for(client.ping(), 0.05)
                except TimeoutError:
                    pass
                else:
                    raise AssertionError("a ping to a closed endpoint was acknowledged")
            assert not client._ping_waiters, "a timed-out ping left its waiter behind"
        served.close()
        await asyncio.sleep(0.05)  # the connection's end is processed
        gc.collect()  # an unretrieved future reports itself when it is collected
        await asyncio.sleep(0)
        return unhandled

    unhandled = asyncio.run(test())
    assert not [c for c in unhandled if "never retrieved" in str(c.get("message"))], unhandled
