"""Read YAML manifests into plain documents that remember where every value came from.

PyYAML's C parser composes the node graph (with line and column marks); we build the Python
values ourselves so that duplicate keys are an error, timestamps stay strings, alias bombs are
caught, and every mapping key and sequence item gets a position for error messages.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from hypermesh.errors import Position, Problem

STDIN = "-"
MAX_FILE_BYTES = 16 * 1024 * 1024
"""Manifests larger than this are refused before parsing (a 50 MB manifest is a mistake)."""

MAX_VALUES_PER_DOCUMENT = 200_000
"""Guards against alias bombs ("billion laughs"): a document may expand to this many values."""

MAX_DEPTH = 64
"""How deeply mappings and lists may nest in a document (the deepest manifest field is about
ten levels down): deeper input is refused, so nothing that walks a document can recurse
without bound."""

YAML_SUFFIXES = (".yaml", ".yml")

FieldPath = tuple[str | int, ...]
"""Where a value sits in a document or spec: mapping keys and list indexes from the root
(positions, problems and the plan's field diffs all name fields this way)."""

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = SafeConstructor.yaml_constructors
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_AS_STRING = {"tag:yaml.org,2002:timestamp"}
_PLAIN_SCALARS = {
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
}


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its data and the position of every key and item in it."""

    file: str
    index: int
    data: Any
    positions: dict[FieldPath, tuple[int, int]] = field(repr=False)
    prefix: FieldPath = ()
    """Where ``data`` sits in the YAML document (an item of a ``kind: List``)."""

    def position(self, path: Iterable[str | int] = ()) -> Position:
        """The position of ``path``, or of its nearest ancestor that has one."""
        key = (*self.prefix, *path)
        while key:
            found = self.positions.get(key)
            if found is not None:
                return Position(self.file, found[0], found[1])
            key = key[:-1]
        line, column = self.positions.get((), (1, 1))
        return Position(self.file, line, column)


@dataclass(slots=True)
class LoadResult:
    """What loading produced: documents in order, and every problem met on the way."""

    documents: list[Document] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.documents.extend(other.documents)
        self.problems.extend(other.problems)
        self.files.extend(other.files)


FileCache = dict[str, tuple[tuple[int, int, int], "LoadResult"]]
"""Parsed files by path, with the (inode, mtime, size) they were parsed at."""


def load(
    paths: Iterable[str], stdin: BinaryIO | None = None, cache: FileCache | None = None
) -> LoadResult:
    """Load every manifest named by ``paths`` (files, folders, or ``-`` for standard input).

    With a ``cache``, a file whose inode, mtime and size are unchanged is not read again: its
    documents (the same objects as before) and problems come from the cache.
    """
    result = LoadResult()
    for name in paths:
        if name == STDIN:
            stream = stdin if stdin is not None else sys.stdin.buffer
            _load_bytes("<stdin>", stream.read(MAX_FILE_BYTES + 1), result)
            continue
        for file in _expand(name, result):
            try:
                st = file.stat()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                hit = cache.get(str(file)) if cache is not None else None
                if hit is not None and hit[0] == stamp:
                    result.extend(hit[1])
                    continue
                if st.st_size > MAX_FILE_BYTES:
                    result.problems.append(
                        Problem(
                            Position(str(file)),
                            f"file is {st.st_size / 1e6:.1f} MB; manifests are limited to "
                            f"{MAX_FILE_BYTES // (1024 * 1024)} MiB",
                        )
                    )
                    continue
                raw = file.read_bytes()
            except OSError as exc:
                result.problems.append(Problem(Position(str(file)), f"cannot read: {exc.strerror}"))
                continue
            part = LoadResult()
            _load_bytes(str(file), raw, part)
            if cache is not None:
                cache[str(file)] = (stamp, part)
            result.extend(part)
    return result


def load_text(text: str, file: str = "<string>") -> LoadResult:
    """Load manifests from a string (tests and tools)."""
    result = LoadResult()
    _load_bytes(file, text.encode(), result)
    return result


def _expand(name: str, result: LoadResult) -> Iterator[Path]:
    path = Path(name)
    files = yaml_files(path) if path.is_dir() else [path] if path.exists() else []
    if not files:
        result.problems.append(_nothing_at(name))
    yield from files


def yaml_files(folder: Path) -> list[Path]:
    """The manifests in ``folder`` and below, in name order; what hides under a name starting
    with a dot (``.github/workflows``, ``.git``) is not a manifest and is left alone."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in YAML_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _nothing_at(name: str) -> Problem:
    path = Path(name)
    what = "folder holds no *.yaml or *.yml files" if path.is_dir() else "no such file or folder"
    return Problem(Position(name), what)


def missing_inputs(names: Iterable[str]) -> list[Problem]:
    """What is wrong with ``-f`` paths before any is read: one that does not exist, or a folder
    without manifests (standard input, ``-``, is not looked at)."""
    return [_nothing_at(name) for name in names if name != "-" and not _holds_input(Path(name))]


def _holds_input(path: Path) -> bool:
    return bool(yaml_files(path)) if path.is_dir() else path.exists()


def _load_bytes(file: str, raw: bytes, result: LoadResult) -> None:
    result.files.append(file)
    if len(raw) > MAX_FILE_BYTES:
        result.problems.append(
            Problem(Position(file), f"input is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        )
        return
    if b"\x00" in raw[:8192]:
        offset = raw.index(b"\x00")
        line = raw.count(b"\n", 0, offset) + 1
        column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
        result.problems.append(
            Problem(Position(file, line, column), "binary data (NUL byte): not a YAML manifest")
        )
        return
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        result.problems.append(
            Problem(Position(file, line, column), "not UTF-8 text: manifests must be UTF-8")
        )
        return
    index = 0
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None:
                continue
            builder = _Builder(file)
            try:
                data = builder.build(node, ())
            except _Refused as exc:  # this document is refused whole; the next may be good
                result.problems.append(Problem(exc.position, str(exc)))
                continue
            if data is None:
                continue
            result.documents.append(Document(file, index, data, builder.positions))
            result.problems.extend(builder.problems)
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file)
        result.problems.append(Problem(position, f"invalid YAML: {_describe(exc, text)}"))
    except yaml.YAMLError as exc:
        result.problems.append(Problem(Position(file), f"invalid YAML: {exc}"))
    except RecursionError:  # the YAML library's own composer, on input nested past its limits
        result.problems.append(Problem(Position(file), "invalid YAML: nested too deeply"))


def _describe(exc: yaml.MarkedYAMLError, text: str) -> str:
    problem = exc.problem or "syntax error"
    if exc.context:
        problem = f"{problem} ({exc.context})"
    mark = exc.problem_mark
    if mark is not None:
        lines = text.splitlines()
        line = lines[mark.line] if mark.line < len(lines) else ""
        if "\t" in line[: mark.column + 1]:
            problem += "; YAML forbids tabs for indentation, use spaces"
    return problem


class _Refused(Exception):
    """A document that cannot be turned into values at all; the message says why."""

    def __init__(self, position: Position, message: str) -> None:
        super().__init__(message)
        self.position = position


class _Builder:
    """Turns one composed YAML node into Python values and records positions."""

    _constructor = SafeConstructor()

    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[FieldPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self._open: set[int] = set()
        """The collections being built, from the root down to the current one: meeting one of
        them again means an alias refers to a value that contains it."""

    def _at(self, node: yaml.Node) -> Position:
        return Position(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _where(self, path: FieldPath, node: yaml.Node) -> Position:
        """Where the value at ``path`` is written (its key, in a mapping), else ``node``."""
        found = self.positions.get(path)
        return Position(self.file, *found) if found is not None else self._at(node)

    def build(self, node: yaml.Node, path: FieldPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES_PER_DOCUMENT:
            raise _Refused(
                self._at(node),
                f"document expands to more than {MAX_VALUES_PER_DOCUMENT} values (an alias bomb?)",
            )
        if path not in self.positions:
            self.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if len(path) >= MAX_DEPTH:
            raise _Refused(
                self._where(path, node),
                f"nested more than {MAX_DEPTH} levels deep: manifests are not that deep",
            )
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                self._unknown_tag(node)
            self._enter(node, path)
            try:
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self._open.discard(id(node))
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                self._unknown_tag(node)
            return self._mapping(node, path)
        self.problems.append(Problem(self._at(node), "unsupported YAML node"))
        return None

    def _enter(self, node: yaml.Node, path: FieldPath) -> None:
        """Start building a collection; refuse one that is already being built (an alias to
        a value that contains the alias: its expansion would never end)."""
        if id(node) in self._open:
            anchor = self._at(node)
            # An alias keeps no position of its own: name the key it is the value of, or the
            # list it is an item of.
            while path and isinstance(path[-1], int):
                path = path[:-1]
            raise _Refused(
                self._where(path, node),
                f"recursive alias: the value anchored at line {anchor.line}, column "
                f"{anchor.column} contains itself; manifests are finite trees",
            )
        self._open.add(id(node))

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        self._enter(node, path)
        try:
            return self._mapping_items(node, path)
        finally:
            self._open.discard(id(node))

    def _mapping_items(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for merged in self._merge_sources(value_node, path):
                    for k, v in merged.items():
                        if k not in explicit:
                            out[k] = v
                continue
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                if key is None and not isinstance(key_node, yaml.ScalarNode):
                    message = "mapping keys must be plain strings"
                else:
                    message = f"mapping key {key!r} must be a string"
                self.problems.append(Problem(self._at(key_node), message))
                continue
            if key in explicit:
                first = self.positions.get((*path, key), (0, 0))
                self.problems.append(
                    Problem(
                        self._at(key_node),
                        f"duplicate key {key!r} (first defined at line {first[0]})",
                        path=_dotted((*path, key)),
                    )
                )
                continue
            explicit.add(key)
            self.positions[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = self.build(value_node, (*path, key))
        return out

    def _merge_sources(self, node: yaml.Node, path: FieldPath) -> list[dict[str, Any]]:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources: list[dict[str, Any]] = []
        for item in nodes:
            if not isinstance(item, yaml.MappingNode):
                self.problems.append(Problem(self._at(item), "a merge key (<<) takes mappings"))
                continue
            # Positions of merged values point at the anchor's definition.
            sources.append(self._mapping(item, path))
        return sources

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag == _STR or tag in _AS_STRING:
            return node.value
        if tag in _PLAIN_SCALARS:
            try:
                return _SCALARS[tag](self._constructor, node)
            except (ConstructorError, ValueError) as exc:
                self.problems.append(Problem(self._at(node), f"bad scalar: {exc}"))
                return node.value
        self._unknown_tag(node)
        return node.value

    def _unknown_tag(self, node: yaml.Node) -> None:
        self.problems.append(
            Problem(self._at(node), f"unsupported YAML tag {node.tag!r}: manifests are plain data")
        )


def _dotted(path: FieldPath) -> str:
    """``spec.rules[0].from``; a key that is not plain printable text is quoted (``['a\\n']``)
    so that a message stays on one line and says exactly which key."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part or not part.isprintable() or any(c.isspace() for c in part):
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


dotted = _dotted
