"""Nexus → manifest documents, with a source map; then the project's own validator, in process.

Every emitted document is a :class:`hypermesh.model.loader.Document` whose ``positions`` point
into the ``.nx`` file (the source map): the validator that checks hand-written YAML checks the
compiled program too, and its problems land on the Nexus line and column that produced the
value. Declarations are evaluated at compile time; handlers (``on ...``) are checked and kept
for ``nexus run``.

This module walks the declarations (imports, names, templates, loops and branches); the
evaluator (``evaluate``) computes values, the emitter (``emit``) builds resources from their
fields, and ``handlers_check`` checks and keeps handlers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from hypermesh.model.loader import Document, LoadResult
from hypermesh.model.validate import build
from hypermesh.nexus import ast
from hypermesh.nexus.emit import Emitter
from hypermesh.nexus.errors import NexusError, Position, Problem, sort_problems
from hypermesh.nexus.evaluate import Evaluator, Fail, Scope, dotted_name
from hypermesh.nexus.handlers_check import Handler, HandlerChecker
from hypermesh.nexus.parser import TOO_DEEP, parse
from hypermesh.nexus.values import OPERATIONS, Module, Template, type_name

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
        compiler.handlers.check_references(compiler.emitter.declared())
        documents = compiler.emitter.documents()
        problems = compiler.problems
        if not problems and validate:
            _, found = build(LoadResult(documents=list(documents), files=[source.file]))
            problems = list(found)
    except RecursionError:
        documents, problems = [], [Problem(Position(source.file), TOO_DEEP)]
    return Compiled(
        source.file,
        tuple(documents),
        tuple(compiler.handlers.handlers),
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
    """Walks a program's declarations, in order, with the evaluator, the emitter and the
    handler checker it shares its problems with."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.problems: list[Problem] = []
        self.evaluator = Evaluator()
        self.emitter = Emitter(self.evaluator, self.problems)
        self.handlers = HandlerChecker(self.evaluator, self.report)
        self.modules: dict[str, Module] = {}
        self.stack: list[str] = []
        self.depth = 0

    def fail(self, file: str, span: ast.Span, message: str) -> Fail:
        return self.evaluator.fail(file, span, message)

    def report(self, file: str, span: ast.Span, message: str) -> None:
        self.problems.append(Problem(Position(file, span.line, span.column), message))

    def decls(
        self, stmts: Iterable[ast.Stmt], scope: Scope, source: Source, *, top: bool = False
    ) -> None:
        for stmt in stmts:
            try:
                self.decl(stmt, scope, source, top)
            except Fail as failed:
                if failed.problem is not None:
                    self.problems.append(failed.problem)

    def decl(self, stmt: ast.Stmt, scope: Scope, source: Source, top: bool) -> None:
        file = source.file
        evaluator = self.evaluator
        if isinstance(stmt, ast.Import):
            if not top:
                raise self.fail(file, stmt.span, "import is only allowed at the top of a file")
            evaluator.define(scope, stmt.alias, self.import_(stmt, source), stmt.span, file)
        elif isinstance(stmt, ast.Let):
            value, _ = evaluator.eval(stmt.value, scope, file)
            evaluator.define(scope, stmt.name, value, stmt.name_span, file)
        elif isinstance(stmt, ast.Def):
            template = Template(stmt.name, stmt.params, stmt.body, (scope, source), file)
            if len(set(stmt.params)) != len(stmt.params):
                raise self.fail(file, stmt.span, f"template {stmt.name!r} repeats a parameter")
            evaluator.define(scope, stmt.name, template, stmt.name_span, file)
        elif isinstance(stmt, ast.Resource):
            self.emitter.resource(stmt, scope, file)
        elif isinstance(stmt, ast.For):
            for child in evaluator.iterate(stmt, scope, file):
                self.decls(stmt.body, child, source)
        elif isinstance(stmt, ast.If):
            branch = evaluator.branch(stmt, scope, file)
            if branch is not None:
                self.decls(branch, Scope(scope), source)
        elif isinstance(stmt, ast.CallStmt):
            self.call_template(stmt.call, scope, file)
        elif isinstance(stmt, ast.On):
            self.handlers.handler(stmt, scope, file)
        else:  # pragma: no cover - the grammar keeps fields out of declarations
            raise self.fail(file, stmt.span, "a field is set inside a resource's braces")

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
        name = dotted_name(call.func)
        if name in OPERATIONS:
            raise self.fail(
                file, call.span, f"{name}() is an SDK operation: call it inside an 'on' handler"
            )
        func, _ = self.evaluator.eval(call.func, scope, file)
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
            value, _ = self.evaluator.eval(arg, scope, file)
            child.vars[param] = (value, arg.span)
        self.depth += 1
        try:
            self.decls(func.body, child, source)
        finally:
            self.depth -= 1
