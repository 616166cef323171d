"""The fork server's side (``python -m hypermesh.node.forkserver``): one process that has
imported a node's common core and forks each node from it; the controller's side, and why, is
``hypermesh.drivers.forkserver``.

It imports the node's core and the features most nodes open (``node.features.preload``),
runs once with a throwaway key what every node runs first (``warm_up``: what OpenSSL and
aioquic set up on first use), freezes it all for the collector (``gc.freeze``: the pages stay
shared with every node, copy-on-write), writes ``ready`` and then reads one JSON request a line
on stdin, answering each with one line on stdout:

    {"op": "spawn", "config": PATH, "cwd": DIR, "log": FILE, "env": {...}}  -> {"pid": N}
    {"op": "poll", "pid": N}                      -> {"code": EXIT_CODE or null (running)}

A spawned node is a process of its own, as with the plain spawn: its own session (``setsid``),
stdin from ``/dev/null``, stdout and stderr appended to its log, its own folder as working
directory, the environment the controller had when it asked, its command line rewritten to
``python -m hypermesh.node --config PATH`` (what ``ps`` and the tools that look for nodes see),
then ``node.process.main``. The server collects its exited nodes (SIGCHLD), so none is left a
zombie, and keeps their exit codes for ``poll``. It exits when its stdin closes (the controller
exited); the nodes live on. It lives here, under ``hypermesh.node``, so that starting it loads
nothing of the controller.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from hypermesh.transport.identity import Identity

READY = b"ready\n"
TITLE_ROOM = 4096
"""Bytes the server's command line keeps for a node's own (``_retitle``)."""


class _Server:
    """The server's state: exit codes of the nodes it forked, collected on SIGCHLD."""

    def __init__(self) -> None:
        self.children: set[int] = set()
        self.codes: dict[int, int] = {}

    def reap(self, signum: int = 0, frame: object = None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.codes[pid] = os.waitstatus_to_exitcode(status)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "spawn":
            forked = _fork_node(request)
            self.children.add(forked)
            return {"pid": forked}
        if request.get("op") == "poll":
            pid = request.get("pid")
            self.reap()
            if isinstance(pid, int) and pid in self.codes:
                return {"code": self.codes[pid]}
            return {"code": None}
        return {"error": f"unknown op {request.get('op')!r}"}


def _fork_node(request: dict[str, Any]) -> int:
    config, cwd, log = str(request["config"]), str(request["cwd"]), str(request["log"])
    env = request.get("env")
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        pid = os.fork()
        if pid == 0:  # the node
            _become_node(config, cwd, log_fd, env if isinstance(env, dict) else None)
    finally:
        os.close(log_fd)
    return pid


def _become_node(config: str, cwd: str, log_fd: int, env: dict[str, str] | None) -> None:
    """In the forked child: become a node process of its own, run it, exit with its code."""
    code = 1
    try:
        os.setsid()
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, _max_fd())
        os.chdir(cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        argv = [sys.executable, "-m", "hypermesh.node", "--config", config]
        sys.argv = argv[2:]
        _retitle(argv)
        from hypermesh.node.process import main

        code = main(["--config", config])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the child never returns into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 1024


def _retitle(argv: list[str]) -> None:
    """Write ``argv`` over the process's command line (``/proc/self/cmdline``), in the room the
    server's own command line leaves (``TITLE_ROOM``); a no-op where that cannot be done."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        title = b"\0".join(a.encode() for a in argv) + b"\0"
        if len(title) > end - start:
            return
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(start)
            memory.write(title + b"\0" * (end - start - len(title)))


WARM_MODULES = (
    "concurrent.futures.thread",  # asyncio's default executor (to_thread)
    "cryptography.hazmat.backends.openssl.backend",
    "dns.rdtypes.txtbase",
    "dns.rdtypes.ANY.TXT",  # the directory's records, read by dnspython on a mirror's first copy
    "dns.rdtypes.IN.A",
    "encodings.ascii",
)
"""Modules every node imports at run time, not at import: imported here once for all."""


def preload() -> None:
    """Import what most nodes run, compile what every start compiles (the address pattern),
    do once what each node would otherwise do first (``warm_up``), then freeze it all for the
    collector (the shared pages stay shared)."""
    import importlib

    import hypermesh.node.process  # noqa: F401
    from hypermesh.node.features import preload as preload_features
    from hypermesh.transport.address import parse_address

    preload_features()
    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    parse_address("127.0.0.1:1")  # compiles the (large) address pattern, cached
    with contextlib.suppress(Exception):  # an optimisation: never a reason not to serve
        warm_up()
    gc.collect()
    gc.freeze()


def warm_up() -> bytes:
    """Run once, with a throwaway key, what every node runs first: read a PEM key, sign and
    verify, make its certificate and its TLS context, a QUIC handshake and an HTTP/3 request
    and answer in memory, an SQLite database, an event loop. Returns the answer's status
    (``b"200"``).

    What OpenSSL, cryptography and aioquic set up on first use (the providers' algorithm
    tables, cipher contexts, caches) is then made here once and shared copy-on-write with
    every node, instead of made again in each: a forked mirror keeps 16.6 MiB of its own
    instead of 19.6 (``bench/footprint.py``). No file, socket or key outlives it.
    """
    import asyncio
    import sqlite3

    from cryptography.hazmat.primitives import serialization

    from hypermesh.node.tls_tcp import tls_context
    from hypermesh.transport.identity import Identity, verify_signature

    identity = Identity.generate()
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    serialization.load_pem_private_key(pem, password=None)
    verify_signature(identity.node_id, b"warm", identity.sign(b"warm"))
    tls_context(identity, ["dot", "h2"])
    status = _quic_in_memory(identity)
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")
        db.execute("INSERT INTO t VALUES (?, ?)", ("k", b"v"))
        db.execute("SELECT v FROM t WHERE k = ?", ("k",)).fetchall()
    asyncio.run(asyncio.sleep(0))
    return status


def _quic_in_memory(identity: Identity) -> bytes:
    """A QUIC handshake and one HTTP/3 request between a client and a server configured as a
    node's, datagrams passed by hand (no socket); the status the client heard (``b""``:
    none)."""
    from aioquic._buffer import Buffer
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import HeadersReceived
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.packet import pull_quic_header

    from hypermesh.node.server import server_configuration
    from hypermesh.transport.client import client_configuration

    server_address, client_address = ("127.0.0.1", 2), ("127.0.0.1", 1)
    client = QuicConnection(configuration=client_configuration(identity.node_id, identity=None))
    client.connect(server_address, now=0.0)
    datagrams = [data for data, _ in client.datagrams_to_send(now=0.0)]
    header = pull_quic_header(Buffer(data=datagrams[0]), host_cid_length=8)
    server = QuicConnection(
        configuration=server_configuration(identity),
        original_destination_connection_id=header.destination_cid,
    )
    client_h3, server_h3 = H3Connection(client), H3Connection(server)
    request = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"warm")]
    status = b""
    for step in range(8):
        now = step * 0.05  # time moves on: the pacer holds data sent at one instant
        for data in datagrams:
            server.receive_datagram(data, client_address, now=now)
        for data, _ in server.datagrams_to_send(now=now):
            client.receive_datagram(data, server_address, now=now)
        for quic, h3 in ((client, client_h3), (server, server_h3)):
            while (event := quic.next_event()) is not None:
                for heard in h3.handle_event(event):
                    if not isinstance(heard, HeadersReceived):
                        continue
                    if quic.configuration.is_client:
                        status = dict(heard.headers).get(b":status", b"")
                    else:
                        h3.send_headers(heard.stream_id, [(b":status", b"200")])
                        h3.send_data(heard.stream_id, b"{}", end_stream=True)
        if step == 0:
            stream = client.get_next_available_stream_id()
            client_h3.send_headers(stream, [*request, (b":path", b"/status")], end_stream=True)
        datagrams = [data for data, _ in client.datagrams_to_send(now=now)]
    return status


def serve(requests: BinaryIO, answer_fd: int) -> None:
    """Answer ``requests`` (JSON lines) on ``answer_fd`` until they end."""
    server = _Server()
    signal.signal(signal.SIGCHLD, server.reap)
    for line in iter(requests.readline, b""):
        try:
            request = json.loads(line)
            reply = server.answer(request) if isinstance(request, dict) else {"error": "not {}"}
        except (OSError, ValueError, KeyError) as exc:
            reply = {"error": str(exc)}
        os.write(answer_fd, json.dumps(reply).encode() + b"\n")


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload()
    os.write(1, READY)
    serve(sys.stdin.buffer, 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
