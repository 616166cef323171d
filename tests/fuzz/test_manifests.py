"""Fuzzing the manifest loader and validator (``hmctl validate``/``apply``, and the GitOps
controller reading a repository): whatever the bytes, problems come back as problems, and what
validates is usable (``targets.check_manifest``)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from .budget import fuzz
from .corpus import run
from .strategies import NASTY_INTS, NODE_IDS, nasty_int, nasty_text

# Strategies over long sample lists make Hypothesis warn when it describes them.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

API = "hypermesh.online/v1alpha1"

HOSTS = ["127.0.0.1", "[::1]", "node.example", "0.0.0.0", "[fe80::1%eth0]", "localhost"]


def host_ports() -> st.SearchStrategy[str]:
    port = st.one_of(st.sampled_from([0, 4433, 65535, 65536, 99999]), nasty_int())
    return st.one_of(
        st.builds(lambda h, p: f"{h}:{p}", st.sampled_from(HOSTS), port),
        nasty_text(),
    )


def names() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["demo", "alpha", "beta", "acme", "www.acme"]), nasty_text())


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, value, value, nasty_int(), nasty_text(), st.none())


SPECS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "Network": st.fixed_dictionaries(
        {"mode": maybe(st.sampled_from(["private", "public", "ephemeral"]))},
        optional={
            "registry": maybe(
                st.fixed_dictionaries(
                    {"endpoint": host_ports(), "identity": st.sampled_from(NODE_IDS)}
                )
            )
        },
    ),
    "Node": st.fixed_dictionaries(
        {"network": maybe(names()), "listen": host_ports()},
        optional={
            "web": maybe(st.fixed_dictionaries({"listen": host_ports()})),
            "roles": maybe(st.lists(st.sampled_from(["registry", "mirror", "relay"]))),
            "interfaces": maybe(st.lists(st.sampled_from(["public", "private", "ephemeral"]))),
        },
    ),
    "Peer": st.fixed_dictionaries(
        {
            "network": maybe(names()),
            "address": host_ports(),
            "identity": maybe(st.sampled_from(NODE_IDS)),
        }
    ),
    "TLD": st.fixed_dictionaries(
        {"network": maybe(names()), "owner": maybe(st.fixed_dictionaries({"node": names()}))},
        optional={"ttl": maybe(st.sampled_from(NASTY_INTS))},
    ),
    "Record": st.fixed_dictionaries(
        {"tld": maybe(names())},
        optional={
            "name": maybe(names()),
            "type": maybe(st.sampled_from(["A", "TXT", "CNAME"])),
            "values": maybe(st.lists(nasty_text(), max_size=2)),
            "ttl": nasty_int(),
        },
    ),
}


def documents() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(sorted(SPECS)).flatmap(
        lambda kind: st.builds(
            lambda name, spec: {
                "apiVersion": API,
                "kind": kind,
                "metadata": {"name": name},
                "spec": spec,
            },
            names(),
            SPECS[kind],
        )
    )


def manifests() -> st.SearchStrategy[bytes]:
    """A network with nodes and names, dumped as YAML, sometimes with a known-nasty YAML
    construct spliced in (anchors, aliases, tags, merges, deep nesting)."""
    base = st.lists(documents(), min_size=1, max_size=4).map(
        lambda docs: yaml.safe_dump_all(docs, sort_keys=False)
    )
    splice = st.sampled_from(
        [
            "spec: &a {network: *a}\n",
            "spec: &a [*a]\n",
            "x: &a {b: &b {c: *a}}\n",
            "<<: *nothing\n",
            "spec: {<<: [&m {a: 1}, *m]}\n",
            "spec: !!python/object:os.system {}\n",
            "spec: !custom 1\n",
            "? [a, b]\n: c\n",
            "spec: " + "[" * 5000 + "]" * 5000 + "\n",
            "spec: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n",
            "metadata: {name: a, name: b}\n",
            "\tspec: {}\n",
            "%YAML 1.1\n---\n",
            "kind: List\nitems: [{kind: List, items: [{kind: Node}]}]\n",
            "spec: .nan\n",
            "spec: 2001-01-01\n",
            "spec: 0x" + "f" * 40 + "\n",
        ]
    )
    spliced = st.builds(lambda text, extra: text + extra, base, splice)
    return st.one_of(
        base.map(str.encode),
        spliced.map(str.encode),
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


@fuzz(200)
@given(manifests())
def test_manifests(raw: bytes) -> None:
    run("manifest", raw, "manifests")
