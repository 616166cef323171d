"""A node imports only the features it opens: ``node.features`` names them by module, with
whether a config asks for each answered without importing it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hypermesh.node.config import NodeConfig, ResolverConfig, Upstream
from hypermesh.node.features import FEATURES, LazyFeature
from hypermesh.node.process import CHAIN_DB
from hypermesh.transport.address import PeerRef


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_the_node_process_imports_no_feature_before_it_opens() -> None:
    loaded = loaded_after("import hypermesh.node.process")
    features = {m for m in loaded if m.startswith("hypermesh.node.features.")}
    assert features == set(), features
    assert "sqlmodel" not in loaded and "sqlalchemy" not in loaded


def test_a_mirror_loads_no_database_layer_resolver_or_relay() -> None:
    loaded = loaded_after("from hypermesh.node.features import preload\npreload()")
    assert "hypermesh.node.features.mirror" in loaded  # preloaded: a mirror's features
    heavy_modules = ("sqlmodel", "sqlalchemy", "hypermesh.registry.service", "hypermesh.resolver")
    watches = ("watchfiles", "hypermesh.node.filewatch")  # only spec.tls and watch_config
    for heavy in (*heavy_modules, *watches):
        assert heavy not in loaded, heavy
    assert "hypermesh.node.features.relay" not in loaded


def _configs(tmp_path: Path) -> list[NodeConfig]:
    base = NodeConfig(
        name="n", network="demo", listen="127.0.0.1:0", prefer_port=None, interfaces=("public",),
        roles=("mirror",), tags=(), generation=1, node_dir=str(tmp_path),
        log_file=str(tmp_path / "node.log"),
    )  # fmt: skip
    upstream = Upstream(PeerRef("127.0.0.1:1", "a" * 52))
    return [
        base,
        replace(base, roles=("registry",), web_listen="127.0.0.1:0", chain=False),
        replace(base, registry=upstream, private_listen="127.0.0.1:0"),
        replace(base, roles=("relay",), ephemeral_listen="127.0.0.1:0", relays=(upstream,)),
        replace(base, resolver=ResolverConfig()),
    ]


@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)
def test_each_lazy_predicate_is_the_features_own(feature: LazyFeature, tmp_path: Path) -> None:
    real = feature.load()
    assert real.name == feature.name
    for config in _configs(tmp_path):
        assert feature.enabled(config) == real.enabled(config), (feature.name, config)


def test_the_chain_file_is_the_chain_features() -> None:
    from hypermesh.node.features.chain import CHAIN_DB as FEATURES_CHAIN_DB

    assert CHAIN_DB == FEATURES_CHAIN_DB
