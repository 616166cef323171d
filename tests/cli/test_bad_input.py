"""Bad input gets a clear FILE:LINE:COL error, every problem at once, and loses nothing.

Each case is a broken manifest with the exact message ``hmctl validate`` must print first and
the exit codes of ``validate`` (1: invalid) and ``apply`` (2: bad input). After every failed
apply the state store must be byte-for-byte what it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hypermesh.cli.main import main
from tests.conftest import HEADER, documents, network, node

NET = network("demo")
TLD = f"{HEADER}kind: TLD\nmetadata: {{name: acme}}\nspec: {{network: demo, owner: {{node: a}}}}\n"
NODE_A = node("a")
PEER = (
    f"{HEADER}kind: Peer\nmetadata: {{name: far}}\nspec:\n  network: demo\n"
    "  identity: hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua\n"
    "  address: 192.0.2.10:443\n"
)

CASES: list[tuple[str, bytes | str, str]] = [
    (
        "yaml-syntax",
        "kind: Node\nmetadata: {name: a\nspec: {}\n",
        "bad.yaml:3:5: invalid YAML: did not find expected ',' or '}' "
        "(while parsing a flow mapping)",
    ),
    (
        "duplicate-key",
        documents(NET, node("a").replace("spec:\n", "spec:\n  network: demo\n")),
        "bad.yaml:11:3: spec.network: duplicate key 'network' (first defined at line 10)",
    ),
    (
        "tab-indentation",
        f"{HEADER}kind: Network\nmetadata:\n\tname: demo\nspec: {{mode: private}}\n",
        "bad.yaml:4:1: invalid YAML: found character that cannot start any token "
        "(while scanning for the next token); YAML forbids tabs",
    ),
    (
        "wrong-type",
        documents(NET, node("a").replace('listen: "127.0.0.1:0"', "listen: 4433")),
        "bad.yaml:11:3: Node/a: spec.listen: expected string, got integer 4433",
    ),
    (
        "drift-annotation",
        documents(
            NET.replace(
                "metadata: {name: demo}",
                "metadata:\n  name: demo\n  annotations: {hypermesh.online/drift: ignore}",
            ),
            NODE_A,
        ),
        "bad.yaml:5:17: Network/demo: metadata.annotations.hypermesh.online/drift: 'ignore' is "
        "not a drift policy: detect or correct",
    ),
    (
        "unknown-field",
        documents(NET, node("a", colour="blue")),
        "bad.yaml:12:3: Node/a: spec.colour: unknown field 'colour'",
    ),
    (
        "unknown-field-typo",
        documents(NET, node("a", role="[mirror]")),
        "bad.yaml:12:3: Node/a: spec.role: unknown field 'role' (did you mean 'roles'?)",
    ),
    (
        "missing-network",
        node("a", network="nowhere"),
        "bad.yaml:5:3: Node/a: spec.network: Network 'nowhere' is not declared",
    ),
    (
        "invalid-name",
        documents(NET, node("Alpha_1")),
        "bad.yaml:8:12: Node/Alpha_1: metadata.name: 'Alpha_1' is not valid: names must be",
    ),
    (
        "duplicate-resource",
        documents(NET, NODE_A, NODE_A),
        "bad.yaml:13:1: Node/a: metadata.name: duplicate resource: Node/a is already defined at "
        "bad.yaml:6:1",
    ),
    (
        "port-clash",
        documents(NET, node("a", listen="127.0.0.1:7000"), node("b", listen="0.0.0.0:7000")),
        "bad.yaml:18:3: Node/b: spec.listen: listen address 0.0.0.0:7000 clashes with Node/a "
        "(127.0.0.1:7000) at bad.yaml:11:3",
    ),
    ("empty-file", "", "bad.yaml:1:1: no resources found"),
    ("only-comments", "# nothing here\n---\n", "bad.yaml:1:1: no resources found"),
    (
        "binary-garbage",
        b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4,
        "bad.yaml:1:8: binary data (NUL byte): not a YAML manifest",
    ),
    (
        "not-utf8",
        "kind: Network\nmetadata: {name: caf\xe9}\n".encode("latin-1"),
        "bad.yaml:2:21: not UTF-8 text: manifests must be UTF-8",
    ),
    (
        "unknown-kind",
        f"{HEADER}kind: Nod\nmetadata: {{name: a}}\nspec: {{}}\n",
        "bad.yaml:2:1: Nod/a: kind: unknown kind 'Nod' (did you mean 'Node'?)",
    ),
    (
        "wrong-api-version",
        "apiVersion: v1\nkind: Network\nmetadata: {name: demo}\nspec: {mode: private}\n",
        "bad.yaml:1:1: Network/demo: apiVersion: apiVersion must be 'hypermesh.online/v1alpha1'",
    ),
    (
        "missing-kind",
        f"{HEADER}metadata: {{name: demo}}\nspec: {{mode: private}}\n",
        "bad.yaml:1:1: kind: missing 'kind'",
    ),
    (
        "missing-spec",
        f"{HEADER}kind: Network\nmetadata: {{name: demo}}\n",
        "bad.yaml:1:1: Network/demo: spec: missing required field 'spec'",
    ),
    (
        "document-is-a-list",
        "- a\n- b\n",
        "bad.yaml:1:1: a manifest document must be a mapping, not list",
    ),
    (
        "record-without-values",
        documents(
            NET,
            NODE_A,
            TLD,
            f"{HEADER}kind: Record\nmetadata: {{name: www.acme}}\nspec: {{tld: acme, type: A}}\n",
        ),
        "bad.yaml:18:1: Record/www.acme: spec: a Record needs exactly one of 'values' or 'target'",
    ),
    (
        "record-undeclared-tld",
        documents(
            NET,
            f"{HEADER}kind: Record\nmetadata: {{name: www.nope}}\n"
            "spec: {tld: nope, type: A, values: [192.0.2.1]}\n",
        ),
        "bad.yaml:9:8: Record/www.nope: spec.tld: TLD 'nope' is not declared",
    ),
    (
        "tld-owner-undeclared",
        documents(NET, TLD),
        "bad.yaml:9:31: TLD/acme: spec.owner.node: Node 'a' is not declared",
    ),
    (
        "tld-with-dot",
        documents(NET, NODE_A, TLD.replace("name: acme", "name: acme.corp")),
        "bad.yaml:13:1: TLD/acme.corp: metadata.name: a TLD is a single label: no dots",
    ),
    (
        "policy-unknown-node",
        documents(
            NET,
            NODE_A,
            f"{HEADER}kind: InterfacePolicy\nmetadata: {{name: p}}\nspec:\n  network: demo\n"
            "  interface: private\n  rules:\n  - from: {nodes: [ghost]}\n"
            "    operations: [dns.query]\n",
        ),
        "bad.yaml:20:20: InterfacePolicy/p: spec.rules[0].from.nodes[0]: Node 'ghost' is not "
        "declared",
    ),
    (
        "registry-lacks-role",
        documents(NET.replace("{mode: private}", "{mode: private, registry: {node: a}}"), NODE_A),
        "bad.yaml:4:34: Network/demo: spec.registry.node: Node 'a' is named as registry but lacks",
    ),
    (
        "ephemeral-without-ttl",
        network("tmp", mode="ephemeral"),
        "bad.yaml:4:8: Network/tmp: spec.ttl: an ephemeral network needs a 'ttl'",
    ),
    (
        "bad-enum",
        documents(NET, node("a", interfaces="[public, privte]")),
        "bad.yaml:12:24: Node/a: spec.interfaces[1]: 'privte' is not one of: public, private, "
        "ephemeral (did you mean 'private'?)",
    ),
    (
        "bad-node-id",
        documents(
            NET,
            f"{HEADER}kind: Peer\nmetadata: {{name: far}}\nspec:\n  network: demo\n"
            "  identity: hm1NOTBASE32\n  address: 192.0.2.10:443\n",
        ),
        "bad.yaml:11:3: Peer/far: spec.identity: 'hm1NOTBASE32' is not valid: a node ID is 'hm1'",
    ),
    (
        "port-out-of-range",
        documents(NET, node("a", listen="127.0.0.1:70000")),
        "bad.yaml:11:3: Node/a: spec.listen: '127.0.0.1:70000': port 70000 is out of range "
        "(0-65535)",
    ),
    (
        "unsupported-tag",
        documents(NET, node("a", roles="!!python/object:os.system [mirror]")),
        "bad.yaml:12:10: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
    ),
    (
        "recursive-alias-mapping",
        f"{HEADER}kind: Node\nmetadata: {{name: a}}\nspec: &a {{network: *a}}\n",
        "bad.yaml:4:11: recursive alias: the value anchored at line 4, column 7 contains itself",
    ),
    (
        "recursive-alias-sequence",
        f"{HEADER}kind: Node\nmetadata: {{name: a}}\nspec: &a [*a]\n",
        "bad.yaml:4:1: recursive alias: the value anchored at line 4, column 7 contains itself",
    ),
    (
        "recursive-alias-nested",
        f"{HEADER}kind: Node\nmetadata: &m\n  name: a\n  labels: {{x: [*m]}}\nspec: {{}}\n",
        "bad.yaml:5:12: recursive alias: the value anchored at line 3, column 11 contains itself",
    ),
    (
        "recursive-alias-list",
        "&a [*a, *a]\n",
        "bad.yaml:1:1: recursive alias: the value anchored at line 1, column 1 contains itself",
    ),
    (
        "recursive-merge-key",
        f"{HEADER}kind: Network\nmetadata: {{name: demo}}\nspec: &s {{mode: private, <<: *s}}\n",
        "bad.yaml:4:1: recursive alias: the value anchored at line 4, column 7 contains itself",
    ),
    (
        "nested-too-deep",
        f"{HEADER}kind: Network\nmetadata: {{name: demo}}\nspec: {'[' * 100}{']' * 100}\n",
        "bad.yaml:4:",
    ),
    (
        "ipv6-port-out-of-range",
        documents(NET, node("a", listen="[::1]:65536")),
        "bad.yaml:11:3: Node/a: spec.listen: '[::1]:65536': port 65536 is out of range",
    ),
    (
        "web-port-out-of-range",
        documents(NET, node("a", web="{listen: '127.0.0.1:99999'}")),
        "bad.yaml:12:9: Node/a: spec.web.listen: '127.0.0.1:99999': port 99999 is out of range",
    ),
    (
        "peer-port-out-of-range",
        documents(NET, PEER.replace("192.0.2.10:443", "192.0.2.10:1e5")),
        "bad.yaml:12:3: Peer/far: spec.address: '192.0.2.10:1e5': the port '1e5' is not a number",
    ),
    (
        "namespaced-names-one-way",
        documents(NET, node("a").replace("{name: a}", "{name: a, namespace: ns}") + "  bogus: 1\n"),
        "bad.yaml:12:3: Node/ns/a: spec.bogus: unknown field 'bogus'",
    ),
    (
        "negative-ttl",
        documents(NET, NODE_A, TLD.replace("owner: {node: a}", "owner: {node: a}, ttl: -5")),
        "bad.yaml:16:41: TLD/acme: spec.ttl: -5 is less than the minimum of 1",
    ),
]


def _dump(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        rows: list[tuple[object, ...]] = []
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            rows.extend((table, *r) for r in conn.execute(f"SELECT * FROM {table}"))
        return sorted(rows, key=repr)


@pytest.fixture(scope="module")
def applied_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state store that already holds an applied network (no processes needed)."""
    root = tmp_path_factory.mktemp("applied")
    good = root / "good.yaml"
    good.write_text(documents(network("demo"), PEER))  # a Peer: a member, and no process
    assert main(["--state", str(root / "state"), "apply", "-f", str(good)]) == 0
    return root / "state"


@pytest.mark.parametrize(("name", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_manifest(
    name: str,
    content: bytes | str,
    expected: str,
    tmp_path: Path,
    applied_state: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_bytes(content.encode() if isinstance(content, str) else content)
    assert main(["--state", str(applied_state), "validate", "-f", "bad.yaml"]) == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith(expected), err

    before = _dump(applied_state / "state.db")
    assert main(["--state", str(applied_state), "apply", "-f", "bad.yaml"]) == 2
    _out, err = capsys.readouterr()
    assert expected.split(": ")[0] in err
    assert _dump(applied_state / "state.db") == before


def test_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(
        documents(
            NET,
            node("a", colour="blue"),
            node("b", network="nowhere"),
            node("c", interfaces="[wrong]"),
        )
    )
    assert main(["--state", str(tmp_path / "s"), "validate", "-f", "bad.yaml"]) == 1
    err = capsys.readouterr().err
    assert "spec.colour: unknown field" in err
    assert "Network 'nowhere' is not declared" in err
    assert "'wrong' is not one of" in err
    assert "3 problems found" in err


def test_fifty_megabyte_file_is_refused_without_parsing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    applied_state: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    with Path("huge.yaml").open("wb") as handle:
        handle.truncate(50 * 1000 * 1000)
    before = _dump(applied_state / "state.db")
    assert main(["--state", str(applied_state), "validate", "-f", "huge.yaml"]) == 1
    assert "huge.yaml:1:1: file is 50.0 MB; manifests are limited to 16 MiB" in (
        capsys.readouterr().err
    )
    assert main(["--state", str(applied_state), "apply", "-f", "huge.yaml"]) == 2
    assert _dump(applied_state / "state.db") == before


def test_stdin_errors_name_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a: [1\n")))
    assert main(["--state", str(tmp_path / "s"), "validate", "-f", "-"]) == 1
    assert capsys.readouterr().err.startswith("<stdin>:2:1: invalid YAML")
