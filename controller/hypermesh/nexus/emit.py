"""Nexus resource declarations → manifest documents with a source map.

Each ``node "a" { ... }`` (and each ``record`` inside a ``tld``) becomes an :class:`Out`: its
metadata and spec as plain data, and where every field was written. Fields are checked against
the kind's JSON Schema as they are set (unknown fields, blocks for scalars, fields set twice),
so a mistake is reported on the Nexus line that made it; :meth:`Emitter.documents` then orders
the resources by kind and their keys as the schema does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hypermesh import API_VERSION
from hypermesh.model.loader import Document, FieldPath
from hypermesh.model.schemas import KINDS, load_schema
from hypermesh.nexus import ast
from hypermesh.nexus.errors import Problem, did_you_mean
from hypermesh.nexus.evaluate import Evaluator, Fail, Origin, Scope
from hypermesh.nexus.handlers_check import Declared
from hypermesh.nexus.schema import (
    KEYWORD_KINDS,
    METADATA_FIELDS,
    field_names,
    list_field,
    object_schema,
)
from hypermesh.nexus.values import type_name

__all__ = ["MAX_RESOURCES", "Emitter", "Out"]

MAX_RESOURCES = 200_000


@dataclass(slots=True)
class Out:
    """One resource being declared: its data so far, and where each field was written."""

    kind: str
    name: str
    file: str
    span: ast.Span
    name_span: ast.Span
    metadata: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    positions: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    spans: dict[FieldPath, ast.Span] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Place:
    """Where fields are being set: in ``obj`` at ``path`` of the resource, whose schema is at
    ``schema_path`` of the kind's spec; records declared inside a tld go to ``nested``."""

    out: Out
    path: FieldPath
    obj: dict[str, Any]
    schema_path: tuple[str, ...]
    nested: list[Out]

    @property
    def top(self) -> bool:
        return self.path == ("spec",)

    def inside(self, path: FieldPath, obj: dict[str, Any], schema_path: tuple[str, ...]) -> _Place:
        return _Place(self.out, path, obj, schema_path, self.nested)


class Emitter:
    """Builds the resources a program declares; problems in fields go to ``problems`` and the
    field after them is compiled (a resource's fields are independent)."""

    def __init__(self, evaluator: Evaluator, problems: list[Problem]) -> None:
        self.evaluator = evaluator
        self.problems = problems
        self.out: list[Out] = []
        self._keys: dict[tuple[str, str, str], Out] = {}

    def declared(self) -> Declared:
        """The names of the Nodes, Peers and TLDs declared so far."""

        def named(kind: str) -> frozenset[str]:
            return frozenset(o.name for o in self.out if o.kind == kind)

        return Declared(named("Node"), named("Peer"), named("TLD"))

    # -- resources --------------------------------------------------------------------------

    def resource(self, stmt: ast.Resource, scope: Scope, file: str) -> None:
        kind = KEYWORD_KINDS[stmt.keyword]
        name = self._name(stmt.name, scope, file, stmt.keyword)
        out = Out(kind, name, file, stmt.span, stmt.name.span)
        nested: list[Out] = []
        self._fields(stmt.body, Scope(scope), file, _Place(out, ("spec",), out.spec, (), nested))
        self._emit(out)
        namespace = out.metadata.get("namespace")
        for record in nested:
            if namespace is not None and "namespace" not in record.metadata:
                record.metadata["namespace"] = namespace
            self._emit(record)

    def _name(self, expr: ast.Expr, scope: Scope, file: str, keyword: str) -> str:
        if isinstance(expr, ast.Var) and scope.lookup(expr.name) is None:
            raise self.evaluator.fail(
                file,
                expr.span,
                f"undefined variable {expr.name!r} (a {keyword}'s name is a string: "
                f'{keyword} "{expr.name}" {{ ... }})',
            )
        value, _ = self.evaluator.eval(expr, scope, file)
        if not isinstance(value, str):
            raise self.evaluator.fail(
                file, expr.span, f"a name is a string, got {type_name(value)}"
            )
        return value

    def _emit(self, out: Out) -> None:
        key = (out.kind, str(out.metadata.get("namespace", "")), out.name)
        first = self._keys.get(key)
        if first is not None:
            where = f"{first.file}:{first.name_span.line}:{first.name_span.column}"
            raise self.evaluator.fail(
                out.file,
                out.name_span,
                f"duplicate {_word(out.kind)} {out.name!r} (first declared at {where})",
            )
        if len(self.out) >= MAX_RESOURCES:
            raise self.evaluator.fail(out.file, out.span, f"more than {MAX_RESOURCES} resources")
        self._keys[key] = out
        self.out.append(out)

    # -- fields -----------------------------------------------------------------------------

    def _fields(self, stmts: Iterable[ast.Stmt], scope: Scope, file: str, place: _Place) -> None:
        for stmt in stmts:
            try:
                self._field(stmt, scope, file, place)
            except Fail as failed:
                if failed.problem is not None:
                    self.problems.append(failed.problem)

    def _field(self, stmt: ast.Stmt, scope: Scope, file: str, place: _Place) -> None:
        evaluator = self.evaluator
        if isinstance(stmt, ast.Let):
            value, _ = evaluator.eval(stmt.value, scope, file)
            evaluator.define(scope, stmt.name, value, stmt.name_span, file)
        elif isinstance(stmt, ast.For):
            for child in evaluator.iterate(stmt, scope, file):
                self._fields(stmt.body, child, file, place)
        elif isinstance(stmt, ast.If):
            branch = evaluator.branch(stmt, scope, file)
            if branch is not None:
                self._fields(branch, Scope(scope), file, place)
        elif isinstance(stmt, ast.Assign):
            self._assign(stmt, scope, file, place)
        elif isinstance(stmt, ast.Block):
            self._block(stmt, scope, file, place)
        else:
            raise evaluator.fail(
                file,
                stmt.span,
                "declarations are not allowed inside a resource; set its fields with name = value",
            )

    def _assign(self, stmt: ast.Assign, scope: Scope, file: str, place: _Place) -> None:
        out = place.out
        target, tpath = place.obj, place.path
        if place.top and stmt.field in METADATA_FIELDS:
            target, tpath = out.metadata, ("metadata",)
        else:
            self._known_field(place, stmt.field, stmt.field_span, file)
        self._not_set(out, (*tpath, stmt.field), stmt.field_span, file)
        value, origin = self.evaluator.eval(stmt.value, scope, file)
        target[stmt.field] = value
        where = (*tpath, stmt.field)
        out.spans[where] = stmt.field_span
        out.positions[where] = (stmt.field_span.line, stmt.field_span.column)
        _record(out.positions, where, origin)

    def _block(self, stmt: ast.Block, scope: Scope, file: str, place: _Place) -> None:
        out = place.out
        if place.top and out.kind == "TLD" and stmt.field == "record":
            place.nested.append(self._tld_record(stmt, scope, file, out))
            return
        tpath: FieldPath
        sub_path: tuple[str, ...]
        if place.top and stmt.field in METADATA_FIELDS:
            target, tpath, sub_path = out.metadata, ("metadata",), (stmt.field,)
            if stmt.label is not None:
                raise self.evaluator.fail(file, stmt.field_span, f"{stmt.field} takes no label")
        else:
            target, tpath, sub_path = place.obj, place.path, (*place.schema_path, stmt.field)
            if self._list_item(stmt, scope, file, place):
                return
        where = (*tpath, stmt.field)
        self._not_set(out, where, stmt.field_span, file)
        item: dict[str, Any] = {}
        target[stmt.field] = item
        out.spans[where] = stmt.field_span
        out.positions[where] = (stmt.field_span.line, stmt.field_span.column)
        self._fields(stmt.body, Scope(scope), file, place.inside(where, item, sub_path))

    def _list_item(self, stmt: ast.Block, scope: Scope, file: str, place: _Place) -> bool:
        """A labelled block, or a block for a list field, adds an item to that list (True);
        False for a block that sets a map field."""
        fail = self.evaluator.fail
        parent = object_schema(place.out.kind, place.schema_path)
        props = parent.get("properties", {}) if parent is not None else {}
        listed = list_field(parent, stmt.field)
        direct = props.get(stmt.field)
        is_object = isinstance(direct, dict) and direct.get("type") == "object"
        if stmt.label is not None or (listed is not None and not is_object):
            if listed is None:
                plural = f"{stmt.field}s"
                raise fail(
                    file,
                    stmt.field_span,
                    f'a labelled block ({stmt.field} "..." {{ }}) adds an item to a list '
                    f"field, and {_where(place.out, place.schema_path)} has no list field "
                    f"{plural!r}"
                    + did_you_mean(plural, [k for k in props if list_field(parent, k)]),
                )
            self._append_item(stmt, scope, file, place, listed)
            return True
        self._known_field(place, stmt.field, stmt.field_span, file)
        if direct is not None and not is_object and parent is not None and props:
            raise fail(
                file,
                stmt.field_span,
                f"{stmt.field!r} is a {_schema_type(direct)}: set it with {stmt.field} = value",
            )
        return False

    def _append_item(
        self, stmt: ast.Block, scope: Scope, file: str, place: _Place, listed: str
    ) -> None:
        out, path = place.out, place.path
        items = place.obj.setdefault(listed, [])
        if not isinstance(items, list):
            raise self.evaluator.fail(
                file, stmt.field_span, f"{listed!r} is already set to a value"
            )
        if not items:
            out.positions[(*path, listed)] = (stmt.field_span.line, stmt.field_span.column)
        where = (*path, listed, len(items))
        item: dict[str, Any] = {}
        out.positions[where] = (stmt.span.line, stmt.span.column)
        if stmt.label is not None:
            label, origin = self.evaluator.eval(stmt.label, scope, file)
            item["name"] = label
            out.positions[(*where, "name")] = (origin.span.line, origin.span.column)
            out.spans[(*where, "name")] = origin.span
        items.append(item)
        inner = place.inside(where, item, (*place.schema_path, listed))
        self._fields(stmt.body, Scope(scope), file, inner)

    def _tld_record(self, stmt: ast.Block, scope: Scope, file: str, tld: Out) -> Out:
        if stmt.label is None:
            raise self.evaluator.fail(
                file, stmt.field_span, 'a record inside a tld needs a name: record "www" { ... }'
            )
        label, origin = self.evaluator.eval(stmt.label, scope, file)
        record = Out("Record", f"{label}.{tld.name}", file, stmt.span, origin.span)
        record.spec["tld"] = tld.name
        at = (stmt.field_span.line, stmt.field_span.column)
        record.positions[("spec", "tld")] = at
        record.spans[("spec", "tld")] = stmt.field_span
        self._fields(stmt.body, Scope(scope), file, _Place(record, ("spec",), record.spec, (), []))
        return record

    def _known_field(self, place: _Place, name: str, span: ast.Span, file: str) -> None:
        parent = object_schema(place.out.kind, place.schema_path)
        if parent is None or "properties" not in parent:
            return  # a free-form map (labels, groups): any key
        names = field_names(parent)
        if name in names or list_field(parent, name) is not None:
            return
        options = [*names, *(METADATA_FIELDS if place.top else ())]
        raise self.evaluator.fail(
            file,
            span,
            f"unknown field {name!r} in {_where(place.out, place.schema_path)}"
            + did_you_mean(name, options),
        )

    def _not_set(self, out: Out, where: FieldPath, span: ast.Span, file: str) -> None:
        first = out.spans.get(where)
        if first is not None:
            raise self.evaluator.fail(
                file,
                span,
                f"field {where[-1]!r} is already set at line {first.line}, column {first.column}",
            )

    # -- documents --------------------------------------------------------------------------

    def documents(self) -> list[Document]:
        """Every resource as a manifest document, in the order of ``KINDS`` (then as declared),
        its positions pointing into the Nexus source."""
        order = {kind: i for i, kind in enumerate(KINDS)}
        ranked = sorted(enumerate(self.out), key=lambda pair: (order[pair[1].kind], pair[0]))
        return [_document(index, out) for index, (_, out) in enumerate(ranked)]


def _document(index: int, out: Out) -> Document:
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
    named = (out.name_span.line, out.name_span.column)
    positions = dict(out.positions)
    positions.update({(): start, ("apiVersion",): start, ("kind",): start, ("spec",): start})
    positions[("metadata",)] = named
    positions[("metadata", "name")] = named
    return Document(out.file, index, data, positions)


def _where(out: Out, schema_path: tuple[str, ...]) -> str:
    word = _word(out.kind)
    return f"{word} {'.'.join(schema_path)}" if schema_path else word


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


def _word(kind: str) -> str:
    for word, k in KEYWORD_KINDS.items():
        if k == kind:
            return word
    return kind


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "value")
    return {"array": "list", "object": "map"}.get(str(kind), str(kind))
