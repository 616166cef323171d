"""Nexus expressions and the statements that bind names, evaluated to plain values.

One evaluator serves both compile time (declarations, resource fields, handler clauses) and
``nexus run`` (handler bodies): the same values, errors and built-ins in both. It knows nothing
of resources or handlers; a mistake abandons the statement with a :class:`Fail` that carries the
problem at its ``FILE:LINE:COL``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hypermesh.nexus import ast
from hypermesh.nexus.errors import Position, Problem, did_you_mean
from hypermesh.nexus.values import (
    BUILTINS,
    MAX_ITEMS,
    OPERATIONS,
    Builtin,
    Module,
    NexusTypeError,
    Template,
    to_text,
    type_name,
)

__all__ = ["MAX_ITERATIONS", "Evaluator", "Fail", "Origin", "Scope", "dotted_name", "failure"]

MAX_ITERATIONS = 2_000_000
"""Loop iterations in one compilation (or one run of a handler), all loops together."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value (and each item of it, for list and map literals) was written."""

    span: ast.Span
    items: Mapping[str | int, Origin] | None = None


class Fail(Exception):
    """Abandons the statement being evaluated; ``problem`` None when it was already reported."""

    def __init__(self, problem: Problem | None) -> None:
        super().__init__(str(problem))
        self.problem = problem


def failure(file: str, span: ast.Span, message: str) -> Fail:
    """The ``Fail`` that reports ``message`` at ``span`` of ``file``."""
    return Fail(Problem(Position(file, span.line, span.column), message))


class Scope:
    """Names visible at a point of the program; lexical, each block a child scope."""

    __slots__ = ("parent", "vars")

    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.vars: dict[str, tuple[Any, ast.Span]] = {}

    def lookup(self, name: str) -> tuple[Any, ast.Span] | None:
        scope: Scope | None = self
        while scope is not None:
            found = scope.vars.get(name)
            if found is not None:
                return found
            scope = scope.parent
        return None

    def names(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        scope: Scope | None = self
        while scope is not None:
            for name, (value, _) in scope.vars.items():
                out.setdefault(name, value)
            scope = scope.parent
        return out


def dotted_name(expr: ast.Expr) -> str:
    """``a.b.c`` for a name or a chain of attributes; empty for anything else."""
    if isinstance(expr, ast.Var):
        return expr.name
    if isinstance(expr, ast.Attr):
        inner = dotted_name(expr.obj)
        return f"{inner}.{expr.name}" if inner else ""
    return ""


def is_int(value: Any) -> bool:
    """An integer, and not a boolean (which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


class Evaluator:
    """Evaluates expressions in a scope, binds names, and unrolls ``for`` and ``if``; counts
    loop iterations against ``MAX_ITERATIONS``."""

    def __init__(self) -> None:
        self.iterations = 0

    def fail(self, file: str, span: ast.Span, message: str) -> Fail:
        return failure(file, span, message)

    # -- statements that bind names ---------------------------------------------------------

    def define(self, scope: Scope, name: str, value: Any, span: ast.Span, file: str) -> None:
        first = scope.vars.get(name)
        if first is not None:
            raise self.fail(
                file,
                span,
                f"{name!r} is already defined in this scope at line {first[1].line}, column "
                f"{first[1].column} (names are not reassigned; use a new name)",
            )
        if name in BUILTINS:
            raise self.fail(file, span, f"{name!r} is a built-in function; choose another name")
        scope.vars[name] = (value, span)

    def iterate(self, stmt: ast.For, scope: Scope, file: str) -> Iterable[Scope]:
        """A child scope per item of the loop's list or map, its names bound."""
        items, _ = self.eval(stmt.iterable, scope, file)
        pairs: list[tuple[Any, Any]]
        if isinstance(items, list):
            pairs = list(enumerate(items))
        elif isinstance(items, dict):
            pairs = list(items.items())
        else:
            raise self.fail(
                file,
                stmt.iterable.span,
                f"for ... in needs a list or a map, got {type_name(items)}",
            )
        for first, second in pairs:
            self.iterations += 1
            if self.iterations > MAX_ITERATIONS:
                raise self.fail(file, stmt.span, f"more than {MAX_ITERATIONS} loop iterations")
            child = Scope(scope)
            if stmt.second is None:
                value = second if isinstance(items, list) else first
                child.vars[stmt.var] = (value, stmt.var_span)
            else:
                child.vars[stmt.var] = (first, stmt.var_span)
                child.vars[stmt.second] = (second, stmt.var_span)
            yield child

    def branch(self, stmt: ast.If, scope: Scope, file: str) -> tuple[ast.Stmt, ...] | None:
        """The statements the condition chooses (None: no ``else``)."""
        cond, _ = self.eval(stmt.cond, scope, file)
        if not isinstance(cond, bool):
            raise self.fail(
                file, stmt.cond.span, f"an if condition must be a boolean, got {type_name(cond)}"
            )
        return stmt.then if cond else stmt.orelse

    # -- expressions ------------------------------------------------------------------------

    def eval(self, expr: ast.Expr, scope: Scope, file: str) -> tuple[Any, Origin]:
        span = expr.span
        if isinstance(expr, ast.Int | ast.Bool):
            return expr.value, Origin(span)
        if isinstance(expr, ast.Str):
            return self.string(expr, scope, file), Origin(span)
        if isinstance(expr, ast.Var):
            return self.var(expr, scope, file), Origin(span)
        if isinstance(expr, ast.ListLit):
            return self.list_literal(expr, scope, file)
        if isinstance(expr, ast.MapLit):
            return self.map_literal(expr, scope, file)
        if isinstance(expr, ast.Unary):
            return self.unary(expr, scope, file), Origin(span)
        if isinstance(expr, ast.Binary):
            return self.binary(expr, scope, file), Origin(span)
        if isinstance(expr, ast.Attr):
            obj, _ = self.eval(expr.obj, scope, file)
            return self.attr(obj, expr, file), Origin(span)
        if isinstance(expr, ast.Index):
            obj, _ = self.eval(expr.obj, scope, file)
            index, _ = self.eval(expr.index, scope, file)
            return self.index(obj, index, expr, file), Origin(span)
        if isinstance(expr, ast.Call):
            return self.call(expr, scope, file), Origin(span)
        raise AssertionError(expr)  # pragma: no cover

    def list_literal(self, expr: ast.ListLit, scope: Scope, file: str) -> tuple[Any, Origin]:
        values: list[Any] = []
        origins: dict[str | int, Origin] = {}
        for i, item in enumerate(expr.items):
            value, origin = self.eval(item, scope, file)
            values.append(value)
            origins[i] = origin
        return values, Origin(expr.span, origins)

    def map_literal(self, expr: ast.MapLit, scope: Scope, file: str) -> tuple[Any, Origin]:
        out: dict[str, Any] = {}
        items: dict[str | int, Origin] = {}
        first: dict[str, ast.Span] = {}
        for pair in expr.pairs:
            if pair.key in first:
                raise self.fail(
                    file,
                    pair.key_span,
                    f"duplicate key {pair.key!r} (first at line {first[pair.key].line}, "
                    f"column {first[pair.key].column})",
                )
            first[pair.key] = pair.key_span
            value, origin = self.eval(pair.value, scope, file)
            out[pair.key] = value
            items[pair.key] = Origin(pair.key_span, origin.items)
        return out, Origin(expr.span, items)

    def unary(self, expr: ast.Unary, scope: Scope, file: str) -> Any:
        value, _ = self.eval(expr.operand, scope, file)
        if expr.op == "not":
            if not isinstance(value, bool):
                raise self.fail(file, expr.span, f"not needs a boolean, got {type_name(value)}")
            return not value
        if not is_int(value):
            raise self.fail(file, expr.span, f"cannot negate a {type_name(value)}")
        return -value

    def var(self, expr: ast.Var, scope: Scope, file: str) -> Any:
        found = scope.lookup(expr.name)
        if found is not None:
            return found[0]
        if expr.name in BUILTINS:
            return BUILTINS[expr.name]
        if expr.name in OPERATIONS or expr.name in ("chain", "dns"):
            raise self.fail(
                file,
                expr.span,
                f"{expr.name!r} is an SDK operation: it is only available inside an 'on' handler",
            )
        options = [*scope.names(), *BUILTINS]
        raise self.fail(
            file, expr.span, f"undefined variable {expr.name!r}{did_you_mean(expr.name, options)}"
        )

    def string(self, expr: ast.Str, scope: Scope, file: str) -> str:
        out = []
        for part in expr.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value, _ = self.eval(part, scope, file)
            try:
                out.append(to_text(value))
            except NexusTypeError as exc:
                raise self.fail(file, part.span, str(exc)) from None
        text = "".join(out)
        if len(text) > MAX_ITEMS:
            raise self.fail(file, expr.span, f"a string longer than {MAX_ITEMS} characters")
        return text

    def binary(self, expr: ast.Binary, scope: Scope, file: str) -> Any:
        op = expr.op
        left, _ = self.eval(expr.left, scope, file)
        if op in ("and", "or"):
            return self.logical(expr, left, scope, file)
        right, _ = self.eval(expr.right, scope, file)
        return self.operate(op, left, right, expr.op_span, file)

    def operate(self, op: str, left: Any, right: Any, at: ast.Span, file: str) -> Any:
        """``left op right`` for every operator but ``and`` and ``or``; a mistake at ``at``."""
        lt, rt = type_name(left), type_name(right)
        if op == "in":
            if isinstance(right, dict):  # a key of the map: only a string can be one
                return isinstance(left, str) and left in right
            if isinstance(right, list):
                return left in right
            if isinstance(right, str) and isinstance(left, str):
                return left in right
            raise self.fail(file, at, f"cannot test a {lt} in a {rt}")
        if op in ("==", "!="):
            if lt != rt:
                raise self.fail(file, at, f"cannot compare {lt} and {rt} with {op}")
            return (left == right) == (op == "==")
        if op in ("<", "<=", ">", ">="):
            if lt != rt or lt not in ("integer", "string"):
                raise self.fail(file, at, f"cannot order {lt} and {rt} with {op}")
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[
                op
            ]
        if op == "+":
            return self.add(left, right, at, file)
        return self.arithmetic(op, left, right, at, file)

    def logical(self, expr: ast.Binary, left: Any, scope: Scope, file: str) -> bool:
        """``and`` and ``or``: booleans only, the right side evaluated only when it decides."""
        op = expr.op
        if not isinstance(left, bool):
            raise self.fail(file, expr.left.span, f"{op} needs booleans, got {type_name(left)}")
        if (op == "and" and not left) or (op == "or" and left):
            return left
        right, _ = self.eval(expr.right, scope, file)
        if not isinstance(right, bool):
            raise self.fail(file, expr.right.span, f"{op} needs booleans, got {type_name(right)}")
        return right

    def add(self, left: Any, right: Any, at: ast.Span, file: str) -> Any:
        lt, rt = type_name(left), type_name(right)
        if lt == rt and lt in ("integer", "string", "list"):
            result = left + right
            if not is_int(result) and len(result) > MAX_ITEMS:
                raise self.fail(file, at, f"a {lt} longer than {MAX_ITEMS}")
            return result
        if lt == rt == "map":
            return {**left, **right}
        hint = ' (build text with "${...}" or str())' if "string" in (lt, rt) else ""
        raise self.fail(file, at, f"cannot add {lt} and {rt}{hint}")

    def arithmetic(self, op: str, left: Any, right: Any, at: ast.Span, file: str) -> Any:
        if not (is_int(left) and is_int(right)):
            lt, rt = type_name(left), type_name(right)
            raise self.fail(file, at, f"{op} needs integers, got {lt} and {rt}")
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if right == 0:
            raise self.fail(file, at, "division by zero")
        return left // right if op == "/" else left % right

    def attr(self, obj: Any, expr: ast.Attr, file: str) -> Any:
        if isinstance(obj, Module):
            if obj.broken:
                raise Fail(None)
            if expr.name in obj.exports:
                return obj.exports[expr.name]
            raise self.fail(
                file,
                expr.name_span,
                f"module {obj.alias!r} has no {expr.name!r}{did_you_mean(expr.name, obj.exports)}",
            )
        if isinstance(obj, dict):
            if expr.name in obj:
                return obj[expr.name]
            raise self.fail(
                file,
                expr.name_span,
                f"map has no key {expr.name!r}{did_you_mean(expr.name, obj)}",
            )
        raise self.fail(file, expr.name_span, f"a {type_name(obj)} has no fields")

    def index(self, obj: Any, index: Any, expr: ast.Index, file: str) -> Any:
        if isinstance(obj, list | str):
            if not is_int(index):
                raise self.fail(file, expr.index.span, f"a {type_name(obj)} index is an integer")
            if not -len(obj) <= index < len(obj):
                raise self.fail(
                    file,
                    expr.index.span,
                    f"index {index} is out of range ({type_name(obj)} of length {len(obj)})",
                )
            return obj[index]
        if isinstance(obj, dict):
            if not isinstance(index, str):
                raise self.fail(file, expr.index.span, "a map key is a string")
            if index not in obj:
                raise self.fail(
                    file,
                    expr.index.span,
                    f"map has no key {index!r}{did_you_mean(index, obj)}",
                )
            return obj[index]
        raise self.fail(file, expr.span, f"cannot index a {type_name(obj)}")

    def call(self, expr: ast.Call, scope: Scope, file: str) -> Any:
        name = dotted_name(expr.func)
        if name in OPERATIONS:
            raise self.fail(
                file, expr.span, f"{name}() is an SDK operation: call it inside an 'on' handler"
            )
        func, _ = self.eval(expr.func, scope, file)
        if isinstance(func, Template):
            raise self.fail(
                file,
                expr.span,
                f"template {func.name!r} declares resources: call it as a statement, "
                "not in an expression",
            )
        if not isinstance(func, Builtin):
            raise self.fail(file, expr.span, f"a {type_name(func)} cannot be called")
        low, high = func.arity
        if not low <= len(expr.args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise self.fail(
                file,
                expr.span,
                f"{func.name}() takes {want} argument(s), got {len(expr.args)}",
            )
        args = [self.eval(a, scope, file)[0] for a in expr.args]
        try:
            return func.function(*args)
        except NexusTypeError as exc:
            raise self.fail(file, expr.span, str(exc)) from None
