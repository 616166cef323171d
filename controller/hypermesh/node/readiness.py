"""Whether a node is ready, as its ``/status`` says (``readiness``), and why not.

A node that runs but whose network will not serve it is not ready: while the registry refuses
its mirror (403, 429, or a TLS alert refusing its key) it serves zones it cannot keep current,
and while a peer refuses its chain follower it cannot keep the chains its own links to. The
controller's observe reads this and reports the node ``Ready=False`` with the same reason.
Reachability is not readiness: a registry that is merely down leaves a mirror serving its
copies, stale in time (``docs/mirrors.md``), and Ready.
"""

from __future__ import annotations

from hypermesh.chain.follower import ChainFollower
from hypermesh.mirror.follower import Follower

MIRROR_REFUSED = "MirrorRefused"
"""The registry refuses this node's mirror."""
CHAIN_REFUSED = "ChainPeerRefused"
"""A peer refuses this node's chain follower."""


def readiness(follower: Follower | None, chains: ChainFollower | None) -> dict[str, object]:
    """``{"ready": True}``, or ``{"ready": False, "reason", "message"}`` naming the refusal."""
    if follower is not None and follower.refused:
        return {
            "ready": False,
            "reason": MIRROR_REFUSED,
            "message": f"the registry refuses this node's mirror: {follower.refused}",
        }
    refused = sorted(chains.refused.items()) if chains is not None else []
    if refused:
        _, why = refused[0]
        more = f" (and {len(refused) - 1} more peers)" if len(refused) > 1 else ""
        return {
            "ready": False,
            "reason": CHAIN_REFUSED,
            "message": f"a peer refuses this node's chain follower: {why}{more}",
        }
    return {"ready": True}
