"""qh3 (an aioquic fork with a Rust core) against stock aioquic as a DoQ server: the server's
CPU per query on the DoQ rows of ``bench/dns_qps.py``, measured side by side in one run.

Both servers are the same minimal DoQ server, one fixed answer per finished stream, with the
same Ed25519 certificate; the only difference is the QUIC implementation. The node's own
endpoint (``node``, aioquic) is measured beside them. The client is this process (aioquic),
the rows and the measurement are ``bench/dns_qps.py``'s (``doq-1``, ``doq-64``, ``doq-new``).

A server whose rows do not finish within ``--timeout`` (qh3 2.1.0 stops answering new
connections after a few dozen, "packet builder capacity exhausted") is reported and left out
of the later rounds. It also checks what the node's private interface needs of a QUIC
server: asking the client for its certificate (TLS CertificateRequest). Needs ``qh3``
installed, which the project does not depend on (``pip install qh3`` into a scratch
environment for the evaluation)::

    .venv/bin/python bench/qh3_eval.py --queries 3000 --new-queries 400 --repeat 3

The decision and its figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
from typing import Any

from cryptography.hazmat.primitives import serialization

import dns_qps
from hypermesh.dns import DnsEngine, StaticZones
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.identity import Identity
from hypermesh.transport.udp import tune_datagram_transport


def client_certificates_requestable() -> str:
    """Whether a qh3 server can ask the client for its certificate, read from its TLS code:
    a server that can has a state waiting for the client's Certificate (aioquic has
    ``SERVER_EXPECT_CERTIFICATE``) and a way to send a CertificateRequest."""
    import qh3.tls
    from aioquic import tls as aioquic_tls

    def can(module: Any) -> bool:
        return hasattr(module.State, "SERVER_EXPECT_CERTIFICATE") and hasattr(
            module, "push_certificate_request"
        )

    return f"aioquic {can(aioquic_tls)}, qh3 {can(qh3.tls)}"


async def serve_qh3() -> None:
    from qh3.asyncio.protocol import QuicConnectionProtocol
    from qh3.asyncio.server import QuicServer
    from qh3.quic.configuration import QuicConfiguration
    from qh3.quic.events import QuicEvent, StreamDataReceived

    answer = DnsEngine(StaticZones([dns_qps.bench_zone()])).answer(dns_qps.query_wire())
    assert answer is not None
    framed = len(answer).to_bytes(2, "big") + answer

    class Floor(QuicConnectionProtocol):  # type: ignore[misc]
        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, StreamDataReceived) and event.end_stream:
                self._quic.send_stream_data(event.stream_id, framed, end_stream=True)

    identity = Identity.generate()
    certificate = self_signed_certificate(identity).public_bytes(serialization.Encoding.PEM)
    key = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    configuration = QuicConfiguration(is_client=False, alpn_protocols=["doq"])
    configuration.load_cert_chain(certificate, key)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=configuration, create_protocol=Floor),
        local_addr=("127.0.0.1", 0),
    )
    tune_datagram_transport(transport)
    await dns_qps.answer_counts(transport)


class Qh3Server(dns_qps.Server):
    def __init__(self) -> None:
        self.mode = "qh3"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-qh3"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-qh3", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--new-queries", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120, help="seconds a server's rows get")
    args = parser.parse_args()
    if args.serve_qh3:
        asyncio.run(serve_qh3())
        return 0
    import qh3

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, qh3 {qh3.__version__}")
    print(f"a server can request client certificates: {client_certificates_requestable()}")
    servers: list[dns_qps.Server] = []
    failed: dict[str, str] = {}
    try:
        servers = [dns_qps.Server("floor"), Qh3Server(), dns_qps.Server("node")]
        for round_ in range(args.repeat):
            print(f"round {round_ + 1} of {args.repeat}", file=sys.stderr, flush=True)
            for server in servers:
                if server.mode in failed:
                    continue
                rows = dns_qps.run_rows(server, args.queries, "doq", args.new_queries)
                try:
                    asyncio.run(asyncio.wait_for(rows, args.timeout))
                except TimeoutError:  # rows measured before it are kept
                    failed[server.mode] = f"a row did not finish within {args.timeout:g} s"
    finally:
        for server in servers:
            server.close()
    dns_qps.report()
    for mode, why in failed.items():
        print(f"{mode}: {why} (its rows after that are missing)")
    for label in ("doq-1", "doq-64", "doq-new"):
        qh3_runs, floor = dns_qps.RESULTS.get(("qh3", label)), dns_qps.RESULTS.get(("floor", label))
        if qh3_runs and floor:
            ratio = statistics.median(r.cpu_us for r in qh3_runs) / statistics.median(
                r.cpu_us for r in floor
            )
            print(f"qh3 CPU/query against stock aioquic, {label}: {ratio:.2f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
