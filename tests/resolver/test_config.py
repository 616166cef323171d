"""``spec.resolver`` of a Node: checked by the schema, defaulted, carried into the node's
config file and read back; resolv.conf read without the stub's own address."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.drivers.nodeconfig import interfaces_of
from hypermesh.errors import ManifestError
from hypermesh.model.validate import load_desired
from hypermesh.node.config import NodeConfig, ResolverConfig
from hypermesh.resolver import read_resolv_conf

MANIFEST = """\
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: acme}
spec: {mode: private, registry: {node: registry}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: registry}
spec: {network: acme, roles: [registry], listen: "127.0.0.1:0"}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: alpha}
spec:
  network: acme
  listen: "127.0.0.1:0"
  resolver: RESOLVER
"""


def derived(tmp_path: Path, resolver: str) -> dict[str, object]:
    path = tmp_path / "net.yaml"
    path.write_text(MANIFEST.replace("RESOLVER", resolver))
    desired = load_desired([str(path)])
    node = desired.get("Node", "alpha")
    assert node is not None
    return interfaces_of(
        node,
        desired,
        identity_of=lambda _: None,
        registry_upstream=lambda _: None,
        private_listen="127.0.0.1:0",
        ephemeral_listen="127.0.0.1:0",
    )


def test_the_defaults_and_the_config_file(tmp_path: Path) -> None:
    resolver = derived(tmp_path, "{}")["resolver"]
    assert resolver == ResolverConfig("127.0.0.53:53", None, "/etc/resolv.conf", True)
    chosen = derived(
        tmp_path, '{listen: "127.0.0.1:5353", upstreams: ["192.0.2.53:53"], forward: false}'
    )["resolver"]
    assert chosen == ResolverConfig("127.0.0.1:5353", ("192.0.2.53:53",), "/etc/resolv.conf", False)
    config = NodeConfig(
        name="alpha",
        network="acme",
        listen="127.0.0.1:0",
        prefer_port=None,
        interfaces=(),
        roles=(),
        tags=(),
        generation=1,
        node_dir=str(tmp_path),
        log_file=str(tmp_path / "log"),
        resolver=chosen,
    )
    assert NodeConfig.from_json(config.to_json()) == config
    without = NodeConfig.from_json(config.to_json().replace('"resolver"', '"_resolver"'))
    assert without.resolver is None and '"resolver"' not in without.to_json()


@pytest.mark.parametrize(
    ("resolver", "says"),
    [
        ('{listen: "nowhere"}', "resolver.listen"),
        ("{upstreams: []}", "resolver.upstreams"),
        ("{forward: maybe}", "resolver.forward"),
        ("{port: 53}", "resolver"),
        ('{resolvConf: "relative/resolv.conf"}', "resolver.resolvConf"),
    ],
)
def test_a_bad_resolver_is_the_manifest_s_mistake(tmp_path: Path, resolver: str, says: str) -> None:
    with pytest.raises(ManifestError) as caught:
        derived(tmp_path, resolver)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert says in text and "net.yaml:" in text


def test_resolv_conf_without_the_stub_itself() -> None:
    text = (
        "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1 # first\n"
        "options edns0\nnameserver fe80::1%eth0\nnameserver not-an-address\n"
        "search acme\nnameserver 192.0.2.1\n"
    )
    assert read_resolv_conf(text) == ("127.0.0.53:53", "192.0.2.1:53", "[fe80::1]:53")
    assert read_resolv_conf(text, "127.0.0.53:53") == ("192.0.2.1:53", "[fe80::1]:53")
    assert read_resolv_conf(text, "0.0.0.0:53") == ("192.0.2.1:53", "[fe80::1]:53")
    assert read_resolv_conf(text, "127.0.0.53:5353")[0] == "127.0.0.53:53"
