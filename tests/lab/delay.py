"""A link with latency and jitter, in user space: two TUN devices and a process between them.

The kernel of the test machines has no ``netem`` qdisc, so the lab delays packets itself. This
process opens two TUN devices (``A`` and ``B``, layer 3, no packet information header), prints
``ready`` on standard output, and from then on copies every packet read from one to the other,
each held for ``delay ± jitter`` milliseconds (uniform, never below zero). The lab moves the
devices into the two namespaces the link joins (an open TUN file descriptor keeps working across
``ip link set DEV netns NS``), so the delay applies to each direction separately: a round trip over
one link with ``--delay-ms 25`` takes at least 50 ms.

Order: jitter never reorders a direction's packets unless ``--reorder`` is given; without it a
packet whose drawn delay would release it before the one ahead of it waits for that one (a
jittered FIFO, as a real path mostly is). At most ``--limit`` packets wait per direction; more
are dropped, as a full router queue drops them.

Control: a line ``DELAY JITTER`` (milliseconds) on standard input changes both from the next
packet on. End of standard input (the lab closed, or its process died) ends this process, and
the TUN devices vanish with it: a delay link never outlives its lab.

Usage: ``python -m tests.lab.delay A B --delay-ms 25 [--jitter-ms 5] [--reorder] [--limit N]``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import heapq
import os
import random
import selectors
import struct
import sys
import time
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


def open_tun(name: str) -> int:
    """A new TUN device called ``name`` in this process's namespace; its file descriptor
    (non-blocking). The device lives as long as the descriptor is open."""
    if not name or len(name) > 15:
        raise ValueError(f"TUN device name {name!r}: 1 to 15 characters")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass
class Direction:
    """One way through the link: where its packets go, and when the last one leaves."""

    out: int
    last_due: float = 0.0
    waiting: int = 0


@dataclass
class Link:
    """The two directions, the held packets and the current settings."""

    delay: float
    jitter: float
    reorder: bool
    limit: int
    held: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    seq: int = 0
    dropped: int = 0

    def hold(self, direction: Direction, packet: bytes, now: float) -> None:
        """Queue ``packet`` for ``direction`` with a delay drawn now."""
        if direction.waiting >= self.limit:
            self.dropped += 1
            return
        wait = max(0.0, self.delay + random.uniform(-self.jitter, self.jitter))
        due = now + wait
        if not self.reorder:
            due = max(due, direction.last_due)
        direction.last_due = due
        direction.waiting += 1
        self.seq += 1
        heapq.heappush(self.held, (due, self.seq, direction.out, packet))

    def release(self, now: float, directions: dict[int, Direction]) -> float | None:
        """Write every packet that is due; seconds until the next one (None: none held)."""
        while self.held and self.held[0][0] <= now:
            _, _, out, packet = heapq.heappop(self.held)
            directions[out].waiting -= 1
            try:
                os.write(out, packet)
            except OSError:
                self.dropped += 1  # the device is down (a cut link) or full: the packet is lost
        return max(0.0, self.held[0][0] - now) if self.held else None


def _settings(line: str) -> tuple[float, float] | None:
    parts = line.split()
    try:
        delay, jitter = float(parts[0]) / 1000, float(parts[1]) / 1000
    except (IndexError, ValueError):
        print(f"delay: ignored control line {line.strip()!r} (want: DELAY JITTER)", file=sys.stderr)
        return None
    return max(0.0, delay), max(0.0, jitter)


def run(a: int, b: int, link: Link) -> None:
    """Forward between the TUN descriptors ``a`` and ``b`` until standard input closes."""
    selector = selectors.DefaultSelector()
    towards = {a: Direction(out=b), b: Direction(out=a)}
    by_out = {d.out: d for d in towards.values()}
    selector.register(a, selectors.EVENT_READ)
    selector.register(b, selectors.EVENT_READ)
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    timeout: float | None = None
    while True:
        for key, _ in selector.select(timeout):
            if key.fd == sys.stdin.fileno():
                line = sys.stdin.readline()
                if not line:
                    return
                changed = _settings(line)
                if changed is not None:
                    link.delay, link.jitter = changed
                continue
            now = time.monotonic()
            for _ in range(256):  # drain what is there, bounded so the other side gets a turn
                try:
                    packet = os.read(key.fd, MAX_PACKET)
                except BlockingIOError:
                    break
                except OSError:
                    break  # the device went down; packets resume when it is up again
                link.hold(towards[key.fd], packet, now)
        timeout = link.release(time.monotonic(), by_out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.delay", description=__doc__)
    parser.add_argument("a", help="name of the first TUN device to create")
    parser.add_argument("b", help="name of the second TUN device to create")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay (ms)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± this, uniform (ms)")
    parser.add_argument("--reorder", action="store_true", help="let jitter reorder packets")
    parser.add_argument("--limit", type=int, default=10000, help="packets held per direction")
    args = parser.parse_args(argv)
    a, b = open_tun(args.a), open_tun(args.b)
    link = Link(
        delay=max(0.0, args.delay_ms) / 1000,
        jitter=max(0.0, args.jitter_ms) / 1000,
        reorder=args.reorder,
        limit=max(1, args.limit),
    )
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        run(a, b, link)
    return 0


if __name__ == "__main__":
    sys.exit(main())
