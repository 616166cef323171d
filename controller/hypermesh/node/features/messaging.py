"""Messages between nodes, with receipts on both chains: the mailbox, the messaging key and
the message API. It writes through the chain feature's appender, so it opens after it."""

from __future__ import annotations

import contextlib

from hypermesh.messaging.envelope import load_or_create_message_key
from hypermesh.messaging.inbox import Mailbox
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.message_api import add_message_routes

MESSAGES_DB = "messages.db"
"""Under the node's directory: messages received and sent (its key is ``message.key``)."""


class MessagingFeature:
    """Every node with a chain sends and receives messages."""

    name = "messaging"

    def enabled(self, config: NodeConfig) -> bool:
        return config.chain

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        writer = node.chain_writer
        assert writer is not None, "messaging opens after the chain"
        mailbox = Mailbox.open(node.node_dir / MESSAGES_DB)
        stack.callback(mailbox.close)
        add_message_routes(
            node.router,
            node.identity,
            load_or_create_message_key(node.node_dir),
            mailbox,
            writer.appender,
            ready=writer.ready,
            revocations=node.revocations,
            paths=lambda: node.paths,
        )
