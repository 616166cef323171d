"""Nexus ``on`` handlers, checked at compile time and kept for ``nexus run``.

The clauses are evaluated now (they are compile-time values); the body is only checked (names
defined, operations known and rightly called, fields of the event that exist): running it is
``nexus run``'s job. The nodes, peers and names the clauses name are checked against what the
program declares once every declaration is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypermesh.nexus import ast
from hypermesh.nexus.errors import did_you_mean
from hypermesh.nexus.evaluate import Evaluator, Scope, dotted_name
from hypermesh.nexus.values import BUILTINS, DURATION, EVENTS, METHODS, OPERATIONS, Event, type_name

__all__ = ["ActionChecker", "Declared", "Handler", "HandlerChecker"]


@dataclass(frozen=True, slots=True)
class Handler:
    """A checked ``on`` handler, kept for ``nexus run``: its event, the compile-time values of
    its clauses, the name its event is bound to, its body and the compile-time values it sees."""

    event: str
    params: Mapping[str, str]
    alias: str | None
    body: tuple[ast.Stmt, ...]
    file: str
    span: ast.Span
    env: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Declared:
    """The names of what the program declares, that handler clauses may name."""

    nodes: frozenset[str]
    peers: frozenset[str]
    tlds: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Reference:
    """A clause value naming a node, a member (node or peer) or a name under a TLD."""

    what: str
    value: str
    span: ast.Span
    file: str


Report = Callable[[str, ast.Span, str], None]
"""Records a problem at ``FILE`` and a span, and goes on."""


class HandlerChecker:
    """Checks each ``on`` statement and keeps the handlers; ``check_references`` then checks
    what their clauses name."""

    def __init__(self, evaluator: Evaluator, report: Report) -> None:
        self.evaluator = evaluator
        self.report = report
        self.handlers: list[Handler] = []
        self._references: list[_Reference] = []

    def handler(self, stmt: ast.On, scope: Scope, file: str) -> None:
        fail = self.evaluator.fail
        event = EVENTS.get(stmt.event)
        if event is None:
            raise fail(
                file,
                stmt.event_span,
                f"unknown event {stmt.event!r}{did_you_mean(stmt.event, EVENTS)}; events: "
                f"{', '.join(EVENTS)}",
            )
        params = self._clauses(stmt, event, scope, file)
        names = set(scope.names())
        if stmt.alias is not None:
            names.add(stmt.alias)
        ActionChecker(self.report, file, event.name, stmt.alias).actions(stmt.body, names)
        self.handlers.append(
            Handler(event.name, params, stmt.alias, stmt.body, file, stmt.span, scope.names())
        )

    def _clauses(self, stmt: ast.On, event: Event, scope: Scope, file: str) -> dict[str, str]:
        """The compile-time value of each clause, checked against what the event takes."""
        fail = self.evaluator.fail
        params: dict[str, str] = {}
        for word, expr, span in stmt.clauses:
            if word not in event.clauses:
                raise fail(
                    file,
                    span,
                    f"on {event.name} has no clause {word!r}{did_you_mean(word, event.clauses)}; "
                    f"it takes: {', '.join(event.clauses)}",
                )
            if word in params:
                raise fail(file, span, f"clause {word!r} is given twice")
            value, _ = self.evaluator.eval(expr, scope, file)
            if not isinstance(value, str):
                raise fail(file, expr.span, f"{word} takes a string, got {type_name(value)}")
            self._clause_value(event.clauses[word][0], value, expr.span, file)
            params[word] = value
        missing = [w for w, (_, required) in event.clauses.items() if required and w not in params]
        if missing:
            wants = " and ".join(f"'{w} {event.clauses[w][0].upper()}'" for w in missing)
            raise fail(file, stmt.event_span, f"on {event.name} needs {wants}")
        return params

    def _clause_value(self, what: str, value: str, span: ast.Span, file: str) -> None:
        fail = self.evaluator.fail
        if what == "duration" and not DURATION.fullmatch(value):
            raise fail(file, span, f"{value!r} is not a duration (such as 30s, 5m, 1h or 1h30m)")
        if what == "path" and not value.startswith("/"):
            raise fail(file, span, f"a path starts with '/', got {value!r}")
        if what == "method" and value not in METHODS:
            raise fail(file, span, f"{value!r} is not an HTTP method{did_you_mean(value, METHODS)}")
        if what in ("node", "member", "name"):
            self._references.append(_Reference(what, value, span, file))

    def check_references(self, declared: Declared) -> None:
        """The nodes, members and names the clauses name are declared by the program."""
        nodes, members, tlds = declared.nodes, declared.nodes | declared.peers, declared.tlds
        for ref in self._references:
            if ref.what == "node" and ref.value not in nodes:
                hint = did_you_mean(ref.value, nodes)
                self.report(ref.file, ref.span, f"node {ref.value!r} is not declared{hint}")
            elif ref.what == "member" and ref.value not in members:
                self.report(
                    ref.file,
                    ref.span,
                    f"{ref.value!r} is neither a declared node nor peer"
                    f"{did_you_mean(ref.value, members)}",
                )
            elif ref.what == "name":
                tld = ref.value.rsplit(".", 1)[-1]
                if "." not in ref.value or tld not in tlds:
                    self.report(
                        ref.file,
                        ref.span,
                        f"{ref.value!r} is not a name under a declared tld"
                        f"{did_you_mean(tld, tlds) if '.' in ref.value else ''}",
                    )


class ActionChecker:
    """Static checks of a handler's body: names defined, operations known and rightly called,
    fields of the event value that exist. Nothing runs: that is ``nexus run``'s job."""

    def __init__(self, report: Report, file: str, event: str, alias: str | None) -> None:
        self.report = report
        self.file = file
        self.event = event
        self.alias = alias

    def fail(self, span: ast.Span, message: str) -> None:
        self.report(self.file, span, message)

    def actions(self, stmts: Iterable[ast.Stmt], names: set[str]) -> None:
        local: dict[str, ast.Span] = {}
        for stmt in stmts:
            if isinstance(stmt, ast.Let):
                self.expr(stmt.value, names)
                if stmt.name in local:
                    self.fail(stmt.name_span, f"{stmt.name!r} is already defined in this block")
                local[stmt.name] = stmt.name_span
                names = names | {stmt.name}
            elif isinstance(stmt, ast.For):
                self.expr(stmt.iterable, names)
                inner = names | {stmt.var} | ({stmt.second} if stmt.second else set())
                self.actions(stmt.body, inner)
            elif isinstance(stmt, ast.If):
                self.expr(stmt.cond, names)
                self.actions(stmt.then, set(names))
                if stmt.orelse is not None:
                    self.actions(stmt.orelse, set(names))
            elif isinstance(stmt, ast.CallStmt):
                self.call(stmt.call, names, statement=True)

    def call(self, call: ast.Call, names: set[str], *, statement: bool) -> None:
        name = dotted_name(call.func)
        for arg in call.args:
            self.expr(arg, names)
        if name in OPERATIONS:
            self._operation(call, name, statement=statement)
            return
        builtin = BUILTINS.get(name)
        if builtin is not None and name not in names:
            low, high = builtin.arity
            if not low <= len(call.args) <= high:
                want = str(low) if low == high else f"{low} to {high}"
                self.fail(call.span, f"{name}() takes {want} argument(s), got {len(call.args)}")
            elif statement:
                self.fail(call.span, f"{name}() computes a value: use it in an expression")
            return
        root = name.split(".")[0]
        if root not in names:
            options = [*OPERATIONS, *BUILTINS, *names]
            self.fail(call.func.span, f"unknown operation {name!r}{did_you_mean(name, options)}")
        else:
            self.fail(call.span, f"{name} is not an operation; operations: {', '.join(OPERATIONS)}")

    def _operation(self, call: ast.Call, name: str, *, statement: bool) -> None:
        """An SDK operation: its arity, the events it works in, and whether it has a value."""
        operation = OPERATIONS[name]
        low, high = operation.arity
        if not low <= len(call.args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            self.fail(call.span, f"{name}() takes {want} argument(s), got {len(call.args)}")
        if operation.events and self.event not in operation.events:
            self.fail(
                call.span,
                f"{name}() only works in handlers of: {', '.join(sorted(operation.events))}",
            )
        if not statement and not operation.returns:
            self.fail(call.span, f"{name}() returns nothing; call it as a statement")

    def expr(self, expr: ast.Expr, names: set[str]) -> None:
        if isinstance(expr, ast.Var):
            if expr.name not in names and expr.name not in BUILTINS:
                options = [*names, *BUILTINS]
                self.fail(
                    expr.span,
                    f"undefined variable {expr.name!r}{did_you_mean(expr.name, options)}",
                )
        elif isinstance(expr, ast.Str):
            for part in expr.parts:
                if not isinstance(part, str):
                    self.expr(part, names)
        elif isinstance(expr, ast.ListLit):
            for item in expr.items:
                self.expr(item, names)
        elif isinstance(expr, ast.MapLit):
            for pair in expr.pairs:
                self.expr(pair.value, names)
        elif isinstance(expr, ast.Unary):
            self.expr(expr.operand, names)
        elif isinstance(expr, ast.Binary):
            self.expr(expr.left, names)
            self.expr(expr.right, names)
        elif isinstance(expr, ast.Index):
            self.expr(expr.obj, names)
            self.expr(expr.index, names)
        elif isinstance(expr, ast.Attr):
            self._attr(expr, names)
        elif isinstance(expr, ast.Call):
            self.call(expr, names, statement=False)

    def _attr(self, expr: ast.Attr, names: set[str]) -> None:
        """A field of the event value must exist; any other attribute's object is checked."""
        if isinstance(expr.obj, ast.Var) and expr.obj.name == self.alias:
            fields = EVENTS[self.event].fields
            if expr.name not in fields:
                self.fail(
                    expr.name_span,
                    f"a {self.event} has no field {expr.name!r}"
                    f"{did_you_mean(expr.name, fields)}; fields: {', '.join(fields)}",
                )
        elif dotted_name(expr) not in OPERATIONS:
            self.expr(expr.obj, names)
