"""``nexus run``: a program's handlers, running against a live network through the SDK.

Each ``on`` handler becomes one task:

- ``on message to NODE [from WHO]``: NODE's inbox, followed (``Mesh.messages``: the node pushes
  each message over its message feed); the handler acts as NODE (its key signs what it sends
  and appends).
- ``on block of NODE``: NODE's chain, followed (``ChainClient.heads``: the node pushes each new
  head over its head feed); each new block, checked on arrival, runs the body as NODE.
- ``on schedule every DURATION at NODE``: a timer, as NODE.

Nothing polls: between events a handler waits on a feed or its timer.
- ``on request to NAME [path P] [method M]``: an HTTP/3 endpoint of this process, with the key of
  the node that owns NAME's TLD; NAME's HTTPS, A and TLSA records are pointed at it (signed by
  that key), so ``https://NAME/…`` reaches the handler from any node, the key pinned from TLSA.

Each body is compiled to a Python function once, when the runner is made
(``hypermesh.nexus.codegen``), with the evaluator's values, errors and built-ins; the tree
walker the runtime used before stays as ``Runner(interpret=True)``, the reference the tests
compare with. The SDK operations (``log``, ``send``, ``reply``, ``chain.append``,
``dns.query``) are done where they appear. A failing run of a handler is logged with its
``FILE:LINE:COL`` and the handler goes on with the next event; loop iterations are counted
against ``MAX_ITERATIONS`` in each run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The runtime is the one part of Nexus that talks to a network: through the SDK (and, for
# ``on request``, a node's HTTP/3 endpoint). pyproject's import-linter contract allows exactly
# these imports here.
from hypermesh.drivers.targets import target_rrsets
from hypermesh.errors import HyperMeshError
from hypermesh.nexus import ast
from hypermesh.nexus.codegen import CompiledHandler, compile_handler
from hypermesh.nexus.compiler import Compiled, Handler
from hypermesh.nexus.evaluate import Evaluator, Fail, Scope, dotted_name
from hypermesh.nexus.values import OPERATIONS
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.policy import parse_duration
from hypermesh.sdk.mesh import Mesh
from hypermesh.transport.identity import load_identity

log = logging.getLogger("hypermesh.nexus.run")

POLL = 0.5
"""Seconds between looks at the inbox of a node from before the message feed."""
RECORD_TTL = 60


class RunError(HyperMeshError):
    """A handler that cannot start (its node is not running, its name has no TLD here)."""


@dataclass(slots=True)
class _Call:
    """What one run of a handler does: who it acts as, and the reply of a request."""

    mesh: Mesh
    label: str
    reply: tuple[int, str] | None = None
    out: Callable[[str], None] = field(default=print)


class Runner:
    """Runs the handlers of a compiled program against the network in ``state``."""

    def __init__(
        self,
        compiled: Compiled,
        state: Path,
        out: Callable[[str], None] = print,
        *,
        interpret: bool = False,
    ) -> None:
        self.compiled = compiled
        self.state = state
        self.out = out
        self.evaluator = Evaluator()
        self.interpret = interpret
        """Walk each body's syntax tree for every event instead of running it compiled."""
        self.dispatched = 0
        """Handler runs so far (all handlers)."""
        self._closing: list[Callable[[], Awaitable[None] | None]] = []
        self._bodies: dict[int, tuple[Handler, CompiledHandler | None]] = {}
        if not interpret:
            for handler in compiled.handlers:
                self.compiled_body(handler)

    def compiled_body(self, handler: Handler) -> CompiledHandler | None:
        """``handler``'s body as a Python function, compiled on first use (None: Python
        could not compile it, and the tree walker runs it)."""
        known = self._bodies.get(id(handler))
        if known is not None and known[0] is handler:
            return known[1]
        body = compile_handler(
            handler.body,
            handler.file,
            dict(handler.env),
            handler.alias,
            (self._operation_now, self._operation),
        )
        self._bodies[id(handler)] = (handler, body)
        return body

    # -- running ----------------------------------------------------------------------------

    async def run(self, duration: float | None = None) -> None:
        """Start every handler and run until cancelled (or for ``duration`` seconds)."""
        if not self.compiled.handlers:
            raise RunError(f"{self.compiled.file} declares no handlers (on …)")
        tasks = [asyncio.create_task(self._handler(h)) for h in self.compiled.handlers]
        try:
            if duration is None:
                await asyncio.gather(*tasks)
            else:
                done, _ = await asyncio.wait(tasks, timeout=duration)
                for task in done:
                    task.result()  # a handler that could not start says why
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for close in reversed(self._closing):
                result = close()
                if result is not None:
                    await result

    def _mesh(self, node: str) -> Mesh:
        try:
            mesh = Mesh.from_state(self.state, node=node)
        except HyperMeshError as exc:
            raise RunError(f"node {node!r}: {exc}") from None
        self._closing.append(mesh.close)
        return mesh

    async def _handler(self, handler: Handler) -> None:
        where = f"{handler.file}:{handler.span.line}:{handler.span.column}"
        label = f"on {handler.event} " + " ".join(f"{k} {v}" for k, v in handler.params.items())
        self.out(f"{where}: {label}: running")
        if handler.event == "message":
            await self._messages(handler, label)
        elif handler.event == "block":
            await self._blocks(handler, label)
        elif handler.event == "schedule":
            await self._schedule(handler, label)
        else:
            await self._requests(handler, label)

    async def _messages(self, handler: Handler, label: str) -> None:
        node = handler.params["to"]
        mesh = self._mesh(node)
        names = {e.node_id: e.name for e in mesh.directory.values()}
        wanted = handler.params.get("from")
        async for message in mesh.messages(poll=POLL, since_now=True):
            sender = names.get(str(message["from"]), str(message["from"]))
            if wanted is not None and sender != wanted:
                continue
            event = {
                "id": message["id"],
                "from": sender,
                "to": node,
                "body": message["text"],
                "time": int(message["sentMs"]) / 1000,
            }
            await self.dispatch(handler, event, _Call(mesh, label, out=self.out))

    async def _blocks(self, handler: Handler, label: str) -> None:
        node = handler.params["of"]
        mesh = self._mesh(node)
        chain = mesh.chain(mesh.peer(node))
        seen: int | None = None
        async for head in chain.heads():  # the head now, then each new one, pushed
            if seen is None:
                seen = head.size
                continue
            for seq in range(seen, head.size):
                block, payload = await chain.block(seq)
                event = {
                    "author": node,
                    "height": block.seq,
                    "hash": block.hash.hex(),
                    "time": block.timestamp_ms / 1000,
                    "data": (payload or b"").decode("utf-8", "replace"),
                    "links": [{"seq": link.seq, "hash": link.hash.hex()} for link in block.links],
                }
                await self.dispatch(handler, event, _Call(mesh, label, out=self.out))
            seen = max(seen, head.size)

    async def _schedule(self, handler: Handler, label: str) -> None:
        mesh = self._mesh(handler.params["at"])
        every = parse_duration(handler.params["every"])
        while True:
            await asyncio.sleep(every)
            await self.dispatch(handler, {"time": time.time()}, _Call(mesh, label, out=self.out))

    async def _requests(self, handler: Handler, label: str) -> None:
        name = handler.params["to"]
        tld, owner = self._owner_of(name)
        mesh = self._mesh(owner)
        identity = load_identity(self.state / "nodes" / owner / "identity.key")
        runner = self

        class Routes(Router):
            async def dispatch(self, request: Request) -> RouteResponse:
                path = handler.params.get("path")
                method = handler.params.get("method")
                if path is not None and request.path != path:
                    return RouteResponse.error(404, f"no handler for {request.path}")
                if method is not None and request.method != method:
                    return RouteResponse.error(405, f"{request.method} is not handled here")
                event = {
                    "method": request.method,
                    "path": request.path,
                    "name": name,
                    "headers": dict(request.headers),
                    "body": request.body.decode("utf-8", "replace"),
                    "from": names.get(request.peer_id or "", request.peer_id or "anonymous"),
                }
                call = _Call(mesh, label, out=runner.out)
                await runner.dispatch(handler, event, call)
                status, body = call.reply or (204, "")
                return RouteResponse(status, body.encode(), "text/plain; charset=utf-8")

        names = {e.node_id: e.name for e in mesh.directory.values()}
        host = mesh.peer(owner).host
        endpoint = await bind_endpoint(
            host, 0, configuration=server_configuration(identity, doq=False), router=Routes()
        )
        self._closing.append(endpoint.close)
        label_name = name.removesuffix(f".{tld}") if name != tld else "@"
        for rrset in target_rrsets(label_name, RECORD_TTL, endpoint.address, identity.node_id):
            await mesh.set_records(tld, rrset.name, rrset.type, list(rrset.values), ttl=rrset.ttl)
        self.out(f"{label}: serving https://{name}/ at {endpoint.address}")
        await asyncio.Event().wait()

    def _owner_of(self, name: str) -> tuple[str, str]:
        """The TLD of ``name`` declared by the program, and the Node that owns it."""
        for manifest in self.compiled.manifests:
            if manifest.get("kind") != "TLD":
                continue
            tld = str(manifest["metadata"]["name"])
            if name == tld or name.endswith(f".{tld}"):
                owner = manifest["spec"].get("owner", {})
                if "node" not in owner:
                    raise RunError(f"{name}: TLD {tld} is owned by a Peer, not a node here")
                return tld, str(owner["node"])
        raise RunError(f"{name}: no TLD of this program holds it")

    # -- one run of a handler ---------------------------------------------------------------

    async def dispatch(self, handler: Handler, event: dict[str, Any], call: _Call) -> None:
        """Run ``handler``'s body once for ``event``; a failure is reported, not raised."""
        self.dispatched += 1
        compiled = None if self.interpret else self.compiled_body(handler)
        if compiled is not None:
            try:
                done = compiled.function(event, call)
                if compiled.awaits:
                    await done
            except Fail as failed:
                self.out(f"{call.label}: failed: {failed.problem or failed}")
            except HyperMeshError as exc:
                self.out(f"{call.label}: failed: {exc}")
            return
        self.evaluator.iterations = 0
        scope = Scope()
        for name, value in handler.env.items():
            scope.vars[name] = (value, handler.span)
        if handler.alias is not None:
            scope.vars[handler.alias] = (event, handler.span)
        try:
            await self._run(handler.body, Scope(scope), handler.file, call)
        except Fail as failed:
            self.out(f"{call.label}: failed: {failed.problem or failed}")
        except HyperMeshError as exc:
            self.out(f"{call.label}: failed: {exc}")

    async def _run(self, body: tuple[ast.Stmt, ...], scope: Scope, file: str, call: _Call) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Let):
                value = await self._value(stmt.value, scope, file, call)
                scope.vars[stmt.name] = (value, stmt.name_span)
            elif isinstance(stmt, ast.CallStmt):
                await self._value(stmt.call, scope, file, call)
            elif isinstance(stmt, ast.For):
                resolved = await self._lifted(stmt.iterable, scope, file, call)
                loop = dataclasses.replace(stmt, iterable=resolved[0])
                for child in self.evaluator.iterate(loop, resolved[1], file):
                    await self._run(stmt.body, child, file, call)
            elif isinstance(stmt, ast.If):
                cond, inner = await self._lifted(stmt.cond, scope, file, call)
                chosen = self.evaluator.branch(dataclasses.replace(stmt, cond=cond), inner, file)
                if chosen is not None:
                    await self._run(chosen, Scope(scope), file, call)
            else:  # the checker admits nothing else in handlers
                raise self.evaluator.fail(file, stmt.span, "not allowed in a handler")

    async def _value(self, expr: ast.Expr, scope: Scope, file: str, call: _Call) -> Any:
        lifted, inner = await self._lifted(expr, scope, file, call)
        return self.evaluator.eval(lifted, inner, file)[0]

    async def _lifted(
        self, expr: ast.Expr, scope: Scope, file: str, call: _Call
    ) -> tuple[ast.Expr, Scope]:
        """``expr`` with every SDK operation in it done and replaced by a name bound to its
        result (innermost first), and the scope that binds those names."""
        inner = Scope(scope)
        counter = iter(range(1_000_000))

        async def lift(node: Any) -> Any:
            if isinstance(node, ast.Call) and dotted_name(node.func) in OPERATIONS:
                args = [await lift(a) for a in node.args]
                values = [self.evaluator.eval(a, inner, file)[0] for a in args]
                result = await self._operation(call, dotted_name(node.func), values, node.span)
                name = f"\0op{next(counter)}"
                inner.vars[name] = (result, node.span)
                return ast.Var(name, node.span)
            if isinstance(node, tuple):
                return tuple([await lift(item) for item in node])
            if dataclasses.is_dataclass(node) and not isinstance(node, ast.Span | type):
                changes = {}
                for f in dataclasses.fields(node):
                    value = getattr(node, f.name)
                    if _holds_call(value):
                        changes[f.name] = await lift(value)
                return dataclasses.replace(node, **changes) if changes else node
            return node

        return await lift(expr), inner

    def _operation_now(self, call: _Call, name: str, args: list[Any], span: ast.Span) -> Any:
        """``log`` and ``reply``: nothing to wait for."""
        if name == "log":
            call.out(f"{call.label}: {_text(args[0])}")
            return None
        if name == "reply":
            status, body = (200, args[0]) if len(args) == 1 else (int(args[0]), args[1])
            call.reply = (status, _text(body))
            return None
        raise AssertionError(name)  # the checker knows every operation

    async def _operation(self, call: _Call, name: str, args: list[Any], span: ast.Span) -> Any:
        mesh = call.mesh
        if name in ("log", "reply"):
            return self._operation_now(call, name, args, span)
        if name == "send":
            await mesh.send(mesh.peer(str(args[0])), _text(args[1]))
            return None
        if name == "chain.append":
            await mesh.append(_text(args[0]).encode())
            return None
        if name == "dns.query":
            answer = await mesh.resolve(str(args[0]), str(args[1]) if len(args) > 1 else "A")
            return list(answer.records)
        raise AssertionError(name)  # the checker knows every operation


def _holds_call(value: Any) -> bool:
    """Whether ``value`` (part of an expression) holds an SDK operation call somewhere."""
    return any(
        isinstance(node, ast.Call) and dotted_name(node.func) in OPERATIONS for node in _walk(value)
    )


def _walk(value: Any) -> Iterator[Any]:
    if isinstance(value, tuple):
        for item in value:
            yield from _walk(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, ast.Span | type):
        yield value
        for f in dataclasses.fields(value):
            yield from _walk(getattr(value, f.name))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def run_program(compiled: Compiled, state: Path, duration: float | None) -> int:
    """``nexus run``: 0 after ``duration`` (or Ctrl-C), 1 when a handler cannot start."""
    runner = Runner(compiled, state, out=lambda line: print(line, flush=True))
    try:
        asyncio.run(runner.run(duration))
    except KeyboardInterrupt:
        pass
    except HyperMeshError as exc:
        print(f"nexus run: {exc}", file=sys.stderr)
        return 1
    print(f"{runner.dispatched} handler run(s)", flush=True)
    return 0
