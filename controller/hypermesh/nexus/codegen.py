"""Nexus handler bodies compiled to Python once, when ``nexus run`` loads them.

``nexus run`` used to walk a handler's syntax tree for every event (the walker is still there,
``Runner(interpret=True)``, as the reference the tests and ``bench/nexus.py`` compare with).
This module writes the source of one Python function per handler and ``compile()``\\ s it:

- Nothing the program wrote is put into the generated source. Names become numbered locals
  (``l3``), each text, key, position and compile-time value a numbered constant (``k7``) of
  the function's namespace; the source holds only generated identifiers, integer literals and
  calls of the helpers below. The namespace has no built-ins.
- The values, the type checks and the errors are the evaluator's: each helper takes the common
  types' fast path and hands anything else to the evaluator's own method
  (:meth:`Evaluator.operate`, ``attr``, ``index``, ...), so a mistake is the same message at
  the same ``FILE:LINE:COL``. Names resolve lexically at compile time exactly as the walker's
  scopes resolve them at run time.
- The SDK operations of a statement are done before the rest of it, innermost first, as the
  walker lifts them; ``log`` and ``reply`` are plain calls, the others awaited (a body with
  none of those is a plain function, not a coroutine).
- Loop iterations are counted against ``MAX_ITERATIONS`` in each run of a handler, and
  strings, lists and ranges keep ``MAX_ITEMS``.

A body Python refuses to compile (nesting deeper than its parser allows) stays with the walker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hypermesh.nexus import ast
from hypermesh.nexus.errors import did_you_mean
from hypermesh.nexus.evaluate import MAX_ITERATIONS, Evaluator, Fail, dotted_name, failure, is_int
from hypermesh.nexus.values import (
    BUILTINS,
    MAX_ITEMS,
    OPERATIONS,
    Builtin,
    NexusTypeError,
    Template,
    to_text,
    type_name,
)

__all__ = ["At", "CompiledHandler", "compile_handler"]

_EVALUATOR = Evaluator()
"""The evaluator whose methods decide every case the fast paths leave (it keeps no state
those methods use)."""
_IDENT = re.compile(r"[a-z_][a-z_0-9]*\Z")


@dataclass(frozen=True, slots=True)
class At:
    """Where a check is made: the file, the span a mistake is reported at, the syntax node
    the evaluator's method needs, and a word of the message (an attribute's name, ...)."""

    file: str
    span: ast.Span
    node: Any = None
    what: str = ""

    def fail(self, message: str) -> Fail:
        return failure(self.file, self.span, message)


@dataclass(frozen=True, slots=True)
class CompiledHandler:
    """A handler's body as a Python function of (event, call); a coroutine function when
    ``awaits``."""

    function: Callable[[Any, Any], Any]
    awaits: bool
    source: str


# -- the helpers the generated code calls ----------------------------------------------------


def _raise(at: At) -> Any:
    raise at.fail(at.what)


def _bool(value: Any, at: At) -> bool:
    if value is True or value is False:
        return value
    raise at.fail(f"{at.what} needs booleans, got {type_name(value)}")


def _not(value: Any, at: At) -> bool:
    if value is True or value is False:
        return not value
    raise at.fail(f"not needs a boolean, got {type_name(value)}")


def _neg(value: Any, at: At) -> int:
    if is_int(value):
        return -int(value)
    raise at.fail(f"cannot negate a {type_name(value)}")


def _operator(op: str) -> Callable[[Any, Any, At], Any]:
    """``left op right`` by the evaluator (the generated code inlines the integer cases)."""

    def operate(left: Any, right: Any, at: At) -> Any:
        return _EVALUATOR.operate(op, left, right, at.span, at.file)

    return operate


def _add(left: Any, right: Any, at: At) -> Any:
    if type(left) is str and type(right) is str and len(left) + len(right) <= MAX_ITEMS:
        return left + right
    return _EVALUATOR.operate("+", left, right, at.span, at.file)


def _text(value: Any, at: At) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    try:
        return to_text(value)
    except NexusTypeError as exc:
        raise at.fail(str(exc)) from None


def _attr(obj: Any, at: At) -> Any:
    if type(obj) is dict and at.what in obj:
        return obj[at.what]
    return _EVALUATOR.attr(obj, at.node, at.file)


def _index(obj: Any, index: Any, at: At) -> Any:
    kind = type(obj)
    if kind is list and type(index) is int and -len(obj) <= index < len(obj):
        return obj[index]
    if kind is dict and type(index) is str and index in obj:
        return obj[index]
    return _EVALUATOR.index(obj, index, at.node, at.file)


def _invoke(function: Callable[..., Any], at: At, *args: Any) -> Any:
    try:
        return function(*args)
    except NexusTypeError as exc:
        raise at.fail(str(exc)) from None


def _callee(func: Any, count: int, at: At) -> Callable[..., Any]:
    """The function a call of ``func`` with ``count`` arguments runs (the evaluator's checks)."""
    if isinstance(func, Template):
        raise at.fail(
            f"template {func.name!r} declares resources: call it as a statement, "
            "not in an expression"
        )
    if not isinstance(func, Builtin):
        raise at.fail(f"a {type_name(func)} cannot be called")
    low, high = func.arity
    if not low <= count <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise at.fail(f"{func.name}() takes {want} argument(s), got {count}")
    return func.function


def _each(items: Any, at: At) -> Any:
    if isinstance(items, list | dict):
        return items
    raise at.fail(f"for ... in needs a list or a map, got {type_name(items)}")


def _pairs(items: Any, at: At) -> Iterable[tuple[Any, Any]]:
    if isinstance(items, list):
        return enumerate(items)
    if isinstance(items, dict):
        return items.items()
    raise at.fail(f"for ... in needs a list or a map, got {type_name(items)}")


def _condition(value: Any, at: At) -> Any:
    raise at.fail(f"an if condition must be a boolean, got {type_name(value)}")


_BINARY = {
    "==": "_eq",
    "!=": "_ne",
    "<": "_lt",
    "<=": "_le",
    ">": "_gt",
    ">=": "_ge",
    "+": "_add",
    "-": "_sub",
    "*": "_mul",
    "/": "_div",
    "%": "_mod",
    "in": "_in",
}

_HELPERS: dict[str, Any] = {
    "_len": len,
    "_int": int,
    "_str": str,
    "_dict": dict,
    "_scalar": frozenset({int, str, bool}),
    "_raise": _raise,
    "_bool": _bool,
    "_not": _not,
    "_neg": _neg,
    **{helper: _operator(op) for op, helper in _BINARY.items() if op != "+"},
    "_add": _add,
    "_text": _text,
    "_attr": _attr,
    "_index": _index,
    "_invoke": _invoke,
    "_callee": _callee,
    "_each": _each,
    "_pairs": _pairs,
    "_condition": _condition,
}


# -- the code generator -------------------------------------------------------------------


class _Names:
    """A lexical scope at compile time: each Nexus name and the Python name holding it."""

    __slots__ = ("parent", "vars")

    def __init__(self, parent: _Names | None = None) -> None:
        self.parent = parent
        self.vars: dict[str, str] = {}

    def lookup(self, name: str) -> str | None:
        scope: _Names | None = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        return None

    def visible(self) -> list[str]:
        out: dict[str, None] = {}
        scope: _Names | None = self
        while scope is not None:
            out.update(dict.fromkeys(scope.vars))
            scope = scope.parent
        return list(out)


def _children(expr: ast.Expr) -> tuple[ast.Expr, ...]:
    """The sub-expressions of ``expr``, in the order the evaluator evaluates them."""
    if isinstance(expr, ast.Str):
        return tuple(p for p in expr.parts if not isinstance(p, str))
    if isinstance(expr, ast.ListLit):
        return expr.items
    if isinstance(expr, ast.MapLit):
        return tuple(p.value for p in expr.pairs)
    if isinstance(expr, ast.Unary):
        return (expr.operand,)
    if isinstance(expr, ast.Binary):
        return (expr.left, expr.right)
    if isinstance(expr, ast.Attr):
        return (expr.obj,)
    if isinstance(expr, ast.Index):
        return (expr.obj, expr.index)
    if isinstance(expr, ast.Call):
        return (expr.func, *expr.args)
    return ()


class _Generator:
    """Writes the source of one handler's function and the namespace it runs in."""

    def __init__(self, file: str, immediate: frozenset[str]) -> None:
        self.file = file
        self.immediate = immediate
        self.namespace: dict[str, Any] = {"__builtins__": {}, **_HELPERS}
        self.lines: list[str] = []
        self.counter = 0
        self.awaits = False
        self.lifted: dict[int, str] = {}
        """``id`` of each SDK operation call already done → the local holding its result."""

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any) -> str:
        name = self.name("k")
        self.namespace[name] = value
        return name

    def at(self, span: ast.Span, node: Any = None, what: str = "") -> str:
        return self.const(At(self.file, span, node, what))

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    # -- statements -------------------------------------------------------------------------

    def body(self, stmts: Iterable[ast.Stmt], scope: _Names, depth: int) -> None:
        start = len(self.lines)
        for stmt in stmts:
            if isinstance(stmt, ast.Let):
                self.lift(stmt.value, scope, depth)
                local = self.name("l")
                self.emit(depth, f"{local} = {self.expr(stmt.value, scope)}")
                scope.vars[stmt.name] = local
            elif isinstance(stmt, ast.CallStmt):
                self.lift(stmt.call, scope, depth)
                code = self.expr(stmt.call, scope)
                if not _IDENT.match(code):
                    self.emit(depth, code)
            elif isinstance(stmt, ast.For):
                self.loop(stmt, scope, depth)
            elif isinstance(stmt, ast.If):
                self.branch(stmt, scope, depth)
            else:  # the checker admits nothing else in handlers
                self.emit(depth, f"_raise({self.at(stmt.span, what='not allowed in a handler')})")
        if len(self.lines) == start:
            self.emit(depth, "pass")

    def loop(self, stmt: ast.For, scope: _Names, depth: int) -> None:
        self.lift(stmt.iterable, scope, depth)
        items = self.expr(stmt.iterable, scope)
        where = self.at(stmt.iterable.span)
        inner = _Names(scope)
        first = self.name("l")
        inner.vars[stmt.var] = first
        if stmt.second is None:
            self.emit(depth, f"for {first} in _each({items}, {where}):")
        else:
            second = self.name("l")
            inner.vars[stmt.second] = second
            self.emit(depth, f"for {first}, {second} in _pairs({items}, {where}):")
        too_many = self.at(stmt.span, what=f"more than {MAX_ITERATIONS} loop iterations")
        self.emit(depth + 1, "n_ += 1")
        self.emit(depth + 1, f"if n_ > {MAX_ITERATIONS}:")
        self.emit(depth + 2, f"_raise({too_many})")
        self.body(stmt.body, inner, depth + 1)

    def branch(self, stmt: ast.If, scope: _Names, depth: int) -> None:
        self.lift(stmt.cond, scope, depth)
        cond = self.name("t")
        self.emit(depth, f"{cond} = {self.expr(stmt.cond, scope)}")
        self.emit(depth, f"if {cond} is True:")
        self.body(stmt.then, _Names(scope), depth + 1)
        self.emit(depth, f"elif {cond} is not False:")
        self.emit(depth + 1, f"_condition({cond}, {self.at(stmt.cond.span)})")
        if stmt.orelse is not None:
            self.emit(depth, "else:")
            self.body(stmt.orelse, _Names(scope), depth + 1)

    def lift(self, expr: ast.Expr, scope: _Names, depth: int) -> None:
        """Do every SDK operation in ``expr`` now, innermost first, each result in a local."""
        if isinstance(expr, ast.Call) and dotted_name(expr.func) in OPERATIONS:
            for arg in expr.args:
                self.lift(arg, scope, depth)
            args = ", ".join(self.expr(arg, scope) for arg in expr.args)
            op = dotted_name(expr.func)
            local = self.name("o")
            call = f"(call, {self.const(op)}, [{args}], {self.const(expr.span)})"
            if op in self.immediate:
                self.emit(depth, f"{local} = _operation_now{call}")
            else:
                self.awaits = True
                self.emit(depth, f"{local} = await _operation{call}")
            self.lifted[id(expr)] = local
            return
        for child in _children(expr):
            self.lift(child, scope, depth)

    # -- expressions ------------------------------------------------------------------------

    def expr(self, expr: ast.Expr, scope: _Names) -> str:
        if id(expr) in self.lifted:
            return self.lifted[id(expr)]
        if isinstance(expr, ast.Bool):
            return "True" if expr.value else "False"
        if isinstance(expr, ast.Int):
            return repr(int(expr.value))
        if isinstance(expr, ast.Str):
            return self.string(expr, scope)
        if isinstance(expr, ast.Var):
            return self.var(expr, scope)
        if isinstance(expr, ast.ListLit):
            return "[" + "".join(f"{self.expr(i, scope)}, " for i in expr.items) + "]"
        if isinstance(expr, ast.MapLit):
            return self.map_literal(expr, scope)
        if isinstance(expr, ast.Unary):
            helper = "_not" if expr.op == "not" else "_neg"
            return f"{helper}({self.expr(expr.operand, scope)}, {self.at(expr.span)})"
        if isinstance(expr, ast.Binary):
            return self.binary(expr, scope)
        if isinstance(expr, ast.Attr):
            where = self.at(expr.name_span, expr, expr.name)
            obj, key = self.name("t"), self.const(expr.name)
            return (
                f"({obj}[{key}] if ({obj} := {self.expr(expr.obj, scope)}).__class__ is _dict "
                f"and {key} in {obj} else _attr({obj}, {where}))"
            )
        if isinstance(expr, ast.Index):
            obj, index = self.expr(expr.obj, scope), self.expr(expr.index, scope)
            return f"_index({obj}, {index}, {self.at(expr.span, expr)})"
        if isinstance(expr, ast.Call):
            return self.call(expr, scope)
        raise AssertionError(expr)  # pragma: no cover

    def string(self, expr: ast.Str, scope: _Names) -> str:
        plain = expr.plain
        if plain is not None:
            return self.const(plain)
        parts = []
        for part in expr.parts:
            if isinstance(part, str):
                parts.append(self.const(part))
            else:
                parts.append(self.text(part, scope))
        text = self.name("t")
        too_long = self.at(expr.span, what=f"a string longer than {MAX_ITEMS} characters")
        joined = " + ".join(parts) if len(parts) > 1 else parts[0]
        return f"({text} if _len({text} := {joined}) <= {MAX_ITEMS} else _raise({too_long}))"

    def text(self, part: ast.Expr, scope: _Names) -> str:
        """A ``${...}`` of a string: the value as text (a compile-time value, converted now)."""
        code = self.expr(part, scope)
        known = self.namespace.get(code, self) if code.startswith("k") else self
        if type(known) in (str, int, bool):
            return self.const(to_text(known))
        value = self.name("t")
        return (
            f"({value} if ({value} := {code}).__class__ is _str "
            f"else _text({value}, {self.at(part.span)}))"
        )

    def var(self, expr: ast.Var, scope: _Names) -> str:
        found = scope.lookup(expr.name)
        if found is not None:
            return found
        if expr.name in BUILTINS:
            return self.const(BUILTINS[expr.name])
        if expr.name in OPERATIONS or expr.name in ("chain", "dns"):
            message = (
                f"{expr.name!r} is an SDK operation: it is only available inside an 'on' handler"
            )
        else:
            options = [*scope.visible(), *BUILTINS]
            message = f"undefined variable {expr.name!r}" + did_you_mean(expr.name, options)
        return f"_raise({self.at(expr.span, what=message)})"

    def map_literal(self, expr: ast.MapLit, scope: _Names) -> str:
        first: dict[str, ast.Span] = {}
        values: list[str] = []
        keys: list[str] = []
        for pair in expr.pairs:
            if pair.key in first:
                message = (
                    f"duplicate key {pair.key!r} (first at line {first[pair.key].line}, "
                    f"column {first[pair.key].column})"
                )
                values.append(f"_raise({self.at(pair.key_span, what=message)})")
                return "(" + "".join(f"{v}, " for v in values) + ")[-1]"
            first[pair.key] = pair.key_span
            keys.append(self.const(pair.key))
            values.append(self.expr(pair.value, scope))
        return "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True)) + "}"

    def binary(self, expr: ast.Binary, scope: _Names) -> str:
        left, right = self.expr(expr.left, scope), self.expr(expr.right, scope)
        if expr.op in ("and", "or"):
            left = f"_bool({left}, {self.at(expr.left.span, what=expr.op)})"
            right = f"_bool({right}, {self.at(expr.right.span, what=expr.op)})"
            if expr.op == "and":
                return f"({right} if {left} else False)"
            return f"(True if {left} else {right})"
        return self.operate(expr.op, left, right, self.at(expr.op_span))

    def operate(self, op: str, left: str, right: str, where: str) -> str:
        """``left op right``: integers (and for ``==``/``!=`` strings and booleans) inline, the
        helper for anything else; each side evaluated once, left first."""
        if op == "in":
            return f"_in({left}, {right}, {where})"
        a, b = self.name("t"), self.name("t")
        helper = f"{_BINARY[op]}({a}, {b}, {where})"
        both = f"({a} := {left}).__class__ is ({b} := {right}).__class__"
        if op in ("==", "!="):
            return f"({a} {op} {b} if {both} in _scalar else {helper})"
        if op in ("+", "-", "*", "<", "<=", ">", ">="):
            return f"({a} {op} {b} if {both} is _int else {helper})"
        python = "//" if op == "/" else "%"
        return f"({a} {python} {b} if {both} is _int and {b} else {helper})"

    def call(self, expr: ast.Call, scope: _Names) -> str:
        name = dotted_name(expr.func)
        where = self.at(expr.span)
        if name in OPERATIONS:  # every one was lifted; kept for the evaluator's message
            message = f"{name}() is an SDK operation: call it inside an 'on' handler"
            return f"_raise({self.at(expr.span, what=message)})"
        args = "".join(f", {self.expr(arg, scope)}" for arg in expr.args)
        if isinstance(expr.func, ast.Var) and scope.lookup(name) is None and name in BUILTINS:
            builtin = BUILTINS[name]
            low, high = builtin.arity
            if not low <= len(expr.args) <= high:
                want = str(low) if low == high else f"{low} to {high}"
                message = f"{name}() takes {want} argument(s), got {len(expr.args)}"
                return f"_raise({self.at(expr.span, what=message)})"
            return f"_invoke({self.const(builtin.function)}, {where}{args})"
        func = self.expr(expr.func, scope)
        return f"_invoke(_callee({func}, {len(expr.args)}, {where}), {where}{args})"


def compile_handler(
    body: tuple[ast.Stmt, ...],
    file: str,
    env: dict[str, Any],
    alias: str | None,
    operations: tuple[Callable[..., Any], Callable[..., Any]],
    immediate: frozenset[str] = frozenset({"log", "reply"}),
) -> CompiledHandler | None:
    """``body`` as a Python function of (event, call), seeing ``env`` and the event as
    ``alias``; ``operations`` run the SDK operations: (the ones in ``immediate``, the awaited
    ones), each called with (call, name, arguments, span). None when Python cannot compile it."""
    generator = _Generator(file, immediate)
    generator.namespace["_operation_now"], generator.namespace["_operation"] = operations
    base = _Names()
    for name, value in env.items():
        base.vars[name] = generator.const(value)
    if alias is not None:
        base.vars[alias] = "event"
    try:
        generator.body(body, _Names(base), 1)
        head = "async def " if generator.awaits else "def "
        source = "\n".join([head + "handler(event, call):", "    n_ = 0", *generator.lines])
        code = compile(source + "\n", f"<nexus handler {file}>", "exec")
    except (SyntaxError, RecursionError, MemoryError, ValueError):  # nested too deeply
        return None
    exec(code, generator.namespace)  # noqa: S102 - our own source, user values only as constants
    return CompiledHandler(generator.namespace["handler"], generator.awaits, source)
