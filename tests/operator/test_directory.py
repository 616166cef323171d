"""The two node directories answer alike for the same nodes: the standalone one from a real
node process's folder (its lock, runtime file and key), the Kubernetes one from the Node status
the operator writes and the identity Secret it makes (served by a stand-in for the API's GET:
there is no API server here)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypermesh.drivers import NodeDirectory, StandaloneDirectory
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import KEY_FILE, load_identity
from hypermesh_operator import children
from hypermesh_operator.directory import Keys, KubeDirectory, pem_of
from hypermesh_operator.kube import Connection, Kube, path_of
from tests.harness.nodes import NodeProc, start_node

NS = "demo"


class SecretsOnly(Kube):
    """Answers GETs of the identity Secrets given; counts them."""

    def __init__(self, secrets: dict[str, dict[str, Any]]) -> None:
        super().__init__(Connection("http://127.0.0.1:9"))
        self.secrets = secrets
        self.gets = 0

    async def get(self, path: str) -> dict[str, Any] | None:
        self.gets += 1
        return self.secrets.get(path)


@pytest.fixture(scope="module")
def alpha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    state = tmp_path_factory.mktemp("state")
    node = start_node(state / "nodes", "alpha")
    try:
        yield node
    finally:
        node.stop()


def standalone(node: NodeProc) -> NodeDirectory:
    return StandaloneDirectory(node.node_dir.parent.parent)


def kubernetes(node: NodeProc) -> NodeDirectory:
    identity = load_identity(node.node_dir / KEY_FILE)
    owner = children.Owner("alpha", NS, "uid-alpha")
    secret = children.identity_secret(owner, pem_of(identity), identity.node_id)
    path = path_of("v1", "secrets", NS, str(secret["metadata"]["name"]))
    status = {"alpha": {"identity": node.identity, "address": node.address}}
    return KubeDirectory(NS, status, Keys(SecretsOnly({path: secret})))


@pytest.mark.parametrize("make", [standalone, kubernetes], ids=["standalone", "kubernetes"])
def test_both_directories_answer_alike(make: Any, alpha: NodeProc) -> None:
    directory: NodeDirectory = make(alpha)
    namespace = "" if isinstance(directory, StandaloneDirectory) else NS

    async def answers() -> None:
        assert await directory.locate("alpha", namespace) == PeerRef(alpha.address, alpha.identity)
        assert await directory.locate("alpha", namespace, "private") is None  # not served
        assert await directory.locate("nobody", namespace) is None
        assert await directory.node_id("alpha", namespace) == alpha.identity
        assert await directory.node_id("nobody", namespace) is None
        signer = await directory.signer("alpha", namespace)
        assert signer is not None and signer.node_id == alpha.identity
        assert await directory.signer("nobody", namespace) is None
        held = await directory.key_for(alpha.identity, namespace)
        assert held is not None and held.node_id == alpha.identity
        assert await directory.key_for("hm1" + "a" * 52, namespace) is None

    asyncio.run(answers())


def test_the_kubernetes_directory_reads_a_key_once(alpha: NodeProc) -> None:
    directory = kubernetes(alpha)
    assert isinstance(directory, KubeDirectory)
    kube = directory.keys.kube
    assert isinstance(kube, SecretsOnly)

    async def sign_often() -> None:
        for _ in range(5):
            assert await directory.signer("alpha", NS) is not None

    asyncio.run(sign_often())
    assert kube.gets == 1  # a Secret is immutable: read once, kept in memory


def test_a_stopped_node_is_not_located(tmp_path: Path) -> None:
    node = start_node(tmp_path / "nodes", "beta")
    node.stop()
    directory = StandaloneDirectory(tmp_path)
    assert asyncio.run(directory.locate("beta", "")) is None  # its runtime file is stale
    assert asyncio.run(directory.node_id("beta", "")) == node.identity
