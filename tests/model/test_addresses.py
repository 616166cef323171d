"""One ``host:port`` type: the pattern every address field carries, in hmctl validate, in the CRDs
and in code (``parse_address``, the one address codec), checked against Python's ``ipaddress``
and against every bad port at every address field, with the position of the error."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.cli.main import main
from hypermesh.model.crds import openapi_schema
from hypermesh.model.loader import load_text
from hypermesh.model.schemas import (
    HOST_PORT_FIELDS,
    HOST_PORT_PATTERN,
    HOSTNAME_PATTERN,
    IPV4_PATTERN,
    IPV6_PATTERN,
    ecma_regex,
    fast_validator_for,
    validator_for,
)
from hypermesh.model.validate import build
from hypermesh.transport import address as codec
from hypermesh.transport.address import format_address, parse_address

NODE_ID = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"
HOST_PORT = ecma_regex(HOST_PORT_PATTERN)
IPV4 = ecma_regex(f"^{IPV4_PATTERN}$")
IPV6 = ecma_regex(f"^{IPV6_PATTERN}$")
# The same patterns as an ECMA-262 engine runs them (the one editors and jsonschema-rs use).
RS_HOST_PORT = jsonschema_rs.validator_for({"type": "string", "pattern": HOST_PORT_PATTERN})


def accepted(text: str) -> bool:
    python = HOST_PORT.search(text) is not None
    assert RS_HOST_PORT.is_valid(text) == python, text  # both engines agree on every input
    return python


# -- the pattern against Python's own parsers ---------------------------------------------------

ports = st.integers(0, 65535)


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4), ports)
def test_every_ipv4_address_and_port_is_accepted(address: ipaddress.IPv4Address, port: int) -> None:
    text = f"{address}:{port}"
    assert accepted(text)
    assert parse_address(text) == (str(address), port)


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=6), ports, st.sampled_from(["compressed", "exploded", "mapped"]))
def test_every_ipv6_address_in_every_form_is_accepted(
    address: ipaddress.IPv6Address, port: int, form: str
) -> None:
    if form == "mapped":  # the last 32 bits as an IPv4 address
        head = address.exploded.rsplit(":", 2)[0]
        host = f"{head}:{ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)}"
    else:
        host = getattr(address, form)
    assert ipaddress.IPv6Address(host) == address
    text = f"[{host}]:{port}"
    assert accepted(text)
    assert parse_address(text) == (host, port)
    assert not accepted(f"{host}:{port}")  # an IPv6 host goes in brackets


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF:.", min_size=1, max_size=45))
def test_the_ipv6_pattern_is_exactly_what_ipaddress_accepts(text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
        valid = True
    except ValueError:
        valid = False
    assert (IPV6.search(text) is not None) == valid, text
    assert accepted(f"[{text}]:443") == valid, text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.", min_size=1, max_size=17))
def test_the_ipv4_pattern_is_exactly_what_ipaddress_accepts(text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
        valid = True
    except ValueError:
        valid = False
    assert (IPV4.search(text) is not None) == valid, text
    # Nothing shaped like an address passes for a host name either.
    assert accepted(f"{text}:443") == valid, text


@settings(max_examples=200, deadline=None)
@given(st.integers(65536, 10**12))
def test_ports_above_65535_are_refused_saying_so(port: int) -> None:
    for host in ("127.0.0.1", "[::1]", "node.example"):
        assert not accepted(f"{host}:{port}")
        with pytest.raises(ValueError, match=f"port {port} is out of range"):
            parse_address(f"{host}:{port}")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_parse_address_refuses_what_the_pattern_refuses_and_says_why(text: str) -> None:
    if accepted(text):
        host, port = parse_address(text)
        assert 0 <= port <= 65535 and host
    else:
        with pytest.raises(ValueError) as caught:
            parse_address(text)
        assert repr(text) in str(caught.value) if text else "empty" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1:0",
        "0.0.0.0:4433",
        "[::1]:65535",
        "[fe80::1%eth0]:53",
        "[::ffff:192.0.2.1]:443",
        "localhost:8080",
        "node-1.example:443",
        "1node.example:443",
        "a:1",
    ],
)
def test_good_addresses(text: str) -> None:
    assert accepted(text)
    assert format_address(*parse_address(text)) == text


def test_the_schemas_and_the_codec_hold_one_pattern() -> None:
    """The schemas' address patterns are the codec's, character for character."""
    assert HOST_PORT_PATTERN == codec.HOST_PORT_PATTERN
    assert IPV4_PATTERN == codec.IPV4_PATTERN
    assert IPV6_PATTERN == codec.IPV6_PATTERN


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(ecma_regex(f"^{HOSTNAME_PATTERN}$"), fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(hosts, ports)
def test_format_then_parse_is_the_identity(host: str, port: int) -> None:
    text = format_address(host, port)
    assert accepted(text)
    assert parse_address(text) == (host, port)
    assert format_address(*parse_address(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.from_regex(HOST_PORT, fullmatch=True))
def test_every_address_the_pattern_accepts_parses_and_formats_back(text: str) -> None:
    host, port = parse_address(text)
    assert format_address(host, port) == text


def test_a_peer_ref_refuses_a_bad_address_saying_why() -> None:
    with pytest.raises(ValueError, match="put an IPv6 host in brackets"):
        codec.PeerRef("::1:53", NODE_ID)
    peer = codec.PeerRef("[::1]:53", NODE_ID)
    assert (peer.host, peer.port) == ("::1", 53)
    assert str(peer) == f"{NODE_ID}@[::1]:53"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("abc", "has no port"),
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:", "the port is missing"),
        ("127.0.0.1:-1", "'-1' is not a number"),
        ("127.0.0.1:abc", "'abc' is not a number"),
        ("127.0.0.1:1e5", "'1e5' is not a number"),
        ("127.0.0.1:65536", "port 65536 is out of range (0-65535)"),
        ("127.0.0.1:99999", "port 99999 is out of range"),
        ("127.0.0.1:080", "leading zeros"),
        ("127.0.0.1:0\n", "is not a number"),
        (" 127.0.0.1:0", "is not a host name"),
        ("999.1.1.1:80", "'999.1.1.1' is not an IPv4 address"),
        ("1.2.3:80", "is not an IPv4 address"),
        ("01.2.3.4:80", "is not an IPv4 address"),
        ("::1:53", "put an IPv6 host in brackets"),
        ("[::1:53", "closing bracket"),
        ("[::1]53", "expected :PORT"),
        ("[::zz]:53", "'::zz' is not an IPv6 address"),
        ("[1:2:3:4:5:6:7:8:9]:53", "is not an IPv6 address"),
        ("[::1]:65536", "port 65536 is out of range"),
        ("[::1%]:53", "zone"),
        ("node_1.example:80", "is not a host name"),
        ("node.example.:80", "is not a host name"),
        ("-node.example:80", "is not a host name"),
    ],
)
def test_bad_addresses_are_refused_saying_why(text: str, why: str) -> None:
    assert not accepted(text)
    with pytest.raises(ValueError) as caught:
        parse_address(text)
    assert why in str(caught.value), str(caught.value)


# -- every address field, in hmctl validate and in the CRDs ------------------------------------

FIELD_DOCUMENTS: dict[tuple[str, str], tuple[str, tuple[int, int]]] = {
    # (kind, field) -> (manifest with VALUE where the address goes, position of the field's key)
    ("Network", "spec.registry.endpoint"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Network\nmetadata: {name: acme}\n"
        f'spec:\n  mode: private\n  registry:\n    endpoint: "VALUE"\n    identity: {NODE_ID}\n',
        (7, 5),
    ),
    ("Network", "spec.federation[].registry.endpoint"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Network\nmetadata: {name: acme}\n"
        "spec:\n  mode: private\n  federation:\n  - name: lab\n    registry:\n"
        f'      endpoint: "VALUE"\n      identity: {NODE_ID}\n',
        (9, 7),
    ),
    ("Node", "spec.listen"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
        'spec:\n  network: acme\n  listen: "VALUE"\n',
        (6, 3),
    ),
    ("Node", "spec.advertise[]"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
        'spec:\n  network: acme\n  advertise:\n  - "VALUE"\n',
        (7, 5),
    ),
    ("Node", "spec.web.listen"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
        'spec:\n  network: acme\n  web:\n    listen: "VALUE"\n',
        (7, 5),
    ),
    ("Node", "spec.resolver.listen"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
        'spec:\n  network: acme\n  resolver:\n    listen: "VALUE"\n',
        (7, 5),
    ),
    ("Node", "spec.resolver.upstreams[]"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
        'spec:\n  network: acme\n  resolver:\n    upstreams:\n    - "VALUE"\n',
        (8, 7),
    ),
    ("Node", "spec.tls.listen"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
        "spec:\n  network: acme\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n"
        '    listen: "VALUE"\n',
        (9, 5),
    ),
    ("Node", "spec.dns.listen"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
        'spec:\n  network: acme\n  dns:\n    listen: "VALUE"\n',
        (7, 5),
    ),
    ("Peer", "spec.address"): (
        "apiVersion: hypermesh.online/v1alpha1\nkind: Peer\nmetadata: {name: far}\n"
        f'spec:\n  network: acme\n  identity: {NODE_ID}\n  address: "VALUE"\n',
        (7, 3),
    ),
}

BAD_PORTS = ["65536", "99999", "-1", "", "abc", "1e5", "070"]


def test_every_address_field_is_covered() -> None:
    assert {(k, f) for k, fields in HOST_PORT_FIELDS.items() for f in fields} == set(
        FIELD_DOCUMENTS
    )


def _fill(template: str, value: str) -> str:
    return template.replace("VALUE", value.replace("\\", "\\\\").replace("\n", "\\n"))


def _dotted(field: str) -> str:
    return field.replace("[]", "[0]")


def _crd_refuses(kind: str, text: str) -> bool:
    import yaml

    document = yaml.safe_load(text)
    return not jsonschema_rs.validator_for(openapi_schema(kind)).is_valid(document)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "registry.example"])
@pytest.mark.parametrize(("kind", "field"), sorted(FIELD_DOCUMENTS))
def test_bad_ports_are_refused_at_every_address_field(kind: str, field: str, host: str) -> None:
    template, (line, column) = FIELD_DOCUMENTS[(kind, field)]
    _, problems = build(load_text(_fill(template, f"{host}:443"), "m.yaml"))
    assert not [p for p in problems if p.path == _dotted(field)]  # the good value passes
    for port in BAD_PORTS:
        value = f"{host}:{port}"
        text = _fill(template, value)
        _, problems = build(load_text(text, "m.yaml"))
        mine = [p for p in problems if p.path == _dotted(field)]
        assert len(mine) == 1, (value, [str(p) for p in problems])
        assert (mine[0].position.line, mine[0].position.column) == (line, column)
        assert repr(value) in mine[0].message, mine[0].message
        # The CRD on a cluster refuses it too (the API server runs the same pattern).
        assert _crd_refuses(kind, text), value
    # A good port passes both.
    assert not _crd_refuses(kind, _fill(template, f"{host}:65535"))


def test_hmctl_validate_names_every_bad_address_at_file_line_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "bad.yaml"
    documents, offsets = [], []
    line = 1
    for key in sorted(FIELD_DOCUMENTS):
        template, position = FIELD_DOCUMENTS[key]
        text = _fill(template, "127.0.0.1:99999")
        documents.append(text)
        offsets.append((key, line + position[0] - 1, position[1]))
        line += text.count("\n") + 1  # and the "---" line
    manifest.write_text("---\n".join(documents))
    assert main(["--state", str(tmp_path / "s"), "validate", "-f", str(manifest)]) == 1
    err = capsys.readouterr().err
    for (kind, field), row, column in offsets:
        where = f"{manifest}:{row}:{column}: {kind}/"
        lines = [x for x in err.splitlines() if x.startswith(where) and _dotted(field) in x]
        assert lines and "port 99999 is out of range (0-65535)" in lines[0], (where, err)
    assert "Traceback" not in err


def test_the_python_validator_and_the_compiled_one_agree_on_addresses() -> None:
    for value in ["127.0.0.1:0\n", "[::1]:65536", "a:1", "1.2.3.4:65535", "x y:1"]:
        document = {
            "apiVersion": "hypermesh.online/v1alpha1",
            "kind": "Node",
            "metadata": {"name": "a"},
            "spec": {"network": "acme", "listen": value},
        }
        fast = fast_validator_for("Node").is_valid(document)
        slow = not list(validator_for("Node").iter_errors(document))
        assert fast == slow == accepted(value), value


def test_the_pure_core_reads_addresses_without_loading_quic() -> None:
    """``hypermesh.transport`` imports nothing eagerly, so the model's use of the codec does
    not load aioquic (import-linter cannot see a package's ``__init__``)."""
    probe = "import sys, hypermesh.model.validate; print('aioquic' in sys.modules)"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "False"
