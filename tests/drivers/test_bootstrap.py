"""The public network's bootstrap data: shipped in the package, replaced by ``$HM_BOOTSTRAP``,
and a bad file refused with its name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypermesh.drivers.bootstrap import BootstrapError, load_bootstrap
from hypermesh.transport.identity import is_node_id

STAND_IN = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"


def test_the_package_ships_the_public_registry() -> None:
    shipped = load_bootstrap({})
    assert shipped.endpoint == "dns.hypermesh.online:443"
    assert is_node_id(shipped.identity)
    assert shipped.registry() == {"endpoint": shipped.endpoint, "identity": shipped.identity}


def test_hm_bootstrap_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps({"registry": {"endpoint": "198.18.0.2:4433", "identity": STAND_IN}}))
    found = load_bootstrap({"HM_BOOTSTRAP": str(path)})
    assert (found.endpoint, found.identity) == ("198.18.0.2:4433", STAND_IN)
    assert str(path) in found.source


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{not json", "not JSON"),
        (b'{"registry": "x"}', 'expected {"registry"'),
        (json.dumps({"registry": {"endpoint": "nowhere", "identity": STAND_IN}}), "host:port"),
        (json.dumps({"registry": {"endpoint": "h:1", "identity": "hm1short"}}), "node ID"),
        (b"x" * 70_000, "not a bootstrap file"),
    ],
)
def test_a_bad_bootstrap_file_is_refused_by_name(
    tmp_path: Path, content: bytes | str, words: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(BootstrapError) as caught:
        load_bootstrap({"HM_BOOTSTRAP": str(path)})
    assert str(path) in str(caught.value) and "$HM_BOOTSTRAP" in str(caught.value)
    assert words in str(caught.value)


def test_a_missing_bootstrap_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(BootstrapError, match="cannot read the bootstrap file"):
        load_bootstrap({"HM_BOOTSTRAP": str(tmp_path / "absent.json")})
