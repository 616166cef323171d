"""QUIC loss recovery with a bounded probe backoff, for every connection of a node.

RFC 9002 doubles the probe timeout (PTO) each time one fires unanswered, and aioquic does so
without bound: a connection whose packets were lost for 40 s next probes 50 s or more later.
A mesh node meets that often. When a NAT drops its mapping (a router's reboot, a flushed table,
a host moved), the packets sent *to* the node are lost until the node sends again, which may be
long; by then its relay, the registry and its peers have backed off so far that the node's next
requests wait for their probe timers, not for the network, and a request's own timeout (or the
connection's idle timeout) ends it first. TCP bounds its retransmission timeout the same way
(``TCP_RTO_MAX``).

``cap_backoff`` keeps a connection's backed-off PTO period at most ``MAX_PTO`` seconds (never
less than one period without backoff): a peer that comes back is probed again within that, at
the cost of a probe every ``MAX_PTO`` seconds to one that does not, until the idle timeout.
"""

from __future__ import annotations

from aioquic.quic.connection import QuicConnection
from aioquic.quic.recovery import QuicPacketRecovery

MAX_PTO = 2.0
"""Seconds a backed-off probe timeout may reach at most."""


class CappedRecovery(QuicPacketRecovery):
    """aioquic's loss recovery whose probe backoff stops doubling at ``MAX_PTO``."""

    def on_loss_detection_timeout(self, *, now: float) -> None:
        super().on_loss_detection_timeout(now=now)
        period = self.get_probe_timeout(include_max_ack_delay=self.handshake_confirmed)
        while self._pto_count > 0 and period * 2**self._pto_count > MAX_PTO:
            self._pto_count -= 1


def cap_backoff(quic: QuicConnection) -> None:
    """Bound ``quic``'s probe backoff (see the module's docstring); what it has sent is kept."""
    loss = quic._loss
    if type(loss) is QuicPacketRecovery:
        loss.__class__ = CappedRecovery
