"""Messages between nodes that no direct path joins (issue 17: every node reachable from every
other): a node behind a symmetric NAT sends to one behind a port-restricted NAT (the matrix's
relayed pair: ``test_paths_matrix.py``) and a node with no UDP at all sends to the symmetric
one, each naming the recipient by node ID only. The sender finds the recipient in the node
directory and delivers over its paths, through the relay; the recipient's inbox holds the
text, both chains hold the receipts, and the sender's paths say the link is relayed.

One network (registry, relay, ``symmetric``, ``port-restricted``, ``udp-blocked``, chains on
for the three); about 20 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import require_lab
from tests.lab.paths_net import PathsNet, published_net

SENDERS = {"symmetric": "port-restricted", "udp-blocked": "symmetric"}
"""Who sends to whom: two pairs that only the relay joins (over UDP, and over TCP)."""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PathsNet]:
    require_lab()
    kinds = ("symmetric", "port-restricted", "udp-blocked")
    with published_net(
        tmp_path_factory.mktemp("messages"),
        Path("/tmp/hm-messages-nat-logs"),
        timeout=40,
        kinds=kinds,
        chains=kinds,
    ) as made:
        yield made


def test_a_message_by_node_id_reaches_a_node_behind_a_nat_through_the_relay(
    net: PathsNet,
) -> None:
    for sender, recipient in SENDERS.items():
        text = f"from {sender} to {recipient}"
        to = net.members[recipient].node_id
        sent = net.call(sender, {"op": "send", "to": to, "text": text, "timeout": 60}, timeout=70)
        assert sent.get("status") == 201, f"{sender} → {recipient}: {sent}\n{net.tail(sender)}"
        assert sent["answer"]["receipt"]["author"], sent  # the recipient's receipt block
        link = net.peer(sender, recipient)
        assert link is not None and link["path"] == "relayed", link
        inbox = net.call(recipient, {"op": "inbox"})
        assert inbox.get("status") == 200, inbox
        texts = [m["text"] for m in inbox["answer"]["messages"]]
        assert text in texts, (recipient, texts)
