"""Small UDP tools to look at a lab's links from inside its hosts (no ``ping`` needed).

``python -m tests.lab.probe echo PORT``: echo every datagram back (prints ``ready`` first).
``python -m tests.lab.probe count PORT [--idle S]``: count datagrams until ``--idle`` seconds
pass without one (after the first, or from the start), print the count.
``python -m tests.lab.probe send HOST PORT N``: send N numbered datagrams, paced.
``python -m tests.lab.probe ask HOST PORT [--tries N]``: one echo round trip; prints the RTT in
ms, exit 1 when no answer came.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

BURST = 50
"""Datagrams sent back to back before a short pause (so no socket buffer overflows: the
losses counted are the link's)."""


def echo(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        print("ready", flush=True)
        while True:
            data, peer = sock.recvfrom(65536)
            sock.sendto(data, peer)


def count(port: int, idle: float, ready: bool = True) -> int:
    """Datagrams received on ``port`` until ``idle`` seconds pass without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind(("0.0.0.0", port))
        if ready:
            print("ready", flush=True)
        sock.settimeout(idle)
        seen: set[bytes] = set()
        while True:
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                return len(seen)
            seen.add(data[:8])


def send(host: str, port: int, n: int) -> None:
    """``n`` datagrams numbered 0..n-1 to ``host:port``, in bursts of ``BURST``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(n):
            sock.sendto(i.to_bytes(8, "big") + b"lab" * 10, (host, port))
            if i % BURST == BURST - 1:
                time.sleep(0.005)


def ask(host: str, port: int, timeout: float = 2.0) -> float | None:
    """One echo round trip to ``host:port``: its RTT in milliseconds, None without answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        token = time.monotonic_ns().to_bytes(8, "big")
        start = time.monotonic()
        sock.sendto(token, (host, port))
        deadline = start + timeout
        while True:
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                return None
            if data == token:
                return (time.monotonic() - start) * 1000
            sock.settimeout(max(0.001, deadline - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.probe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("echo").add_argument("port", type=int)
    counting = sub.add_parser("count")
    counting.add_argument("port", type=int)
    counting.add_argument("--idle", type=float, default=2.0)
    sending = sub.add_parser("send")
    asking = sub.add_parser("ask")
    for p in (sending, asking):
        p.add_argument("host")
        p.add_argument("port", type=int)
    sending.add_argument("n", type=int)
    asking.add_argument("--tries", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "echo":
        echo(args.port)
    elif args.command == "count":
        print(count(args.port, args.idle), flush=True)
    elif args.command == "send":
        send(args.host, args.port, args.n)
    else:
        for _ in range(max(1, args.tries)):
            rtt = ask(args.host, args.port)
            if rtt is not None:
                print(f"{rtt:.3f}")
                return 0
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
