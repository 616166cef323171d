"""Nexus → manifest documents, with a source map; then the project's own validator, in process.

Every emitted document is a :class:`hypermesh.model.loader.Document` whose ``positions`` point
into the ``.nx`` file (the source map): the validator that checks hand-written YAML checks the
compiled program too, and its problems land on the Nexus line and column that produced the
value. Declarations are evaluated at compile time; handlers (``on ...``) are checked and kept
for ``nexus run``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from hypermesh import API_VERSION
from hypermesh.model.loader import Document, FieldPath, LoadResult
from hypermesh.model.schemas import KINDS, load_schema
from hypermesh.model.validate import build
from hypermesh.nexus import ast
from hypermesh.nexus.errors import NexusError, Position, Problem, did_you_mean, sort_problems
from hypermesh.nexus.parser import TOO_DEEP, parse
from hypermesh.nexus.schema import (
    KEYWORD_KINDS,
    METADATA_FIELDS,
    field_names,
    list_field,
    object_schema,
)
from hypermesh.nexus.values import (
    BUILTINS,
    DURATION,
    EVENTS,
    MAX_ITEMS,
    METHODS,
    OPERATIONS,
    Builtin,
    Module,
    NexusTypeError,
    Template,
    to_text,
    type_name,
)

__all__ = [
    "Compiled",
    "Handler",
    "Resolver",
    "Source",
    "compile_file",
    "compile_program",
    "compile_source",
    "to_yaml",
]

MAX_ITERATIONS = 2_000_000
"""Loop iterations in one compilation, all loops together."""
MAX_RESOURCES = 200_000
MAX_DEPTH = 64
"""Templates calling templates, at most this deep."""


@dataclass(frozen=True, slots=True)
class Source:
    """A program or module's text, where it came from, and a key that names it uniquely."""

    key: str
    file: str
    text: str


class Resolver(Protocol):
    """Finds the module an ``import`` names (local folder or git, pinned by nexus.lock)."""

    def resolve(self, stmt: ast.Import, importer: Source) -> Source: ...


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
class Compiled:
    """What compiling produced: documents (with their source map), handlers, every problem."""

    file: str
    documents: tuple[Document, ...]
    handlers: tuple[Handler, ...]
    problems: tuple[Problem, ...]
    program: ast.Program | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def manifests(self) -> list[dict[str, Any]]:
        return [d.data for d in self.documents]

    def raise_for_problems(self) -> None:
        if self.problems:
            raise NexusError(list(self.problems))


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value (and each item of it, for list and map literals) was written."""

    span: ast.Span
    items: Mapping[str | int, Origin] | None = None


class _Fail(Exception):
    """Abandons the statement being compiled; ``problem`` None when it was already reported."""

    def __init__(self, problem: Problem | None) -> None:
        super().__init__(str(problem))
        self.problem = problem


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


@dataclass(slots=True)
class _Out:
    kind: str
    name: str
    file: str
    span: ast.Span
    name_span: ast.Span
    metadata: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    positions: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    spans: dict[FieldPath, ast.Span] = field(default_factory=dict)


def compile_source(
    text: str,
    file: str = "<string>",
    *,
    resolver: Resolver | None = None,
    validate: bool = True,
) -> Compiled:
    """Parse and compile one program held in memory (tests, the language server)."""
    try:
        program = parse(text, file)
    except NexusError as exc:
        return Compiled(file, (), (), tuple(exc.problems))
    return compile_program(program, Source(_key(file), file, text), resolver, validate=validate)


def compile_file(path: str, *, resolver: Resolver | None = None, validate: bool = True) -> Compiled:
    """Read, parse and compile the program in ``path`` (imports resolved beside it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return Compiled(path, (), (), (Problem(Position(path), f"cannot read: {exc.strerror}"),))
    except UnicodeDecodeError:
        return Compiled(path, (), (), (Problem(Position(path), "not UTF-8 text"),))
    return compile_source(text, path, resolver=resolver, validate=validate)


def compile_program(
    program: ast.Program,
    source: Source,
    resolver: Resolver | None = None,
    *,
    validate: bool = True,
) -> Compiled:
    if resolver is None:
        from hypermesh.nexus.modules import ModuleResolver

        resolver = ModuleResolver.beside(source.file)
    compiler = _Compiler(resolver)
    compiler.stack.append(source.key)
    try:
        compiler.decls(program.body, Scope(), source, top=True)
        compiler.check_handlers()
        documents = compiler.documents()
        problems = compiler.problems
        if not problems and validate:
            _, found = build(LoadResult(documents=list(documents), files=[source.file]))
            problems = list(found)
    except RecursionError:
        documents, problems = [], [Problem(Position(source.file), TOO_DEEP)]
    return Compiled(
        source.file,
        tuple(documents),
        tuple(compiler.handlers),
        tuple(_unique(sort_problems(problems))),
        program,
    )


def to_yaml(documents: Iterable[Document], header: str = "") -> str:
    """The documents as YAML, one ``---`` apart, keys in the order they were built."""
    data = [d.data for d in documents]
    if not data:
        return header
    text = yaml.dump_all(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return header + text


_Dumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _key(file: str) -> str:
    try:
        return str(Path(file).resolve())
    except OSError:
        return file


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for p in problems:
        key = (p.position, p.message, p.resource, p.path)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


class _Compiler:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.out: list[_Out] = []
        self.declared: dict[tuple[str, str, str], _Out] = {}
        self.problems: list[Problem] = []
        self.handlers: list[Handler] = []
        self.handler_refs: list[tuple[str, str, ast.Span, str]] = []
        self.modules: dict[str, Module] = {}
        self.stack: list[str] = []
        self.iterations = 0
        self.depth = 0

    # -- problems ---------------------------------------------------------------------

    def fail(self, file: str, span: ast.Span, message: str) -> _Fail:
        return _Fail(Problem(Position(file, span.line, span.column), message))

    def report(self, file: str, span: ast.Span, message: str) -> None:
        self.problems.append(Problem(Position(file, span.line, span.column), message))

    # -- declarations -----------------------------------------------------------------

    def decls(
        self, stmts: Iterable[ast.Stmt], scope: Scope, source: Source, *, top: bool = False
    ) -> None:
        for stmt in stmts:
            try:
                self.decl(stmt, scope, source, top)
            except _Fail as failed:
                if failed.problem is not None:
                    self.problems.append(failed.problem)

    def decl(self, stmt: ast.Stmt, scope: Scope, source: Source, top: bool) -> None:
        file = source.file
        if isinstance(stmt, ast.Import):
            if not top:
                raise self.fail(file, stmt.span, "import is only allowed at the top of a file")
            self.define(scope, stmt.alias, self.import_(stmt, source), stmt.span, file)
        elif isinstance(stmt, ast.Let):
            value, _ = self.eval(stmt.value, scope, file)
            self.define(scope, stmt.name, value, stmt.name_span, file)
        elif isinstance(stmt, ast.Def):
            template = Template(stmt.name, stmt.params, stmt.body, (scope, source), file)
            if len(set(stmt.params)) != len(stmt.params):
                raise self.fail(file, stmt.span, f"template {stmt.name!r} repeats a parameter")
            self.define(scope, stmt.name, template, stmt.name_span, file)
        elif isinstance(stmt, ast.Resource):
            self.resource(stmt, scope, source)
        elif isinstance(stmt, ast.For):
            for child in self.iterate(stmt, scope, file):
                self.decls(stmt.body, child, source)
        elif isinstance(stmt, ast.If):
            branch = self.branch(stmt, scope, file)
            if branch is not None:
                self.decls(branch, Scope(scope), source)
        elif isinstance(stmt, ast.CallStmt):
            self.call_template(stmt.call, scope, file)
        elif isinstance(stmt, ast.On):
            self.handler(stmt, scope, file)
        else:  # pragma: no cover - the grammar keeps fields out of declarations
            raise self.fail(file, stmt.span, "a field is set inside a resource's braces")

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
        cond, _ = self.eval(stmt.cond, scope, file)
        if not isinstance(cond, bool):
            raise self.fail(
                file, stmt.cond.span, f"an if condition must be a boolean, got {type_name(cond)}"
            )
        return stmt.then if cond else stmt.orelse

    def import_(self, stmt: ast.Import, importer: Source) -> Module:
        try:
            source = self.resolver.resolve(stmt, importer)
        except NexusError as exc:
            self.problems.extend(exc.problems)
            return Module(stmt.alias, "", {}, broken=True)
        if source.key in self.stack:
            chain = [*self.stack[self.stack.index(source.key) :], source.key]
            names = " -> ".join(Path(k).name or k for k in chain)
            raise self.fail(importer.file, stmt.span, f"import cycle: {names}")
        module = self.modules.get(source.key)
        if module is None:
            try:
                program = parse(source.text, source.file)
            except NexusError as exc:
                self.problems.extend(exc.problems)
                return Module(stmt.alias, source.file, {}, broken=True)
            scope = Scope()
            self.stack.append(source.key)
            try:
                self.decls(program.body, scope, source, top=True)
            finally:
                self.stack.pop()
            exports = {
                name: value
                for name, (value, _) in scope.vars.items()
                if not name.startswith("_") and not isinstance(value, Module)
            }
            module = Module(stmt.alias, source.file, exports)
            self.modules[source.key] = module
        return Module(stmt.alias, module.file, module.exports)

    def call_template(self, call: ast.Call, scope: Scope, file: str) -> None:
        name = _dotted_name(call.func)
        if name in OPERATIONS:
            raise self.fail(
                file, call.span, f"{name}() is an SDK operation: call it inside an 'on' handler"
            )
        func, _ = self.eval(call.func, scope, file)
        if not isinstance(func, Template):
            raise self.fail(
                file,
                call.span,
                f"only a template (def) can be called as a statement; {name} is a "
                f"{type_name(func)}",
            )
        if len(call.args) != len(func.params):
            raise self.fail(
                file,
                call.span,
                f"template {func.name!r} takes {len(func.params)} argument(s) "
                f"({', '.join(func.params)}), got {len(call.args)}",
            )
        if self.depth >= MAX_DEPTH:
            raise self.fail(file, call.span, f"templates nested more than {MAX_DEPTH} deep")
        closure, source = func.scope
        child = Scope(closure)
        for param, arg in zip(func.params, call.args, strict=True):
            value, _ = self.eval(arg, scope, file)
            child.vars[param] = (value, arg.span)
        self.depth += 1
        try:
            self.decls(func.body, child, source)
        finally:
            self.depth -= 1

    # -- resources --------------------------------------------------------------------

    def resource(self, stmt: ast.Resource, scope: Scope, source: Source) -> None:
        file = source.file
        kind = KEYWORD_KINDS[stmt.keyword]
        name = self.name(stmt.name, scope, file, stmt.keyword)
        out = _Out(kind, name, file, stmt.span, stmt.name.span)
        nested: list[_Out] = []
        self.fields(stmt.body, Scope(scope), source, out, ("spec",), out.spec, (), nested)
        self.emit(out)
        namespace = out.metadata.get("namespace")
        for record in nested:
            if namespace is not None and "namespace" not in record.metadata:
                record.metadata["namespace"] = namespace
            self.emit(record)

    def name(self, expr: ast.Expr, scope: Scope, file: str, keyword: str) -> str:
        if isinstance(expr, ast.Var) and scope.lookup(expr.name) is None:
            raise self.fail(
                file,
                expr.span,
                f"undefined variable {expr.name!r} (a {keyword}'s name is a string: "
                f'{keyword} "{expr.name}" {{ ... }})',
            )
        value, _ = self.eval(expr, scope, file)
        if not isinstance(value, str):
            raise self.fail(file, expr.span, f"a name is a string, got {type_name(value)}")
        return value

    def emit(self, out: _Out) -> None:
        key = (out.kind, str(out.metadata.get("namespace", "")), out.name)
        first = self.declared.get(key)
        if first is not None:
            where = f"{first.file}:{first.name_span.line}:{first.name_span.column}"
            raise self.fail(
                out.file,
                out.name_span,
                f"duplicate {_word(out.kind)} {out.name!r} (first declared at {where})",
            )
        if len(self.out) >= MAX_RESOURCES:
            raise self.fail(out.file, out.span, f"more than {MAX_RESOURCES} resources")
        self.declared[key] = out
        self.out.append(out)

    def fields(
        self,
        stmts: Iterable[ast.Stmt],
        scope: Scope,
        source: Source,
        out: _Out,
        path: FieldPath,
        obj: dict[str, Any],
        schema_path: tuple[str, ...],
        nested: list[_Out],
    ) -> None:
        for stmt in stmts:
            try:
                self.field(stmt, scope, source, out, path, obj, schema_path, nested)
            except _Fail as failed:
                if failed.problem is not None:
                    self.problems.append(failed.problem)

    def field(
        self,
        stmt: ast.Stmt,
        scope: Scope,
        source: Source,
        out: _Out,
        path: FieldPath,
        obj: dict[str, Any],
        schema_path: tuple[str, ...],
        nested: list[_Out],
    ) -> None:
        file = source.file
        top = path == ("spec",)
        if isinstance(stmt, ast.Let):
            value, _ = self.eval(stmt.value, scope, file)
            self.define(scope, stmt.name, value, stmt.name_span, file)
        elif isinstance(stmt, ast.For):
            for child in self.iterate(stmt, scope, file):
                self.fields(stmt.body, child, source, out, path, obj, schema_path, nested)
        elif isinstance(stmt, ast.If):
            branch = self.branch(stmt, scope, file)
            if branch is not None:
                self.fields(branch, Scope(scope), source, out, path, obj, schema_path, nested)
        elif isinstance(stmt, ast.Assign):
            target, tpath = obj, path
            if top and stmt.field in METADATA_FIELDS:
                target, tpath = out.metadata, ("metadata",)
            else:
                self.known_field(out, schema_path, stmt.field, stmt.field_span, file, top)
            self.not_set(out, (*tpath, stmt.field), stmt.field_span, file)
            value, origin = self.eval(stmt.value, scope, file)
            target[stmt.field] = value
            where = (*tpath, stmt.field)
            out.spans[where] = stmt.field_span
            out.positions[where] = (stmt.field_span.line, stmt.field_span.column)
            _record(out.positions, where, origin)
        elif isinstance(stmt, ast.Block):
            self.block(stmt, scope, source, out, path, obj, schema_path, nested)
        else:
            raise self.fail(
                file,
                stmt.span,
                "declarations are not allowed inside a resource; set its fields with name = value",
            )

    def block(
        self,
        stmt: ast.Block,
        scope: Scope,
        source: Source,
        out: _Out,
        path: FieldPath,
        obj: dict[str, Any],
        schema_path: tuple[str, ...],
        nested: list[_Out],
    ) -> None:
        file = source.file
        top = path == ("spec",)
        if top and out.kind == "TLD" and stmt.field == "record":
            nested.append(self.tld_record(stmt, scope, source, out))
            return
        parent = object_schema(out.kind, schema_path)
        props = parent.get("properties", {}) if parent is not None else {}
        tpath: FieldPath
        sub_path: tuple[str, ...]
        if top and stmt.field in METADATA_FIELDS:
            target, tpath, sub_path = out.metadata, ("metadata",), (stmt.field,)
            if stmt.label is not None:
                raise self.fail(file, stmt.field_span, f"{stmt.field} takes no label")
        else:
            target, tpath, sub_path = obj, path, (*schema_path, stmt.field)
            listed = list_field(parent, stmt.field)
            direct = props.get(stmt.field)
            is_object = isinstance(direct, dict) and direct.get("type") == "object"
            if stmt.label is not None or (listed is not None and not is_object):
                if listed is None:
                    plural = f"{stmt.field}s"
                    raise self.fail(
                        file,
                        stmt.field_span,
                        f'a labelled block ({stmt.field} "..." {{ }}) adds an item to a list '
                        f"field, and {self.where(out, schema_path)} has no list field "
                        f"{plural!r}"
                        + did_you_mean(plural, [k for k in props if list_field(parent, k)]),
                    )
                self.list_item(stmt, scope, source, out, path, obj, schema_path, listed, nested)
                return
            self.known_field(out, schema_path, stmt.field, stmt.field_span, file, top)
            if direct is not None and not is_object and parent is not None and props:
                raise self.fail(
                    file,
                    stmt.field_span,
                    f"{stmt.field!r} is a {_schema_type(direct)}: set it with {stmt.field} = value",
                )
        where = (*tpath, stmt.field)
        self.not_set(out, where, stmt.field_span, file)
        item: dict[str, Any] = {}
        target[stmt.field] = item
        out.spans[where] = stmt.field_span
        out.positions[where] = (stmt.field_span.line, stmt.field_span.column)
        self.fields(stmt.body, Scope(scope), source, out, where, item, sub_path, nested)

    def list_item(
        self,
        stmt: ast.Block,
        scope: Scope,
        source: Source,
        out: _Out,
        path: FieldPath,
        obj: dict[str, Any],
        schema_path: tuple[str, ...],
        listed: str,
        nested: list[_Out],
    ) -> None:
        file = source.file
        items = obj.setdefault(listed, [])
        if not isinstance(items, list):
            raise self.fail(file, stmt.field_span, f"{listed!r} is already set to a value")
        if not items:
            out.positions[(*path, listed)] = (stmt.field_span.line, stmt.field_span.column)
        where = (*path, listed, len(items))
        item: dict[str, Any] = {}
        out.positions[where] = (stmt.span.line, stmt.span.column)
        if stmt.label is not None:
            label, origin = self.eval(stmt.label, scope, file)
            item["name"] = label
            out.positions[(*where, "name")] = (origin.span.line, origin.span.column)
            out.spans[(*where, "name")] = origin.span
        items.append(item)
        self.fields(
            stmt.body, Scope(scope), source, out, where, item, (*schema_path, listed), nested
        )

    def tld_record(self, stmt: ast.Block, scope: Scope, source: Source, tld: _Out) -> _Out:
        file = source.file
        if stmt.label is None:
            raise self.fail(
                file, stmt.field_span, 'a record inside a tld needs a name: record "www" { ... }'
            )
        label, origin = self.eval(stmt.label, scope, file)
        name = f"{label}.{tld.name}"
        record = _Out("Record", name, file, stmt.span, origin.span)
        record.spec["tld"] = tld.name
        at = (stmt.field_span.line, stmt.field_span.column)
        record.positions[("spec", "tld")] = at
        record.spans[("spec", "tld")] = stmt.field_span
        self.fields(stmt.body, Scope(scope), source, record, ("spec",), record.spec, (), [])
        return record

    def known_field(
        self,
        out: _Out,
        schema_path: tuple[str, ...],
        name: str,
        span: ast.Span,
        file: str,
        top: bool,
    ) -> None:
        parent = object_schema(out.kind, schema_path)
        if parent is None or "properties" not in parent:
            return  # a free-form map (labels, groups): any key
        names = field_names(parent)
        if name in names:
            return
        options = [*names, *(METADATA_FIELDS if top else ())]
        listed = list_field(parent, name)
        if listed is not None:
            return
        raise self.fail(
            file,
            span,
            f"unknown field {name!r} in {self.where(out, schema_path)}"
            + did_you_mean(name, options),
        )

    def where(self, out: _Out, schema_path: tuple[str, ...]) -> str:
        word = _word(out.kind)
        return f"{word} {'.'.join(schema_path)}" if schema_path else word

    def not_set(self, out: _Out, where: FieldPath, span: ast.Span, file: str) -> None:
        first = out.spans.get(where)
        if first is not None:
            raise self.fail(
                file,
                span,
                f"field {where[-1]!r} is already set at line {first.line}, column {first.column}",
            )

    def documents(self) -> list[Document]:
        order = {kind: i for i, kind in enumerate(KINDS)}
        ranked = sorted(enumerate(self.out), key=lambda pair: (order[pair[1].kind], pair[0]))
        documents = []
        for index, (_, out) in enumerate(ranked):
            metadata: dict[str, Any] = {"name": out.name}
            for key in METADATA_FIELDS:
                if key in out.metadata:
                    metadata[key] = out.metadata[key]
            spec_schema = load_schema(out.kind)["properties"]["spec"]
            data = {
                "apiVersion": API_VERSION,
                "kind": out.kind,
                "metadata": metadata,
                "spec": _ordered(out.spec, spec_schema),
            }
            start = (out.span.line, out.span.column)
            positions = dict(out.positions)
            positions[()] = start
            positions[("apiVersion",)] = start
            positions[("kind",)] = start
            positions[("spec",)] = start
            positions[("metadata",)] = (out.name_span.line, out.name_span.column)
            positions[("metadata", "name")] = (out.name_span.line, out.name_span.column)
            documents.append(Document(out.file, index, data, positions))
        return documents

    # -- handlers ---------------------------------------------------------------------

    def handler(self, stmt: ast.On, scope: Scope, file: str) -> None:
        event = EVENTS.get(stmt.event)
        if event is None:
            raise self.fail(
                file,
                stmt.event_span,
                f"unknown event {stmt.event!r}{did_you_mean(stmt.event, EVENTS)}; events: "
                f"{', '.join(EVENTS)}",
            )
        params: dict[str, str] = {}
        for word, expr, span in stmt.clauses:
            if word not in event.clauses:
                raise self.fail(
                    file,
                    span,
                    f"on {event.name} has no clause {word!r}{did_you_mean(word, event.clauses)}; "
                    f"it takes: {', '.join(event.clauses)}",
                )
            if word in params:
                raise self.fail(file, span, f"clause {word!r} is given twice")
            value, _ = self.eval(expr, scope, file)
            if not isinstance(value, str):
                raise self.fail(file, expr.span, f"{word} takes a string, got {type_name(value)}")
            self.clause_value(event.clauses[word][0], word, value, expr.span, file)
            params[word] = value
        missing = [w for w, (_, required) in event.clauses.items() if required and w not in params]
        if missing:
            wants = " and ".join(f"'{w} {event.clauses[w][0].upper()}'" for w in missing)
            raise self.fail(file, stmt.event_span, f"on {event.name} needs {wants}")
        names = set(scope.names())
        if stmt.alias is not None:
            names.add(stmt.alias)
        _ActionChecker(self, file, event.name, stmt.alias).actions(stmt.body, names)
        self.handlers.append(
            Handler(event.name, params, stmt.alias, stmt.body, file, stmt.span, scope.names())
        )

    def clause_value(self, what: str, word: str, value: str, span: ast.Span, file: str) -> None:
        if what == "duration" and not DURATION.fullmatch(value):
            raise self.fail(
                file, span, f"{value!r} is not a duration (such as 30s, 5m, 1h or 1h30m)"
            )
        if what == "path" and not value.startswith("/"):
            raise self.fail(file, span, f"a path starts with '/', got {value!r}")
        if what == "method" and value not in METHODS:
            raise self.fail(
                file,
                span,
                f"{value!r} is not an HTTP method{did_you_mean(value, METHODS)}",
            )
        if what in ("node", "member", "name"):
            self.handler_refs.append((what, value, span, file))

    def check_handlers(self) -> None:
        nodes = {o.name for o in self.out if o.kind == "Node"}
        peers = {o.name for o in self.out if o.kind == "Peer"}
        tlds = {o.name for o in self.out if o.kind == "TLD"}
        for what, value, span, file in self.handler_refs:
            if what == "node" and value not in nodes:
                self.report(
                    file, span, f"node {value!r} is not declared{did_you_mean(value, nodes)}"
                )
            elif what == "member" and value not in nodes | peers:
                self.report(
                    file,
                    span,
                    f"{value!r} is neither a declared node nor peer"
                    f"{did_you_mean(value, nodes | peers)}",
                )
            elif what == "name":
                tld = value.rsplit(".", 1)[-1]
                if "." not in value or tld not in tlds:
                    self.report(
                        file,
                        span,
                        f"{value!r} is not a name under a declared tld"
                        f"{did_you_mean(tld, tlds) if '.' in value else ''}",
                    )

    # -- expressions ------------------------------------------------------------------

    def eval(self, expr: ast.Expr, scope: Scope, file: str) -> tuple[Any, Origin]:
        span = expr.span
        if isinstance(expr, ast.Int | ast.Bool):
            return expr.value, Origin(span)
        if isinstance(expr, ast.Str):
            return self.string(expr, scope, file), Origin(span)
        if isinstance(expr, ast.Var):
            return self.var(expr, scope, file), Origin(span)
        if isinstance(expr, ast.ListLit):
            values: list[Any] = []
            origins: dict[str | int, Origin] = {}
            for i, item in enumerate(expr.items):
                value, origin = self.eval(item, scope, file)
                values.append(value)
                origins[i] = origin
            return values, Origin(span, origins)
        if isinstance(expr, ast.MapLit):
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
            return out, Origin(span, items)
        if isinstance(expr, ast.Unary):
            value, _ = self.eval(expr.operand, scope, file)
            if expr.op == "not":
                if not isinstance(value, bool):
                    raise self.fail(file, span, f"not needs a boolean, got {type_name(value)}")
                return (not value), Origin(span)
            if not _is_int(value):
                raise self.fail(file, span, f"cannot negate a {type_name(value)}")
            return -value, Origin(span)
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
            if not isinstance(left, bool):
                raise self.fail(file, expr.left.span, f"{op} needs booleans, got {type_name(left)}")
            if (op == "and" and not left) or (op == "or" and left):
                return left
            right, _ = self.eval(expr.right, scope, file)
            if not isinstance(right, bool):
                raise self.fail(
                    file, expr.right.span, f"{op} needs booleans, got {type_name(right)}"
                )
            return right
        right, _ = self.eval(expr.right, scope, file)
        lt, rt = type_name(left), type_name(right)
        at = expr.op_span
        if op == "in":
            if isinstance(right, list | dict):
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
            if lt == rt and lt in ("integer", "string", "list"):
                result = left + right
                if not _is_int(result) and len(result) > MAX_ITEMS:
                    raise self.fail(file, at, f"a {lt} longer than {MAX_ITEMS}")
                return result
            if lt == rt == "map":
                return {**left, **right}
            hint = ' (build text with "${...}" or str())' if "string" in (lt, rt) else ""
            raise self.fail(file, at, f"cannot add {lt} and {rt}{hint}")
        if not (_is_int(left) and _is_int(right)):
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
                raise _Fail(None)
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
            if not _is_int(index):
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
        name = _dotted_name(expr.func)
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


class _ActionChecker:
    """Static checks of a handler's body: names defined, operations known and rightly called,
    fields of the event value that exist. Nothing runs: that is ``nexus run``'s job."""

    def __init__(self, compiler: _Compiler, file: str, event: str, alias: str | None) -> None:
        self.compiler = compiler
        self.file = file
        self.event = event
        self.alias = alias

    def fail(self, span: ast.Span, message: str) -> None:
        self.compiler.report(self.file, span, message)

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
        name = _dotted_name(call.func)
        for arg in call.args:
            self.expr(arg, names)
        operation = OPERATIONS.get(name)
        if operation is not None:
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
            if isinstance(expr.obj, ast.Var) and expr.obj.name == self.alias:
                fields = EVENTS[self.event].fields
                if expr.name not in fields:
                    self.fail(
                        expr.name_span,
                        f"a {self.event} has no field {expr.name!r}"
                        f"{did_you_mean(expr.name, fields)}; fields: {', '.join(fields)}",
                    )
            elif _dotted_name(expr) not in OPERATIONS:
                self.expr(expr.obj, names)
        elif isinstance(expr, ast.Call):
            self.call(expr, names, statement=False)


def _dotted_name(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Var):
        return expr.name
    if isinstance(expr, ast.Attr):
        inner = _dotted_name(expr.obj)
        return f"{inner}.{expr.name}" if inner else ""
    return ""


def _record(positions: dict[FieldPath, tuple[int, int]], where: FieldPath, origin: Origin) -> None:
    if origin.items is None:
        return
    for key, sub in origin.items.items():
        path = (*where, key)
        positions[path] = (sub.span.line, sub.span.column)
        _record(positions, path, sub)


def _ordered(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` with object keys in the schema's order (unknown keys last, as written)."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if not isinstance(props, dict):
            extra = schema.get("additionalProperties")
            sub = extra if isinstance(extra, dict) else {}
            return {k: _ordered(v, sub) for k, v in value.items()}
        out = {k: _ordered(value[k], props[k]) for k in props if k in value}
        out.update({k: v for k, v in value.items() if k not in props})
        return out
    if isinstance(value, list):
        items = schema.get("items")
        sub = items if isinstance(items, dict) else {}
        return [_ordered(v, sub) for v in value]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _word(kind: str) -> str:
    for word, k in KEYWORD_KINDS.items():
        if k == kind:
            return word
    return kind


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "value")
    return {"array": "list", "object": "map"}.get(str(kind), str(kind))
