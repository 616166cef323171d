"""``spec.resolver`` through the controller: ``hmctl apply`` starts a node whose stub answers a
HyperMesh name with AD, and observing the running node again (a second apply, ``get``) works
with the resolver in its config (the driver compares only the fields other resources derive)."""

from __future__ import annotations

import json
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode

from tests.conftest import Hmctl
from tests.harness.nodes import wait_for
from tests.harness.proc import free_udp_port

NETWORK = """\
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {{name: acme}}
spec: {{mode: private, registry: {{node: registry}}}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {{name: registry}}
spec: {{network: acme, listen: "127.0.0.1:0", roles: [registry]}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {{name: alpha}}
spec:
  network: acme
  listen: "127.0.0.1:0"
  resolver: {{listen: "127.0.0.1:{port}", forward: false}}
---
apiVersion: hypermesh.online/v1alpha1
kind: TLD
metadata: {{name: acme}}
spec: {{network: acme, owner: {{node: registry}}, dnssec: true}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Record
metadata: {{name: api.acme}}
spec: {{tld: acme, type: A, ttl: 300, values: [192.0.2.10]}}
"""


def test_a_node_with_a_resolver_is_applied_observed_and_answers(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    port = free_udp_port()
    path = tmp_path / "network.yaml"
    path.write_text(NETWORK.format(port=port))
    result = hmctl("apply", "-f", str(path), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr

    def answered() -> dns.message.Message | None:
        query = dns.message.make_query("api.acme.", "A", want_dnssec=True)
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
        except (OSError, dns.exception.Timeout):
            return None
        return reply if reply.rcode() == dns.rcode.NOERROR and reply.answer else None

    reply = wait_for(answered, timeout=30, what="the stub answering api.acme")
    assert reply.flags & dns.flags.AD
    assert "192.0.2.10" in reply.answer[0].to_text()
    again = hmctl("apply", "-f", str(path), "--timeout", "60s")
    assert again.returncode == 0, again.stdout + again.stderr
    listed = json.loads(hmctl("get", "nodes", "-o", "json").stdout)
    ready = {
        item["metadata"]["name"]: {c["type"]: c["status"] for c in item["status"]["conditions"]}
        for item in listed["items"]
    }
    assert ready["alpha"]["Ready"] == "True", listed
