"""``hmctl dns query --verify`` on a host that does not run the registry (on loopback): the key
answers are checked from is the remote registry Node's pinned identity, or for a public
Network without a registry the bootstrap registry's key (``$HM_BOOTSTRAP``) — no
``--registry-id`` needed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import HEADER, Hmctl, wait_for
from tests.harness.proc import free_udp_port


def network(mode: str, registry: str) -> str:
    return f"{HEADER}kind: Network\nmetadata: {{name: acme}}\nspec: {{mode: {mode}{registry}}}\n"


def node(name: str, host: str, role: str, listen: str, identity: str | None = None) -> str:
    pinned = f", identity: {identity}" if identity else ""
    return (
        f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\n"
        f'spec: {{network: acme, host: {host}, roles: [{role}], listen: "{listen}"{pinned}}}\n'
    )


def tld(owner: str) -> str:
    return (
        f"{HEADER}kind: TLD\nmetadata: {{name: acmeshop}}\n"
        f"spec: {{network: acme, owner: {{node: {owner}}}}}\n---\n"
        f"{HEADER}kind: Record\nmetadata: {{name: www.acmeshop}}\n"
        "spec: {tld: acmeshop, type: A, values: [192.0.2.7]}\n"
    )


def verified(host: Hmctl, via: str) -> dict[str, object] | None:
    done = host("dns", "query", "www.acmeshop", "A", "--verify", "--via", via, "-o", "json")
    answer = json.loads(done.stdout) if done.returncode == 0 else {}
    return answer if answer.get("verified") and answer.get("answer") else None


def test_verified_from_the_pinned_key_of_a_registry_on_another_host(
    hosts: tuple[Hmctl, Hmctl], tmp_path: Path
) -> None:
    a, b = hosts
    registry_id = a("keys", "show", "registry").stdout.strip()
    beta_id = b("keys", "show", "beta").stdout.strip()
    files = [
        network("private", ", registry: {node: registry}"),
        node("registry", "a", "registry", f"127.0.0.1:{free_udp_port()}", registry_id),
        node("alpha", "a", "mirror", "127.0.0.1:0"),
        node("beta", "b", "mirror", "127.0.0.1:0", beta_id),
        tld("alpha"),
    ]
    path = tmp_path / "acme.yaml"
    path.write_text("---\n".join(files))
    for host, name in ((a, "a"), (b, "b")):
        done = host("apply", "-f", str(path), "--host", name, "--timeout", "60s")
        assert done.returncode == 0, done.stdout + done.stderr
    answer = wait_for(lambda: verified(b, "beta"), timeout=45)
    assert isinstance(answer, dict) and registry_id[:12] in str(answer["verification"])


def test_verified_from_the_bootstrap_key_in_a_public_network(
    hosts: tuple[Hmctl, Hmctl], tmp_path: Path
) -> None:
    a, b = hosts
    registry_id, port = a("keys", "show", "registry").stdout.strip(), free_udp_port()
    on_a = tmp_path / "a.yaml"
    on_a.write_text(
        "---\n".join(
            [
                network("public", ", registry: {node: registry}"),
                node("registry", "a", "registry", f"127.0.0.1:{port}", registry_id),
            ]
        )
    )
    on_b = tmp_path / "b.yaml"
    on_b.write_text(
        "---\n".join(
            [network("public", ""), node("home", "b", "mirror", "127.0.0.1:0"), tld("home")]
        )
    )
    bootstrap = tmp_path / "bootstrap.json"
    endpoint = f"127.0.0.1:{port}"
    bootstrap.write_text(json.dumps({"registry": {"endpoint": endpoint, "identity": registry_id}}))
    b.env["HM_BOOTSTRAP"] = str(bootstrap)
    for host, name, path in ((a, "a", on_a), (b, "b", on_b)):
        done = host("apply", "-f", str(path), "--host", name, "--timeout", "60s")
        assert done.returncode == 0, done.stdout + done.stderr
    answer = wait_for(lambda: verified(b, "home"), timeout=45)
    assert isinstance(answer, dict) and registry_id[:12] in str(answer["verification"])
