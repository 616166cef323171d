"""The operating system resolves HyperMesh names through the stub: a lab host (a network
namespace this test makes) whose resolv.conf names the stub of a node running there with
``spec.resolver`` on 127.0.0.53:53; glibc (``getent hosts``), kdig reading resolv.conf, curl
and Python's ``socket.getaddrinfo`` all get the verified address, and curl reaches a plain
HTTP server there. Root and ``ip`` needed: it fails without them, unless HM_TEST_NETNS=skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypermesh.node.config import NodeConfig, ResolverConfig, Upstream
from hypermesh.resolver import read_status
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import load_or_create_identity
from tests.conftest import skipped_on_request
from tests.harness.netns import Hosts, can_make_namespaces
from tests.harness.nodes import NodeProc, Owner, wait_for

pytestmark = pytest.mark.skipif(
    skipped_on_request("netns"), reason="HM_TEST_NETNS=skip: skipped on request"
)

WEB = "198.18.77.10"
"""The address www.acme names: a plain HTTP server on the lab host's loopback."""
WEB_PORT = 8080
PAGE = "served at www.acme through the verified stub\n"


def start(root: Path, name: str, ns: str, listen: str, **fields: object) -> NodeProc:
    node_dir = root / name
    node_dir.mkdir(parents=True)
    identity = load_or_create_identity(node_dir)
    fields.setdefault("roles", ())
    config = NodeConfig(
        name=name,
        network="acme",
        listen=listen,
        prefer_port=None,
        interfaces=("public",),
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        **fields,  # type: ignore[arg-type]
    )
    (node_dir / "config.json").write_text(config.to_json())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = ["ip", "netns", "exec", ns, sys.executable, "-m", "hypermesh.node"]
    process = subprocess.Popen([*command, "--config", str(node_dir / "config.json")], env=env)
    node = NodeProc(name, node_dir, process, listen, identity.node_id, ns)
    wait_for(lambda: (node_dir / "runtime.json").exists(), timeout=20, what=f"{name} to start")
    return node


def in_host(ns: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *command], capture_output=True, text=True, timeout=30
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, NodeProc]]:
    if not can_make_namespaces():
        pytest.fail("cannot make network namespaces (root and ip needed); HM_TEST_NETNS=skip")
    root = tmp_path_factory.mktemp("lab")
    hosts = Hosts(1)
    ns = hosts.ns(0)
    etc = Path("/etc/netns") / ns
    nodes: list[NodeProc] = []
    web: subprocess.Popen[bytes] | None = None
    try:
        # What `hmctl resolver setup --print resolv.conf` prints, as the host's resolv.conf
        # (`ip netns exec` mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf).
        etc.mkdir(parents=True)
        subprocess.run(
            [sys.executable, "-m", "hypermesh.cli.main", "resolver", "setup",
             "--print", "resolv.conf", "--domain", "acme"],
            stdout=(etc / "resolv.conf").open("w"), check=True, timeout=30,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{WEB}/32", "dev", "lo"], check=True)
        address = hosts.address(0)
        registry = start(root, "registry", ns, f"{address}:5301", roles=("registry",))
        nodes.append(registry)
        upstream = Upstream(PeerRef(registry.address, registry.identity))
        # Upstreams omitted: resolv.conf's, which names only the stub itself, left out.
        alpha = start(
            root, "alpha", ns, f"{address}:5302", registry=upstream, resolver=ResolverConfig()
        )
        nodes.append(alpha)
        owner = Owner(registry)
        owner.register("acme")
        owner.put("acme", "www", WEB)
        pages = root / "www"
        pages.mkdir()
        (pages / "index.html").write_text(PAGE)
        web = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", str(WEB_PORT),
             "--bind", WEB, "--directory", str(pages)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        direct = ["curl", "-s", "--max-time", "2", f"http://{WEB}:{WEB_PORT}/"]
        wait_for(lambda: in_host(ns, *direct).returncode == 0, what="the web server")
        yield ns, alpha
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        for node in nodes:
            node.stop()
        hosts.remove()
        shutil.rmtree(etc, ignore_errors=True)


def test_glibc_kdig_curl_and_getaddrinfo_resolve_through_the_stub(
    lab: tuple[str, NodeProc],
) -> None:
    ns, alpha = lab
    assert (Path("/etc/netns") / ns / "resolv.conf").read_text().startswith("# /etc/resolv.conf")

    def getent() -> str | None:
        done = in_host(ns, "getent", "hosts", "www.acme")
        return done.stdout if done.returncode == 0 else None

    assert wait_for(getent, timeout=30, what="getent hosts www.acme").split() == [WEB, "www.acme"]

    dig = in_host(ns, "kdig", "www.acme", "A", "+adflag", "+timeout=5", "+retry=0")
    assert dig.returncode == 0 and "status: NOERROR" in dig.stdout, dig.stdout + dig.stderr
    assert "127.0.0.53" in dig.stdout and " ad" in dig.stdout and WEB in dig.stdout

    curl = in_host(ns, "curl", "-sS", "--max-time", "10", f"http://www.acme:{WEB_PORT}/")
    assert curl.returncode == 0 and curl.stdout == PAGE, curl.stderr

    code = f"import socket; print(socket.getaddrinfo('www.acme', {WEB_PORT})[0][4][0])"
    python = in_host(ns, sys.executable, "-c", code)
    assert python.returncode == 0 and python.stdout.strip() == WEB, python.stderr

    # A name the registry does not hold, in its zone: NXDOMAIN, proven.
    assert in_host(ns, "getent", "hosts", "nothing.acme").returncode == 2

    # The node's stub kept its status: it read no upstream (resolv.conf names only itself).
    def counted() -> dict[str, object] | None:
        body = read_status(alpha.node_dir / "resolver.json")
        return body if body["counts"]["verified"] >= 4 else None

    status = wait_for(counted, timeout=10, what="the stub's status to count")
    assert status["listen"] == "127.0.0.53:53" and status["upstreams"] == []
    assert status["counts"]["bogus"] == 0
