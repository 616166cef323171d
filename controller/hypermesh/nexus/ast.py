"""The syntax tree of a Nexus program: immutable values, each carrying where it was written.

The parser builds these from lark's tree; the compiler, the checker, the formatter and the
language server read them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "Assign",
    "Attr",
    "Binary",
    "Block",
    "Bool",
    "Call",
    "CallStmt",
    "Comment",
    "Def",
    "Expr",
    "For",
    "If",
    "Import",
    "Index",
    "Int",
    "Let",
    "ListLit",
    "MapLit",
    "On",
    "Pair",
    "Program",
    "Resource",
    "Span",
    "Stmt",
    "Str",
    "Unary",
    "Var",
]


@dataclass(frozen=True, slots=True)
class Span:
    """1-based line and column where a construct starts, and where it ends (exclusive)."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def at(cls, line: int, column: int, length: int = 1) -> Span:
        return cls(line, column, line, column + length)


# -- expressions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Int:
    value: int
    span: Span


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Str:
    """A string literal; ``parts`` are text and the expressions of ``${...}``, in order."""

    parts: tuple[str | Expr, ...]
    span: Span

    @property
    def plain(self) -> str | None:
        """The text when the string has no interpolation, else None."""
        if all(isinstance(p, str) for p in self.parts):
            return "".join(p for p in self.parts if isinstance(p, str))
        return None


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Pair:
    key: str
    key_span: Span
    value: Expr
    quoted: bool = False
    """The key was written as a string (``{"x-y": 1}``), not a bare name."""


@dataclass(frozen=True, slots=True)
class MapLit:
    pairs: tuple[Pair, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / % == != < <= > >= in and or
    left: Expr
    right: Expr
    span: Span
    op_span: Span


@dataclass(frozen=True, slots=True)
class Attr:
    obj: Expr
    name: str
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Index:
    obj: Expr
    index: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    func: Expr
    args: tuple[Expr, ...]
    span: Span


Expr: TypeAlias = Int | Bool | Str | Var | ListLit | MapLit | Unary | Binary | Attr | Index | Call


# -- statements ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Import:
    """``import "path" as name`` or ``import git "URL" rev "SHA" as name``."""

    path: str
    alias: str
    span: Span
    git: bool = False
    rev: str = ""
    alias_span: Span | None = None


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Def:
    """A template: ``def name(params) { declarations }``, used as a statement ``name(args)``."""

    name: str
    params: tuple[str, ...]
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class CallStmt:
    call: Call
    span: Span


@dataclass(frozen=True, slots=True)
class Resource:
    """``network|node|peer|tld|record|policy NAME { fields }``."""

    keyword: str
    name: Expr
    body: tuple[Stmt, ...]
    span: Span
    keyword_span: Span


@dataclass(frozen=True, slots=True)
class Assign:
    field: str
    value: Expr
    span: Span
    field_span: Span


@dataclass(frozen=True, slots=True)
class Block:
    """``field { ... }`` (an object) or ``field "label" { ... }`` (an item of a list field)."""

    field: str
    label: Str | None
    body: tuple[Stmt, ...]
    span: Span
    field_span: Span


@dataclass(frozen=True, slots=True)
class For:
    var: str
    second: str | None
    """With ``for i, x in xs``: ``var`` is the index (or map key), ``second`` the item."""
    iterable: Expr
    body: tuple[Stmt, ...]
    span: Span
    var_span: Span


@dataclass(frozen=True, slots=True)
class If:
    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] | None
    span: Span
    else_if: bool = False
    """``orelse`` is a single ``If`` written as ``else if``."""
    else_span: Span | None = None
    """Where ``else`` was written."""


@dataclass(frozen=True, slots=True)
class On:
    """A handler: ``on EVENT clause value ... [as NAME] { actions }``."""

    event: str
    clauses: tuple[tuple[str, Expr, Span], ...]
    alias: str | None
    body: tuple[Stmt, ...]
    span: Span
    event_span: Span


Stmt: TypeAlias = Import | Let | Def | CallStmt | Resource | Assign | Block | For | If | On


@dataclass(frozen=True, slots=True)
class Comment:
    text: str
    """The comment with its ``#``, without trailing spaces."""
    line: int
    column: int
    own_line: bool
    """Nothing but blanks precede it on its line."""


@dataclass(frozen=True, slots=True)
class Program:
    file: str
    body: tuple[Stmt, ...]
    comments: tuple[Comment, ...] = field(default=())
