"""``nexus fmt``: one canonical layout, from the syntax tree, keeping every comment.

Two-space indents; one statement per line; a block's ``{`` on its header line; a list or map
on one line when it fits in 100 columns, else one item per line with a trailing comma; a block
holding a single field and no comment on one line (``registry { node = "registry" }``); at most
one blank line where the author left one or more. Comments stay before the statement they
preceded, or at the end of its first line; a comment written inside a multi-line value moves
above its statement. Formatting is idempotent, and never changes what a program compiles to
(both are property-tested).
"""

from __future__ import annotations

import re

from hypermesh.nexus import ast
from hypermesh.nexus.errors import NexusError, Position, Problem
from hypermesh.nexus.parser import KEYWORDS, TOO_DEEP, parse

__all__ = ["WIDTH", "format_program", "format_source"]

WIDTH = 100
INDENT = "  "
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KIND_WORDS = {"network", "node", "peer", "tld", "record", "policy"}

# Binding strength: higher binds tighter.
_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4}
_PREC.update({"+": 5, "-": 5, "*": 6, "/": 6, "%": 6})


def format_source(text: str, file: str = "<string>") -> str:
    """The canonical layout of ``text``; raises NexusError when it does not parse."""
    program = parse(text, file)
    try:
        return format_program(program, text)
    except RecursionError:
        raise NexusError([Problem(Position(file), TOO_DEEP)]) from None


def format_program(program: ast.Program, text: str) -> str:
    printer = _Printer(program, text)
    printer.body(program.body, 0, None)
    printer.rest(0)
    out = "\n".join(printer.lines).rstrip("\n")
    return out + "\n" if out else ""


def _prec(expr: ast.Expr) -> int:
    if isinstance(expr, ast.Binary):
        return _PREC[expr.op]
    if isinstance(expr, ast.Unary):
        return 3 if expr.op == "not" else 7
    if isinstance(expr, ast.Attr | ast.Index | ast.Call):
        return 8
    return 9


def _key(pair: ast.Pair) -> str:
    word = pair.key
    if _NAME.fullmatch(word) and (word not in KEYWORDS or word in _KIND_WORDS):
        return word
    return _quote(word)


def _escape(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return out.replace("${", "\\${")


def _quote(text: str) -> str:
    return f'"{_escape(text)}"'


def flat(expr: ast.Expr) -> str:
    """An expression on one line, with the fewest parentheses that keep its meaning."""
    if isinstance(expr, ast.Int):
        return str(expr.value)
    if isinstance(expr, ast.Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, ast.Str):
        parts = []
        for part in expr.parts:
            parts.append(_escape(part) if isinstance(part, str) else "${" + flat(part) + "}")
        return '"' + "".join(parts) + '"'
    if isinstance(expr, ast.Var):
        return expr.name
    if isinstance(expr, ast.ListLit):
        return "[" + ", ".join(flat(i) for i in expr.items) + "]"
    if isinstance(expr, ast.MapLit):
        return "{" + ", ".join(f"{_key(p)}: {flat(p.value)}" for p in expr.pairs) + "}"
    if isinstance(expr, ast.Unary):
        if expr.op == "not":
            # Parentheses after not, though not needed, say what it negates.
            operand = expr.operand
            return (
                f"not ({flat(operand)})"
                if isinstance(operand, ast.Binary)
                else (f"not {_wrap(operand, 3)}")
            )
        return f"-{_wrap(expr.operand, 7)}"
    if isinstance(expr, ast.Binary):
        prec = _PREC[expr.op]
        right_min = prec + 1
        left_min = prec + 1 if prec == 4 else prec
        return f"{_wrap(expr.left, left_min)} {expr.op} {_wrap(expr.right, right_min)}"
    if isinstance(expr, ast.Attr):
        return f"{_wrap(expr.obj, 8)}.{expr.name}"
    if isinstance(expr, ast.Index):
        return f"{_wrap(expr.obj, 8)}[{flat(expr.index)}]"
    if isinstance(expr, ast.Call):
        return f"{_wrap(expr.func, 8)}({', '.join(flat(a) for a in expr.args)})"
    raise AssertionError(expr)  # pragma: no cover


def _wrap(expr: ast.Expr, minimum: int) -> str:
    text = flat(expr)
    if _prec(expr) < minimum:
        return f"({text})"
    if isinstance(expr, ast.Unary) and expr.op == "-" and minimum == 7:
        return f"({text})" if text.startswith("--") else text
    return text


def laid_out(expr: ast.Expr, indent: int, used: int) -> str:
    """``expr`` starting at column ``used``: broken one item a line when it would not fit."""
    text = flat(expr)
    if used + len(text) <= WIDTH or not isinstance(expr, ast.ListLit | ast.MapLit):
        return text
    inner = INDENT * (indent + 1)
    rows = []
    if isinstance(expr, ast.ListLit):
        if not expr.items:
            return text
        for item in expr.items:
            rows.append(inner + laid_out(item, indent + 1, len(inner)) + ",")
        return "[\n" + "\n".join(rows) + "\n" + INDENT * indent + "]"
    if not expr.pairs:
        return text
    for pair in expr.pairs:
        head = f"{inner}{_key(pair)}: "
        rows.append(head + laid_out(pair.value, indent + 1, len(head)) + ",")
    return "{\n" + "\n".join(rows) + "\n" + INDENT * indent + "}"


class _Printer:
    def __init__(self, program: ast.Program, text: str) -> None:
        self.source = text.splitlines()
        self.comments = list(program.comments)
        self.used = [False] * len(self.comments)
        self.lines: list[str] = []

    # -- comments -----------------------------------------------------------------------

    def take(self, test: object) -> list[ast.Comment]:
        assert callable(test)
        found = []
        for i, comment in enumerate(self.comments):
            if not self.used[i] and test(comment):
                self.used[i] = True
                found.append(comment)
        return found

    def emit_comments(self, comments: list[ast.Comment], indent: int) -> None:
        for comment in comments:
            self.lines.append(INDENT * indent + comment.text)

    def follows(self, span: ast.Span, comment: ast.Comment) -> bool:
        """Nothing but blanks between the end of ``span`` and ``comment`` on its line."""
        line = self.source[comment.line - 1]
        return not line[span.end_column - 1 : comment.column - 1].strip()

    def blank_between(self, after: int, before: int) -> bool:
        return any(not self.source[n - 1].strip() for n in range(after + 1, before))

    def rest(self, indent: int) -> None:
        leftover = self.take(lambda c: True)
        if leftover and self.lines and self.blank_between(self._last_line, leftover[0].line):
            self.lines.append("")
        self.emit_comments(leftover, indent)

    # -- statements ---------------------------------------------------------------------

    _last_line = 0

    def body(self, stmts: tuple[ast.Stmt, ...], indent: int, close: tuple[int, int] | None) -> None:
        start = len(self.lines)
        for stmt in stmts:
            lead = self.take(lambda c, s=stmt: (c.line, c.column) < (s.span.line, s.span.column))
            for comment in lead:
                if len(self.lines) > start and self.blank_between(self._last_line, comment.line):
                    self.lines.append("")
                self.lines.append(INDENT * indent + comment.text)
                self._last_line = comment.line
            if len(self.lines) > start and self.blank_between(self._last_line, stmt.span.line):
                self.lines.append("")
            self.stmt(stmt, indent)
            self._last_line = stmt.span.end_line
        if close is not None:
            for comment in self.take(lambda c: (c.line, c.column) < close):
                if len(self.lines) > start and self.blank_between(self._last_line, comment.line):
                    self.lines.append("")
                self.lines.append(INDENT * indent + comment.text)
                self._last_line = comment.line

    def trailing(self, line: int, before: tuple[int, int] | None = None) -> str:
        found = self.take(
            lambda c: (
                not c.own_line
                and c.line == line
                and (before is None or (c.line, c.column) < before)
            )
        )
        return "".join("  " + c.text for c in found)

    def simple(self, stmt: ast.Stmt, indent: int, head: str, expr: ast.Expr | None) -> None:
        span = stmt.span
        hoisted = self.take(lambda c: c.own_line and span.line <= c.line <= span.end_line)
        self.emit_comments(hoisted, indent)
        trail = self.take(
            lambda c: (
                not c.own_line
                and span.line <= c.line <= span.end_line
                and (c.line < span.end_line or self.follows(span, c))
            )
        )
        prefix = INDENT * indent + head
        text = prefix + (laid_out(expr, indent, len(prefix)) if expr is not None else "")
        first, *more = text.split("\n")
        self.lines.append(first + "".join("  " + c.text for c in trail))
        self.lines.extend(more)

    def stmt(self, stmt: ast.Stmt, indent: int) -> None:
        if isinstance(stmt, ast.Assign):
            self.simple(stmt, indent, f"{stmt.field} = ", stmt.value)
        elif isinstance(stmt, ast.Let):
            self.simple(stmt, indent, f"let {stmt.name} = ", stmt.value)
        elif isinstance(stmt, ast.Import):
            alias = f" as {stmt.alias}"
            if stmt.git:
                head = f"import git {_quote(stmt.path)} rev {_quote(stmt.rev)}{alias}"
            else:
                head = f"import {_quote(stmt.path)}{alias}"
            self.simple(stmt, indent, head, None)
        elif isinstance(stmt, ast.CallStmt):
            self.simple(stmt, indent, flat(stmt.call), None)
        elif isinstance(stmt, ast.Resource):
            self.block(stmt, indent, f"{stmt.keyword} {flat(stmt.name)}", stmt.body)
        elif isinstance(stmt, ast.Block):
            label = f" {flat(stmt.label)}" if stmt.label is not None else ""
            head = f"{stmt.field}{label}"
            if not self.inline(stmt, indent, head):
                self.block(stmt, indent, head, stmt.body)
        elif isinstance(stmt, ast.Def):
            self.block(stmt, indent, f"def {stmt.name}({', '.join(stmt.params)})", stmt.body)
        elif isinstance(stmt, ast.For):
            names = stmt.var if stmt.second is None else f"{stmt.var}, {stmt.second}"
            self.block(stmt, indent, f"for {names} in {flat(stmt.iterable)}", stmt.body)
        elif isinstance(stmt, ast.If):
            self.if_(stmt, indent, "if")
        elif isinstance(stmt, ast.On):
            clauses = "".join(f" {word} {flat(value)}" for word, value, _ in stmt.clauses)
            alias = f" as {stmt.alias}" if stmt.alias else ""
            self.block(stmt, indent, f"on {stmt.event}{clauses}{alias}", stmt.body)

    def inline(self, stmt: ast.Block, indent: int, head: str) -> bool:
        if len(stmt.body) != 1 or not isinstance(stmt.body[0], ast.Assign):
            return False
        span = stmt.span
        if any(
            not self.used[i]
            and span.line <= c.line <= span.end_line
            and (c.line, c.column) < (span.end_line, span.end_column)
            for i, c in enumerate(self.comments)
        ):
            return False
        only = stmt.body[0]
        text = f"{INDENT * indent}{head} {{ {only.field} = {flat(only.value)} }}"
        if len(text) > WIDTH:
            return False
        self.lines.append(text + self.trailing(span.end_line))
        return True

    def block(self, stmt: ast.Stmt, indent: int, head: str, body: tuple[ast.Stmt, ...]) -> None:
        span = stmt.span
        close = (span.end_line, span.end_column - 1)
        opening = body[0].span if body else None
        before = (opening.line, opening.column) if opening is not None else close
        header_trail = self.take(
            lambda c: not c.own_line and c.line == span.line and (c.line, c.column) < before
        )
        has_inner = any(
            not self.used[i] and (c.line, c.column) < close and c.line >= span.line
            for i, c in enumerate(self.comments)
        )
        trail = "".join("  " + c.text for c in header_trail)
        if not body and not has_inner:
            self.lines.append(f"{INDENT * indent}{head} {{}}{trail}" + self.trailing(span.end_line))
            return
        self.lines.append(f"{INDENT * indent}{head} {{{trail}")
        saved = self._last_line
        self._last_line = span.line
        self.body(body, indent + 1, close)
        self._last_line = saved
        self.lines.append(INDENT * indent + "}" + self.trailing(span.end_line))

    def if_(self, stmt: ast.If, indent: int, word: str) -> None:
        span = stmt.span
        head = f"{INDENT * indent}{word} {flat(stmt.cond)} {{"
        then_end = span.end_line, span.end_column - 1
        if stmt.else_span is not None:
            then_end = (stmt.else_span.line, stmt.else_span.column)
        opening = stmt.then[0].span if stmt.then else None
        before = (opening.line, opening.column) if opening is not None else then_end
        trail = self.take(
            lambda c: not c.own_line and c.line == span.line and (c.line, c.column) < before
        )
        self.lines.append(head + "".join("  " + c.text for c in trail))
        saved = self._last_line
        self._last_line = span.line
        self.body(stmt.then, indent + 1, then_end)
        if stmt.orelse is None:
            self.lines.append(INDENT * indent + "}" + self.trailing(span.end_line))
        elif stmt.else_if:
            nested = stmt.orelse[0]
            assert isinstance(nested, ast.If)
            self.if_(nested, indent, "} else if")
            self._last_line = saved
            return
        else:
            self.lines.append(INDENT * indent + "} else {")
            self._last_line = stmt.else_span.line if stmt.else_span is not None else span.line
            self.body(stmt.orelse, indent + 1, (span.end_line, span.end_column - 1))
            self.lines.append(INDENT * indent + "}" + self.trailing(span.end_line))
        self._last_line = saved
