"""Everything a provenance bundle declares is checked: any change to any field of a real bundle
(its version, the target and origin it names, a block, a step, a proof hash) is refused, by the
chain library, by the SDK and by ``hmctl chain verify --bundle``, with a message naming the field.
"""

from __future__ import annotations

import copy
import functools
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hypermesh.chain.block import BadBlock, Link
from hypermesh.chain.provenance import Bundle, verify_bundle
from hypermesh.chain.store import ChainStore
from hypermesh.cli.main import main as hmctl
from hypermesh.inputs import path_text
from hypermesh.sdk.mesh import Mesh
from hypermesh.transport.identity import Identity
from tests.harness.provenance import bundle_between

Path_ = tuple[str | int, ...]


@functools.cache
def real_bundle() -> dict[str, Any]:
    """A bundle across three chains (link, history, link), as a node hands it out."""
    with tempfile.TemporaryDirectory() as folder:
        stores = {n: ChainStore.open(Path(folder) / f"{n}.db", Identity.generate()) for n in "abc"}
        a, b, c = stores["a"], stores["b"], stores["c"]
        origin = a.append(1, b"the origin")
        b.append(1, b"unrelated")
        b.append(2, b"", [Link(origin.author, origin.seq, origin.hash)])
        b.append(1, b"more on b")
        b3 = b.append(1, b"and more")
        c.append(1, b"start")
        target = c.append(2, b"", [Link(b3.author, b3.seq, b3.hash)])
        bundle = bundle_between(stores.values(), target, origin)
        for store in stores.values():
            store.close()
    assert bundle is not None and [s.via for s in bundle.steps] == ["link", "history", "link"]
    return bundle.to_json()


def fields(data: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every field of ``data`` (objects, arrays and leaves), by path."""
    if path:
        yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from fields(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from fields(value, (*path, index))


def get(data: Any, path: Path_) -> Any:
    for part in path:
        data = data[part]
    return data


def put(data: Any, path: Path_, value: Any) -> None:
    get(data, path[:-1])[path[-1]] = value


def flip(text: str, at: int) -> str:
    """``text`` with one character replaced by another of the same kind (a digit or letter
    by another, so it still looks like the field it was)."""
    at %= len(text)
    old = text[at]
    pool = "0123456789abcdef" if old in "0123456789abcdef" else "abcdefghijklmnopqrstuvwxyz234567"
    new = pool[(pool.index(old) + 1) % len(pool)] if old in pool else "A"
    return text[:at] + new + text[at + 1 :]


Mutation = Callable[[Any, int], Any]

DELETE = object()
"""The field removed from its object."""

SCALARS: list[tuple[str, Mutation]] = [
    ("null", lambda v, _: None),
    ("true", lambda v, _: True),
    ("object", lambda v, _: {"x": v}),
    ("array", lambda v, _: [v]),
    ("huge string", lambda v, _: "9" * 100_000),
]
INTEGERS: list[tuple[str, Mutation]] = [
    ("plus one", lambda v, _: v + 1),
    ("minus one", lambda v, _: v - 1),
    ("negative", lambda v, _: -1 - v),
    ("2^63", lambda v, _: 2**63 + v),
    ("2^64", lambda v, _: 2**64 + v),
    ("as text", lambda v, _: str(v)),
    ("as float", lambda v, _: float(v)),
]
STRINGS: list[tuple[str, Mutation]] = [
    ("one character", flip),
    ("upper case", lambda v, _: v.upper()),
    ("a final newline", lambda v, _: v + "\n"),
    ("a leading space", lambda v, _: " " + v),
    ("shortened", lambda v, _: v[:-1]),
    ("empty", lambda v, _: ""),
    ("a number", lambda v, _: 7),
]
ARRAYS: list[tuple[str, Mutation]] = [
    ("an item dropped", lambda v, i: v[: i % len(v)] + v[i % len(v) + 1 :] if v else ["x"]),
    ("an item doubled", lambda v, i: v[: i % len(v)] + v[i % len(v) :] * 2 if v else ["x"]),
    ("reversed", lambda v, _: v[::-1]),
    ("an item added", lambda v, _: [*v, "x"]),
    ("emptied", lambda v, _: []),
]
OBJECTS: list[tuple[str, Mutation]] = [
    ("a field added", lambda v, _: {**v, "extra": 1}),
    ("emptied", lambda v, _: {}),
]


def mutations(value: Any) -> list[tuple[str, Mutation]]:
    if isinstance(value, bool) or value is None:
        kind: list[tuple[str, Mutation]] = []
    elif isinstance(value, int):
        kind = INTEGERS
    elif isinstance(value, str):
        kind = STRINGS
    elif isinstance(value, list):
        kind = ARRAYS
    else:
        kind = OBJECTS
    return [*kind, *SCALARS, ("deleted", lambda v, _: DELETE)]


def refusal(data: Any) -> str:
    """Why the library refuses ``data`` (the test fails if it does not); the SDK must give
    the same answer."""
    with pytest.raises(BadBlock) as caught:
        verify_bundle(Bundle.from_json(data))
    with pytest.raises(BadBlock) as sdk:
        Mesh.verify_bundle(data)
    assert str(sdk.value) == str(caught.value)
    return str(caught.value)


def named(message: str, path: Path_, what: str) -> bool:
    """Whether ``message`` names the field changed (``origin.seq``), the field added
    (``origin.extra``), or, for an item of an array or of a step, the field that holds it."""
    names = {path_text(path)}
    if what == "a field added":
        names = {path_text((*path, "extra"))}
    if isinstance(path[-1], int) or path[0] == "steps":
        names.add(path_text(path[:-1]))
    return any(name in message for name in names)


ALL_FIELDS = [path for path, _ in fields(real_bundle())]


def test_the_real_bundle_verifies() -> None:
    data = real_bundle()
    assert "had seen block 0" in verify_bundle(Bundle.from_json(copy.deepcopy(data)))
    assert len(ALL_FIELDS) > 20


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_FIELDS), st.data())
def test_any_change_to_any_declared_field_is_refused_naming_it(
    path: Path_, draw: st.DataObject
) -> None:
    data = copy.deepcopy(real_bundle())
    original = get(data, path)
    what, mutate = draw.draw(st.sampled_from(mutations(original)), label="mutation")
    changed = mutate(original, draw.draw(st.integers(0, 10_000), label="where"))
    if changed is DELETE:
        parent: Any = get(data, path[:-1])
        del parent[path[-1]]
    else:
        assume(changed != original or type(changed) is not type(original))
        put(data, path, changed)
    message = refusal(data)
    assert named(message, path, what), (path_text(path), what, message)


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("origin", "seq"), 1, "origin.seq: the bundle declares 1"),
        (("origin", "hash"), "0" * 64, "origin.hash: the bundle declares"),
        (("target", "hash"), "f" * 64, "target.hash: the bundle declares"),
        (("target", "seq"), 2**64, "target.seq: 18446744073709551616 is out of range"),
        (("steps", 1, "proof", 0), "0" * 64, "steps[1].proof: step 2"),
    ],
)
def test_hmctl_verify_bundle_refuses_with_exit_1_naming_the_field(
    path: Path_,
    value: Any,
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = tmp_path / "proof.json"
    file.write_text(json.dumps(real_bundle()))
    assert hmctl(["chain", "verify", "--bundle", str(file)]) == 0
    assert "verified: " in capsys.readouterr().out
    data = copy.deepcopy(real_bundle())
    put(data, path, value)
    file.write_text(json.dumps(data))
    assert hmctl(["chain", "verify", "--bundle", str(file)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED: ") and words in out, out


@pytest.mark.parametrize("text", ["{not json", "[]", '"a string"', "1e999999"])
def test_a_file_that_is_not_a_bundle_fails_verification(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "proof.json"
    file.write_text(text)
    assert hmctl(["chain", "verify", "--bundle", str(file)]) == 1
    assert capsys.readouterr().out.startswith("FAILED: ")
    missing = tmp_path / "absent.json"
    assert hmctl(["chain", "verify", "--bundle", str(missing)]) == 2  # usage: no such file
