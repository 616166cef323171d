"""Text → syntax tree. The grammar is ``nexus.lark`` (package data), parsed LALR(1) by lark.

Syntax errors become :class:`NexusError` with ``FILE:LINE:COL: message`` and the tokens that
would have been accepted, in words a reader knows (``'}'``, ``a name``, ``a string``).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any, cast

import lark
from lark import Token, Tree

from hypermesh.nexus import ast
from hypermesh.nexus.errors import NexusError, Position, Problem

__all__ = ["KEYWORDS", "TOO_DEEP", "grammar_text", "parse", "parse_expression"]

TOO_DEEP = "nested too deeply: split the expression with let"

KEYWORDS = (
    "and",
    "as",
    "def",
    "else",
    "false",
    "for",
    "if",
    "import",
    "in",
    "let",
    "network",
    "node",
    "not",
    "on",
    "peer",
    "policy",
    "record",
    "tld",
    "true",
)
"""Words the grammar reserves at the start of a statement (kinds may still name fields)."""

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "$": "$"}

_TERMINAL_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "INT": "an integer",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "EQUAL": "'='",
    "COMMA": "','",
    "COLON": "':'",
    "DOT": "'.'",
    "COMPARE": "a comparison",
    "ADD": "'+'",
    "NEG": "'-'",
    "MUL": "'*'",
    "$END": "the end of the file",
}


def grammar_text() -> str:
    """The lark grammar, as shipped in the package."""
    return resources.files("hypermesh.nexus").joinpath("nexus.lark").read_text(encoding="utf-8")


@cache
def _parser() -> lark.Lark:
    return lark.Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        start=["start", "expr"],
    )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=4096)
def _expression_tree(text: str) -> Tree[Any]:
    """The tree of one interpolated expression; the same text recurs in loops, so cached (the
    builder only reads trees)."""
    return _parser().parse(text, start="expr")


def parse(text: str, file: str = "<string>") -> ast.Program:
    """Parse a whole program; raises NexusError (with every problem found) on bad syntax."""
    try:
        tree = _parser().parse(text, start="start")
    except lark.exceptions.UnexpectedInput as exc:
        raise NexusError([_syntax_problem(exc, text, file)]) from None
    builder = _Builder(file, 0, 0)
    try:
        body = builder.decls(tree.children)
    except RecursionError:
        raise NexusError([Problem(Position(file), TOO_DEEP)]) from None
    program = ast.Program(file, body, tuple(scan_comments(text)))
    if builder.problems:
        raise NexusError(builder.problems)
    return program


def parse_expression(text: str, file: str = "<string>", line: int = 1, column: int = 1) -> ast.Expr:
    """Parse one expression written at ``line``:``column`` of ``file`` (string interpolation)."""
    stripped = text.strip()
    if _IDENTIFIER.fullmatch(stripped) and stripped not in KEYWORDS:  # the common "${name}"
        start = column + text.index(stripped)
        return ast.Var(stripped, ast.Span(line, start, line, start + len(stripped)))
    try:
        tree = _expression_tree(text)
    except lark.exceptions.UnexpectedInput as exc:
        problem = _syntax_problem(exc, text, file)
        at = problem.position
        shifted = Position(file, line, column + at.column - 1 if at.line == 1 else column)
        raise NexusError([Problem(shifted, problem.message)]) from None
    builder = _Builder(file, line - 1, column - 1)
    expr = builder.expr(tree)
    if builder.problems:
        raise NexusError(builder.problems)
    return expr


def scan_comments(text: str) -> list[ast.Comment]:
    """Every ``# comment`` outside strings (strings are one line, so a line scan suffices)."""
    found: list[ast.Comment] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if "#" not in line:
            continue
        in_string = escaped = False
        for i, char in enumerate(line):
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char == "#":
                own = not line[:i].strip()
                found.append(ast.Comment(line[i:].rstrip(), number, i + 1, own))
                break
    return found


def _syntax_problem(exc: lark.exceptions.UnexpectedInput, text: str, file: str) -> Problem:
    line, column = max(exc.line, 1), max(exc.column, 1)
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        offset = exc.pos_in_stream or 0
        char = text[offset] if offset < len(text) else ""
        if char == '"':
            message = "unterminated string (strings end on the line they start)"
        elif char == "$":
            message = "unexpected '$' (interpolation is written inside a string: \"${x}\")"
        else:
            message = f"unexpected character {char!r}"
        return Problem(Position(file, line, column), message)
    if isinstance(exc, lark.exceptions.UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            got = "end of file"
            line, column = _end_position(text)
        else:
            got = repr(str(token))
        expected = _expected_words(exc.expected)
        hint = _hint(token, exc.expected)
        return Problem(Position(file, line, column), f"unexpected {got}{expected}{hint}")
    if isinstance(exc, lark.exceptions.UnexpectedEOF):
        line, column = _end_position(text)
        return Problem(Position(file, line, column), "unexpected end of file")
    return Problem(Position(file, line, column), str(exc))


def _end_position(text: str) -> tuple[int, int]:
    lines = text.rstrip().splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _expected_words(expected: set[str]) -> str:
    if {"NAME", "STRING", "INT", "LSQB"} <= expected:
        return "; expected a value (a name, string, integer, list or map)"
    words = []
    for name in sorted(expected):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
        elif name.isupper() and name.lower() in KEYWORDS:
            words.append(f"'{name.lower()}'")
    if not words:
        return ""
    words = sorted(set(words), key=lambda w: (w.startswith("'"), w[1:2].isalpha(), w))
    if len(words) > 6:
        return f"; expected one of {', '.join(words[:6])}, …"
    return (
        f"; expected {' or '.join(words)}"
        if len(words) <= 2
        else (f"; expected one of {', '.join(words)}")
    )


def _hint(token: Token, expected: set[str]) -> str:
    if str(token) == ":" and "EQUAL" in expected:
        return " (fields are set with '=': mode = \"private\")"
    if str(token) == "=" and "COLON" in expected:
        return " (map entries are written key: value)"
    if token.type == "EQUAL" and "LBRACE" in expected:
        return " (a field is set inside a resource's braces)"
    return ""


def _span(item: Tree[Any] | Token) -> ast.Span:
    if isinstance(item, Token):
        return ast.Span(item.line or 1, item.column or 1, item.end_line or 1, item.end_column or 1)
    meta = item.meta
    return ast.Span(meta.line, meta.column, meta.end_line, meta.end_column)


class _Builder:
    """Turns lark's tree into ``ast`` values, shifting positions for interpolated snippets."""

    def __init__(self, file: str, line_offset: int, column_offset: int) -> None:
        self.file = file
        self.line_offset = line_offset
        self.column_offset = column_offset
        self.problems: list[Problem] = []

    def span(self, item: Tree[Any] | Token) -> ast.Span:
        s = _span(item)
        if not self.line_offset and not self.column_offset:
            return s
        # Interpolations are one line: every position shifts by the same amount.
        return ast.Span(
            s.line + self.line_offset,
            s.column + self.column_offset,
            s.end_line + self.line_offset,
            s.end_column + self.column_offset,
        )

    # -- statements -------------------------------------------------------------------

    def decls(self, children: list[Any]) -> tuple[ast.Stmt, ...]:
        return tuple(self.stmt(child) for child in children if child is not None)

    def block_body(self, tree: Tree[Any]) -> tuple[ast.Stmt, ...]:
        return self.decls(list(tree.children))

    def stmt(self, tree: Tree[Any]) -> ast.Stmt:
        kind = tree.data
        c: list[Any] = list(tree.children)
        span = self.span(tree)
        if kind == "import_stmt":
            word, path, rev_word, rev, alias = c
            return self._import(tree, word, path, rev_word, rev, alias)
        if kind == "let_stmt":
            return ast.Let(str(c[0]), self.expr(c[1]), span, self.span(c[0]))
        if kind == "def_stmt":
            params = tuple(str(t) for t in c[1].children if t is not None) if c[1] else ()
            return ast.Def(str(c[0]), params, self.block_body(c[2]), span, self.span(c[0]))
        if kind == "resource":
            keyword = c[0].children[0]
            return ast.Resource(
                str(keyword), self.expr(c[1]), self.block_body(c[2]), span, self.span(keyword)
            )
        if kind in ("for_decl", "for_field", "for_action"):
            first, second, iterable, body = c
            return ast.For(
                str(first),
                str(second) if second is not None else None,
                self.expr(iterable),
                self.block_body(body),
                span,
                self.span(first),
            )
        if kind in ("if_decl", "if_field", "if_action"):
            cond, then, else_word, orelse = c
            other: tuple[ast.Stmt, ...] | None = None
            else_if = False
            if orelse is not None:
                if orelse.data in ("if_decl", "if_field", "if_action"):
                    other, else_if = (self.stmt(orelse),), True
                else:
                    other = self.block_body(orelse)
            else_at = self.span(else_word) if else_word is not None else None
            return ast.If(self.expr(cond), self.block_body(then), other, span, else_if, else_at)
        if kind == "call_stmt":
            func = self._dotted(c[0])
            args = tuple(self.expr(a) for a in c[1].children if a is not None) if c[1] else ()
            return ast.CallStmt(ast.Call(func, args, span), span)
        if kind == "assign":
            name = c[0].children[0]
            return ast.Assign(str(name), self.expr(c[1]), span, self.span(name))
        if kind == "block":
            name = c[0].children[0]
            label = self.string(c[1]) if c[1] is not None else None
            return ast.Block(str(name), label, self.block_body(c[2]), span, self.span(name))
        if kind == "on_stmt":
            event = c[0]
            clauses = []
            bound: str | None = None
            for item in c[1:-1]:
                if item is None:
                    continue
                if isinstance(item, Token):
                    bound = str(item)
                    continue
                word = item.children[0].children[0]
                clauses.append((str(word), self.expr(item.children[1]), self.span(word)))
            return ast.On(
                str(event), tuple(clauses), bound, self.block_body(c[-1]), span, self.span(event)
            )
        raise AssertionError(f"unknown statement {kind}")

    def _import(
        self,
        tree: Tree[Any],
        word: Token | None,
        path: Token,
        rev_word: Token | None,
        rev: Token | None,
        alias: Token,
    ) -> ast.Import:
        span = self.span(tree)
        git = word is not None
        if word is not None and str(word) != "git":
            self.problems.append(
                Problem(
                    self._pos(word),
                    f'unknown import source {str(word)!r}: write import "PATH" as NAME or '
                    'import git "URL" rev "COMMIT" as NAME',
                )
            )
        if git and rev_word is None:
            self.problems.append(
                Problem(self._pos(path), 'a git import needs rev "COMMIT" (a full commit hash)')
            )
        if rev_word is not None and (str(rev_word) != "rev" or not git):
            self.problems.append(
                Problem(self._pos(rev_word), f"unexpected {str(rev_word)!r} in import")
            )
        return ast.Import(
            self._plain(path),
            str(alias),
            span,
            git=git,
            rev=self._plain(rev) if rev is not None else "",
            alias_span=self.span(alias),
        )

    def _plain(self, token: Token) -> str:
        value = self.string(token)
        text = value.plain
        if text is None:
            self.problems.append(
                Problem(self._pos(token), "no interpolation here: import paths are fixed text")
            )
            return ""
        return text

    def _pos(self, item: Tree[Any] | Token) -> Position:
        s = self.span(item)
        return Position(self.file, s.line, s.column)

    def _dotted(self, tree: Tree[Any]) -> ast.Expr:
        first = tree.children[0]
        expr: ast.Expr = ast.Var(str(first), self.span(first))
        for part in tree.children[1:]:
            name = cast(Token, part.children[0])
            s = expr.span
            end = self.span(name)
            expr = ast.Attr(
                expr, str(name), ast.Span(s.line, s.column, end.end_line, end.end_column), end
            )
        return expr

    # -- expressions ------------------------------------------------------------------

    def expr(self, item: Tree[Any] | Token) -> ast.Expr:
        if isinstance(item, Token):
            raise AssertionError(f"bare token {item!r}")
        kind = item.data
        c: list[Any] = list(item.children)
        span = self.span(item)
        if kind == "int":
            return ast.Int(int(c[0]), span)
        if kind == "string":
            return self.string(c[0])
        if kind == "true":
            return ast.Bool(True, span)
        if kind == "false":
            return ast.Bool(False, span)
        if kind == "var":
            return ast.Var(str(c[0]), span)
        if kind == "list":
            return ast.ListLit(tuple(self.expr(x) for x in c if x is not None), span)
        if kind == "map":
            pairs = []
            for pair in c:
                if pair is None:
                    continue
                key_item, value = pair.children
                if isinstance(key_item, Token):  # a quoted key
                    key = self.string(key_item)
                    text = key.plain
                    if text is None:
                        self.problems.append(
                            Problem(self._pos(key_item), "map keys are fixed text: no ${...}")
                        )
                    pairs.append(ast.Pair(text or "", key.span, self.expr(value), quoted=True))
                else:
                    word = key_item.children[0]
                    pairs.append(ast.Pair(str(word), self.span(word), self.expr(value)))
            return ast.MapLit(tuple(pairs), span)
        if kind in ("or_", "and_"):
            left, right = c
            op = "or" if kind == "or_" else "and"
            return ast.Binary(op, self.expr(left), self.expr(right), span, span)
        if kind == "not_":
            return ast.Unary("not", self.expr(c[0]), span)
        if kind in ("compare", "binary"):
            left, op, right = c
            return ast.Binary(str(op), self.expr(left), self.expr(right), span, self.span(op))
        if kind == "contains":
            left, right = c
            return ast.Binary("in", self.expr(left), self.expr(right), span, span)
        if kind == "negate":
            return ast.Unary("-", self.expr(c[1]), span)
        if kind == "attr":
            obj, name = c
            word = name.children[0]
            return ast.Attr(self.expr(obj), str(word), span, self.span(word))
        if kind == "index":
            return ast.Index(self.expr(c[0]), self.expr(c[1]), span)
        if kind == "call":
            func, args = c
            params = tuple(self.expr(a) for a in args.children if a is not None) if args else ()
            return ast.Call(self.expr(func), params, span)
        raise AssertionError(f"unknown expression {kind}")

    def string(self, token: Token) -> ast.Str:
        span = self.span(token)
        raw = str(token)[1:-1]
        parts: list[str | ast.Expr] = []
        text: list[str] = []
        i = 0
        while i < len(raw):
            char = raw[i]
            if char == "\\":
                nxt = raw[i + 1] if i + 1 < len(raw) else ""
                if nxt not in _ESCAPES:
                    self.problems.append(
                        Problem(
                            Position(self.file, span.line, span.column + 1 + i),
                            f"unknown escape '\\{nxt}' (known: \\n \\t \\\" \\\\ \\$)",
                        )
                    )
                text.append(_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            if char == "$" and raw.startswith("${", i):
                end = raw.index("}", i)
                inner = raw[i + 2 : end]
                if text:
                    parts.append("".join(text))
                    text = []
                column = span.column + 1 + i + 2
                if not inner.strip():
                    self.problems.append(
                        Problem(Position(self.file, span.line, column - 2), "empty ${} in string")
                    )
                else:
                    try:
                        parts.append(parse_expression(inner, self.file, span.line, column))
                    except NexusError as exc:
                        self.problems.extend(exc.problems)
                i = end + 1
                continue
            text.append(char)
            i += 1
        if text or not parts:
            parts.append("".join(text))
        return ast.Str(tuple(parts), span)
