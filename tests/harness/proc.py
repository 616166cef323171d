"""What the tests and benchmarks read about processes and ports on this machine."""

from __future__ import annotations

import os
import socket
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` (all its threads) has used so far: from
    ``/proc/PID/task/*/schedstat`` (nanoseconds), else user + system of ``/proc/PID/stat``
    (clock ticks); ``OSError`` when there is no such process."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def proc_mib(pid: int, file: str, name: str) -> float | None:
    """A ``kB`` figure of ``/proc/PID/FILE`` (``status`` VmRSS, ``smaps_rollup`` Pss…), in
    MiB; None when the process or the figure is not there."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_udp_port() -> int:
    """A UDP port nothing listens on (for now): for a fixed listen or a dead address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
