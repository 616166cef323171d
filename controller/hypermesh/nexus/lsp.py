"""``nexus lsp``: a language server (pygls) for editors.

- Diagnostics when a document is opened or changed: every problem ``nexus check`` reports,
  including the manifest validator's, at the line and column it names.
- Completion: statement keywords and kinds at the top level; inside a resource or one of its
  blocks, the fields the schema allows there (and ``"value"`` choices after ``field =`` when the
  schema has an enum); variables, templates and built-ins in expressions; the fields of an
  event after ``msg.``; a module's exports after ``lib.``; SDK operations in handlers.
- Hover: a field's description from ``schemas/`` (type, default, allowed values), a kind's
  description, a built-in's, an operation's or an event's.

The analysis functions (:func:`diagnostics`, :func:`completions`, :func:`hover_text`) are
plain functions of the text, so they are tested without a server too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types

from hypermesh.nexus.compiler import compile_source
from hypermesh.nexus.errors import Problem
from hypermesh.nexus.parser import KEYWORDS
from hypermesh.nexus.schema import (
    KEYWORD_KINDS,
    METADATA_FIELDS,
    field_schema,
    kind_description,
    list_field,
    object_schema,
)
from hypermesh.nexus.values import BUILTINS, EVENTS, OPERATIONS

__all__ = ["completions", "diagnostics", "hover_text", "serve", "server"]

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\S')
_KEYWORD_DOCS = {
    "let": "let NAME = EXPR — a name for a value, visible from here to the end of its block",
    "for": "for x in LIST { ... } / for i, x in LIST / for key, value in MAP — repeat a block",
    "if": "if CONDITION { ... } else { ... } — the condition must be a boolean",
    "import": 'import "path" as NAME / import git "URL" rev "COMMIT" as NAME — a module',
    "def": "def NAME(params) { declarations } — a template, called as NAME(args)",
    "on": "on EVENT clause value ... as NAME { actions } — a handler, run by `nexus run`",
}
_DECL_WORDS = ("let", "for", "if", "import", "def", "on", *KEYWORD_KINDS)


@dataclass(slots=True)
class _Frame:
    kind: str  # "resource", "block", "map", "handler", "plain"
    word: str = ""
    alias: str = ""
    event: str = ""


@dataclass(slots=True)
class _Context:
    frames: list[_Frame] = field(default_factory=list)
    line_tokens: list[str] = field(default_factory=list)

    def resource(self) -> tuple[str, list[str]] | None:
        """The kind and the field path (schema names) of the innermost resource body."""
        kind = None
        path: list[str] = []
        for frame in self.frames:
            if frame.kind == "resource":
                kind, path = KEYWORD_KINDS[frame.word], []
            elif frame.kind == "block" and kind is not None:
                parent = object_schema(kind, path)
                listed = list_field(parent, frame.word) if parent is not None else None
                if kind == "TLD" and not path and frame.word == "record":
                    kind, path = "Record", []
                else:
                    path.append(listed or frame.word)
            elif frame.kind == "map":
                return None
        return (kind, path) if kind is not None else None

    def handler(self) -> _Frame | None:
        for frame in reversed(self.frames):
            if frame.kind == "handler":
                return frame
        return None


def _tokens(text: str) -> list[tuple[str, int]]:
    """Tokens with their line numbers (0-based), comments dropped."""
    out = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.startswith("#"):
            continue
        out.append((token, text.count("\n", 0, match.start())))
    return out


def _context(text: str) -> _Context:
    context = _Context()
    tokens = _tokens(text)
    last_line = tokens[-1][1] if tokens else 0
    segment: list[str] = []
    current_line = -1
    for token, line in tokens:
        if line != current_line:
            segment, current_line = [], line
        if token == "{":  # noqa: S105 (a brace, not a password)
            context.frames.append(_frame(segment))
            segment = []
        elif token == "}":  # noqa: S105
            if context.frames:
                context.frames.pop()
            segment = []
        else:
            segment.append(token)
    context.line_tokens = segment if current_line == last_line else []
    if text.endswith("\n"):
        context.line_tokens = []
    return context


def _frame(segment: list[str]) -> _Frame:
    if not segment or segment[-1] in ("=", ":", ",", "[", "(", "+"):
        return _Frame("map")
    first = segment[0]
    if first in KEYWORD_KINDS and len(segment) >= 2:
        return _Frame("resource", first)
    if first == "on" and len(segment) >= 2:
        alias = segment[segment.index("as") + 1] if "as" in segment[:-1] else ""
        return _Frame("handler", alias=alias, event=segment[1])
    if first in ("for", "if", "else", "def", "let"):
        return _Frame("plain")
    if re.match(r"^[A-Za-z_]", first):
        return _Frame("block", first)
    return _Frame("plain")


def _names(text: str) -> dict[str, str]:
    """Names the text defines, by regular expression (works on broken programs too)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"\blet\s+([A-Za-z_]\w*)", text):
        found.setdefault(match.group(1), "variable")
    for match in re.finditer(r"\bfor\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\b", text):
        for name in match.groups():
            if name:
                found.setdefault(name, "loop variable")
    for match in re.finditer(r"\bdef\s+([A-Za-z_]\w*)", text):
        found.setdefault(match.group(1), "template")
    for match in re.finditer(r"\bas\s+([A-Za-z_]\w*)", text):
        found.setdefault(match.group(1), "module or event")
    return found


def _offset(text: str, line: int, character: int) -> int:
    lines = text.split("\n")
    line = min(line, len(lines) - 1)
    return sum(len(x) + 1 for x in lines[:line]) + min(character, len(lines[line]))


# -- diagnostics ---------------------------------------------------------------------------


def diagnostics(text: str, path: str) -> list[types.Diagnostic]:
    """What ``nexus check`` reports for ``text`` (as if saved at ``path``), as LSP diagnostics."""
    compiled = compile_source(text, path)
    lines = text.split("\n")
    return [_diagnostic(problem, path, lines) for problem in compiled.problems]


def _diagnostic(problem: Problem, path: str, lines: list[str]) -> types.Diagnostic:
    here = problem.position.file == path
    line = problem.position.line - 1 if here else 0
    column = problem.position.column - 1 if here else 0
    text = lines[line] if 0 <= line < len(lines) else ""
    match = re.match(r'"(?:[^"\\]|\\.)*"|[A-Za-z_0-9.-]+|\S', text[column:])
    end = column + (len(match.group()) if match else 1)
    message = ": ".join(p for p in (problem.resource, problem.path, problem.message) if p)
    if not here:
        message = f"{problem.position}: {message}"
    return types.Diagnostic(
        range=types.Range(
            start=types.Position(line=max(line, 0), character=max(column, 0)),
            end=types.Position(line=max(line, 0), character=max(end, 0)),
        ),
        message=message,
        severity=types.DiagnosticSeverity.Error,
        source="nexus",
    )


# -- completion ----------------------------------------------------------------------------


def completions(
    text: str, line: int, character: int, path: str = "<string>"
) -> list[types.CompletionItem]:
    """What may be written at ``line``:``character`` (0-based, as LSP counts)."""
    before = text[: _offset(text, line, character)]
    context = _context(before)
    prefix_match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)?(\.)?([A-Za-z_][A-Za-z0-9_]*)?$", before)
    dotted = prefix_match is not None and prefix_match.group(2) is not None
    items: list[types.CompletionItem] = []
    names = _names(text)
    handler = context.handler()
    if dotted and prefix_match is not None:
        owner = prefix_match.group(1) or ""
        return _after_dot(owner, handler, text, path)
    tokens = context.line_tokens
    in_expression = bool(tokens) and any(t in ("=", "in", "(", ",", "[", ":") for t in tokens)
    if tokens and tokens[0] == "on" and len(tokens) <= 2:
        return [_item(e, types.CompletionItemKind.Event, EVENTS[e].doc) for e in EVENTS]
    resource = context.resource()
    if in_expression:
        if resource is not None and len(tokens) >= 2 and tokens[1] == "=":
            schema = field_schema(resource[0], resource[1], tokens[0])
            for value in (schema or {}).get("enum", []) or (schema or {}).get("items", {}).get(
                "enum", []
            ):
                items.append(_item(f'"{value}"', types.CompletionItemKind.EnumMember, ""))
        items += _values(names, handler)
        return items
    if handler is not None:
        items += [
            _item(w, types.CompletionItemKind.Keyword, _KEYWORD_DOCS[w])
            for w in ("let", "for", "if")
        ]
        items += [
            _item(op.name, types.CompletionItemKind.Function, op.doc) for op in OPERATIONS.values()
        ]
        return items
    if resource is not None:
        kind, fields = resource
        parent = object_schema(kind, fields)
        for name, sub in (parent or {}).get("properties", {}).items():
            items.append(
                _item(name, types.CompletionItemKind.Field, str(sub.get("description", "")))
            )
        if not fields:
            for name in METADATA_FIELDS:
                sub = field_schema(kind, [], name) or {}
                items.append(
                    _item(name, types.CompletionItemKind.Field, str(sub.get("description", "")))
                )
            if kind == "TLD":
                items.append(
                    _item("record", types.CompletionItemKind.Class, "a Record under this TLD")
                )
        for word in ("let", "for", "if"):
            items.append(_item(word, types.CompletionItemKind.Keyword, _KEYWORD_DOCS[word]))
        return items
    for word in _DECL_WORDS:
        if word in KEYWORD_KINDS:
            doc = kind_description(KEYWORD_KINDS[word])
            items.append(_item(word, types.CompletionItemKind.Class, doc))
        else:
            items.append(_item(word, types.CompletionItemKind.Keyword, _KEYWORD_DOCS[word]))
    items += [
        _item(name, types.CompletionItemKind.Function, "template")
        for name, what in names.items()
        if what == "template"
    ]
    return items


def _values(names: dict[str, str], handler: _Frame | None) -> list[types.CompletionItem]:
    items = [
        _item(name, types.CompletionItemKind.Variable, what)
        for name, what in names.items()
        if what != "template"
    ]
    items += [_item(b.name, types.CompletionItemKind.Function, b.doc) for b in BUILTINS.values()]
    items += [_item(w, types.CompletionItemKind.Keyword, "") for w in ("true", "false", "not")]
    if handler is not None:
        items += [
            _item(op.name, types.CompletionItemKind.Function, op.doc)
            for op in OPERATIONS.values()
            if op.returns
        ]
    return items


def _after_dot(
    owner: str, handler: _Frame | None, text: str, path: str
) -> list[types.CompletionItem]:
    if handler is not None and owner == handler.alias and handler.event in EVENTS:
        return [
            _item(f, types.CompletionItemKind.Field, f"field of the {handler.event}")
            for f in EVENTS[handler.event].fields
        ]
    ops = [op for op in OPERATIONS.values() if op.name.startswith(owner + ".")]
    if ops:
        return [
            _item(op.name.split(".", 1)[1], types.CompletionItemKind.Function, op.doc) for op in ops
        ]
    exports = _module_exports(owner, text, path)
    return [_item(name, types.CompletionItemKind.Variable, what) for name, what in exports]


def _module_exports(alias: str, text: str, path: str) -> list[tuple[str, str]]:
    """The names module ``alias`` exports: its top-level ``let`` and ``def`` not starting ``_``."""
    from hypermesh.nexus import ast
    from hypermesh.nexus.compiler import Source
    from hypermesh.nexus.errors import NexusError
    from hypermesh.nexus.modules import ModuleResolver
    from hypermesh.nexus.parser import parse

    # The program being edited may not parse: find the import by its shape.
    found = re.search(
        r'\bimport\s+(git\s+)?"([^"]*)"(?:\s+rev\s+"([^"]*)")?\s+as\s+' + re.escape(alias) + r"\b",
        text,
    )
    if found is None:
        return []
    git, module_path, rev = found.groups()
    stmt = ast.Import(module_path, alias, ast.Span.at(1, 1), git=bool(git), rev=rev or "")
    try:
        source = ModuleResolver.beside(path).resolve(stmt, Source(path, path, text))
        module = parse(source.text, source.file)
    except (NexusError, OSError):
        return []
    out = []
    for item in module.body:
        if isinstance(item, ast.Let) and not item.name.startswith("_"):
            out.append((item.name, "variable"))
        elif isinstance(item, ast.Def) and not item.name.startswith("_"):
            out.append((item.name, f"template ({', '.join(item.params)})"))
    return out


def _item(label: str, kind: types.CompletionItemKind, doc: str) -> types.CompletionItem:
    return types.CompletionItem(label=label, kind=kind, documentation=doc or None)


# -- hover ---------------------------------------------------------------------------------


def hover_text(text: str, line: int, character: int) -> str | None:
    """Markdown describing the word at ``line``:``character`` (0-based), or None."""
    lines = text.split("\n")
    if line >= len(lines):
        return None
    row = lines[line]
    start = character
    while start > 0 and (row[start - 1].isalnum() or row[start - 1] == "_"):
        start -= 1
    end = character
    while end < len(row) and (row[end].isalnum() or row[end] == "_"):
        end += 1
    word = row[start:end]
    if not word:
        return None
    after = row[end:].lstrip()
    before = text[: _offset(text, line, start)]
    context = _context(before)
    resource = context.resource()
    if word in KEYWORD_KINDS and resource is None and not row[:start].strip():
        kind = KEYWORD_KINDS[word]
        return f"**{word}** → `kind: {kind}`\n\n{kind_description(kind)}"
    if resource is not None and (
        after.startswith("=") or after.startswith("{") or after.startswith('"')
    ):
        kind, path = resource
        parent = object_schema(kind, path)
        listed = list_field(parent, word) if parent is not None else None
        schema = field_schema(kind, path, listed or word)
        if schema is not None:
            return _field_doc(kind, [*path, listed or word], schema)
    if word in BUILTINS:
        return f"**{word}** (built-in)\n\n{BUILTINS[word].doc}"
    dotted = re.search(r"([A-Za-z_]\w*)\.$", row[:start])
    name = f"{dotted.group(1)}.{word}" if dotted else word
    if name in OPERATIONS:
        return f"**{name}** (SDK operation, in handlers)\n\n{OPERATIONS[name].doc}"
    if word in EVENTS and row[:start].rstrip().endswith("on"):
        return f"**on {word}**\n\n{EVENTS[word].doc}"
    if word in _KEYWORD_DOCS:
        return _KEYWORD_DOCS[word]
    if word in KEYWORDS:
        return f"**{word}** (keyword)"
    return None


def _field_doc(kind: str, path: list[str], schema: dict[str, Any]) -> str:
    parts = [
        f"**{kind}** `spec.{'.'.join(path)}`"
        if path[0] not in METADATA_FIELDS
        else (f"**{kind}** `metadata.{'.'.join(path)}`")
    ]
    kind_word = schema.get("type", "")
    parts.append(f"*{kind_word}*" if kind_word else "")
    parts.append(str(schema.get("description", "")))
    if "enum" in schema:
        parts.append("One of: " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "default" in schema:
        parts.append(f"Default: `{schema['default']}`")
    return "\n\n".join(p for p in parts if p)


# -- the server ----------------------------------------------------------------------------


def server() -> Any:
    """A new pygls server with Nexus's features (``Any``: pygls is an optional dependency)."""
    from pygls.lsp.server import LanguageServer
    from pygls.uris import to_fs_path

    ls = LanguageServer("nexus", "0.1.0")

    def publish(uri: str) -> None:
        document = ls.workspace.get_text_document(uri)
        path = to_fs_path(uri) or uri
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri, diagnostics=diagnostics(document.source, path), version=document.version
            )
        )

    @ls.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @ls.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @ls.feature(
        types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", " "])
    )
    def completion(params: types.CompletionParams) -> types.CompletionList:
        document = ls.workspace.get_text_document(params.text_document.uri)
        position = params.position
        path = to_fs_path(params.text_document.uri) or params.text_document.uri
        found = completions(document.source, position.line, position.character, path)
        return types.CompletionList(is_incomplete=False, items=found)

    @ls.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams) -> types.Hover | None:
        document = ls.workspace.get_text_document(params.text_document.uri)
        text = hover_text(document.source, params.position.line, params.position.character)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    return ls


def serve() -> None:
    """Run the server on standard input and output (what ``nexus lsp`` does)."""
    server().start_io()
