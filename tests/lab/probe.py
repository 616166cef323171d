"""Small UDP tools to look at a lab's links from inside its hosts (no ``ping`` needed).

``python -m tests.lab.probe echo PORT``: echo every datagram back (prints ``ready`` first).
``python -m tests.lab.probe count PORT [--idle S]``: count datagrams until ``--idle`` seconds
pass without one (after the first, or from the start), print the count.
``python -m tests.lab.probe send HOST PORT N``: send N numbered datagrams, paced.
``python -m tests.lab.probe ask HOST PORT [--tries N]``: one echo round trip; prints the RTT in
ms, exit 1 when no answer came.
``python -m tests.lab.probe reflect PORT``: answer every UDP datagram, and every TCP connection,
on PORT with the address it came from, ``IP:PORT`` (a STUN server in one line; behind NAT, the
mapping). Prints ``ready`` first.
``python -m tests.lab.probe agent [PORT]``: one UDP socket (PORT, or any), driven by lines on
standard input, one answer line each (see ``agent``): what a test needs to look at a NAT from
inside with plain sockets.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
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


def reflect(port: int) -> None:
    """Answer each datagram and each TCP connection on ``port`` with its source ``IP:PORT``."""
    listener = socket.create_server(("0.0.0.0", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, listener:
        sock.bind(("0.0.0.0", port))
        threading.Thread(target=_reflect_tcp, args=(listener,), daemon=True).start()
        print("ready", flush=True)
        while True:
            _, (ip, source) = sock.recvfrom(65536)
            sock.sendto(f"{ip}:{source}".encode(), (ip, source))


def _reflect_tcp(listener: socket.socket) -> None:
    while True:
        connection, (ip, source) = listener.accept()
        with connection:
            connection.sendall(f"{ip}:{source}".encode())


MAX_WAIT = 30.0
"""The longest an agent command waits (seconds), whatever it is asked."""


def agent(port: int) -> None:
    """One UDP socket bound to ``port`` (0: any), driven by commands on standard input, one
    line of answer each on standard output (``none`` when nothing came in time):

    - ``send IP PORT TEXT`` → ``sent``;
    - ``recv SECONDS`` → ``got IP:PORT TEXT``: the first datagram within SECONDS;
    - ``ask IP PORT SECONDS`` → ``got IP:PORT TEXT``: sends ``?``, then the first datagram from
      IP:PORT (others are dropped) — with a reflector, the address the socket is seen from;
    - ``punch IP PORT SECONDS`` → ``got IP:PORT TEXT``: sends ``punch`` every 50 ms until a
      datagram from IP:PORT came and three more were sent (a simultaneous open, when the
      other side does the same);
    - ``tcp IP PORT`` → ``got TEXT``: a TCP connection (3 s at most) and what it says first.

    Starts by printing ``ready PORT`` (the bound port). Ends at the end of its input."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        print(f"ready {sock.getsockname()[1]}", flush=True)
        for line in sys.stdin:
            words = line.strip().split(maxsplit=3)
            try:
                answer = _command(sock, words)
            except (OSError, ValueError, IndexError) as exc:
                answer = f"error {type(exc).__name__}: {exc}"
            print(answer, flush=True)


def _command(sock: socket.socket, words: list[str]) -> str:
    """One agent command (see ``agent``): its answer line."""
    verb = words[0] if words else ""
    if verb == "send":
        sock.sendto(words[3].encode() if len(words) > 3 else b"", (words[1], int(words[2])))
        return "sent"
    if verb == "recv":
        return _receive(sock, float(words[1]), None)
    if verb == "ask":
        peer = (words[1], int(words[2]))
        sock.sendto(b"?", peer)
        return _receive(sock, float(words[3]), peer)
    if verb == "punch":
        return _punch(sock, (words[1], int(words[2])), float(words[3]))
    if verb == "tcp":
        with socket.create_connection((words[1], int(words[2])), timeout=3) as connection:
            return f"got {connection.recv(200).decode(errors='replace')}"
    shown = " ".join(words)[:80]
    raise ValueError(f"unknown command {shown!r}: send, recv, ask, punch or tcp")


def _receive(sock: socket.socket, seconds: float, peer: tuple[str, int] | None) -> str:
    """The first datagram (from ``peer`` only, when given) within ``seconds``, as an answer."""
    deadline = time.monotonic() + min(max(seconds, 0.0), MAX_WAIT)
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, source = sock.recvfrom(65536)
        except TimeoutError:
            break
        if peer is None or source == peer:
            return f"got {source[0]}:{source[1]} {data.decode(errors='replace')}"
    return "none"


def _punch(sock: socket.socket, peer: tuple[str, int], seconds: float) -> str:
    """Send to ``peer`` every 50 ms until it answered and three more went, within ``seconds``."""
    deadline = time.monotonic() + min(max(seconds, 0.0), MAX_WAIT)
    answer, after = "none", 0
    while time.monotonic() < deadline and after < 3:
        sent = time.monotonic()
        sock.sendto(b"punch", peer)
        after += answer != "none"
        heard = _receive(sock, 0.05, peer)
        answer = heard if answer == "none" else answer
        time.sleep(max(0.0, sent + 0.05 - time.monotonic()))
    return answer


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
    sub.add_parser("reflect").add_argument("port", type=int)
    sub.add_parser("agent").add_argument("port", type=int, nargs="?", default=0)
    args = parser.parse_args(argv)
    if args.command == "echo":
        echo(args.port)
    elif args.command == "reflect":
        reflect(args.port)
    elif args.command == "agent":
        agent(args.port)
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
