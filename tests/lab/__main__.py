"""``python -m tests.lab``: a lab by hand. Brings up N hosts (``--nat KIND``: behind NAT
routers), prints how to enter each, and keeps them until Ctrl-C (or SIGTERM), then removes
everything. ``--clean`` only sweeps labs left behind by processes that were killed. See
tests/lab/README.md."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from tests.lab.lab import Lab, LabError, sweep
from tests.lab.nat import KINDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    parser.add_argument("-n", "--hosts", type=int, default=3, help="how many hosts (default 3)")
    parser.add_argument("--delay-ms", type=float, default=None, help="one-way delay per link")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="± jitter per link")
    parser.add_argument("--loss", type=float, default=0.0, help="loss per link and direction")
    parser.add_argument(
        "--nat",
        action="append",
        choices=[*KINDS, "public"],
        metavar="KIND",
        help=f"put a host behind NAT: {', '.join(KINDS)} or public; once: every host, "
        "repeated: host 1, host 2, ... in order (the rest public)",
    )
    parser.add_argument("--clean", action="store_true", help="sweep abandoned labs and exit")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m tests.lab: network namespaces need root", file=sys.stderr)
        return 2
    if args.clean:
        removed = sweep()
        print(f"removed {len(removed)} abandoned lab(s): {' '.join(removed) or '-'}")
        return 0
    if not 1 <= args.hosts <= 63:
        parser.error("--hosts: 1 to 63")
    try:
        with Lab(delay_ms=args.delay_ms, jitter_ms=args.jitter_ms, loss=args.loss) as lab:
            kinds = args.nat or ["public"]
            kinds = kinds * args.hosts if len(kinds) == 1 else kinds
            for i in range(1, args.hosts + 1):
                kind = kinds[i - 1] if i <= len(kinds) else "public"
                lab.add_host(f"h{i}", nat=None if kind == "public" else kind)
            for line in lab.describe():
                print(line)
            print("Ctrl-C removes the lab.", flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("\nlab removed")
    except LabError as exc:
        print(f"python -m tests.lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
