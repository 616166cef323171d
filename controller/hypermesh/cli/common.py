"""What every hmctl command shares: durations, the state directory, the host it runs for and
its join token, "nothing declared", a node named by address and key."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from hypermesh.errors import Position, Problem, UsageError
from hypermesh.policy import parse_duration
from hypermesh.transport.address import PeerRef


def duration(text: str) -> float:
    """``90``, ``90s``, ``1m30s``, ``500ms`` → seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def state_dir(args: argparse.Namespace) -> Path:
    raw = args.state or os.environ.get("HM_STATE") or ".hypermesh"
    return Path(raw).expanduser().resolve()


_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_TOKEN = 512
"""A join token is about 70 characters; a file longer than this holds none."""


def host_of(args: argparse.Namespace) -> str | None:
    """The host this controller runs for: ``--host``, else ``$HM_HOST``, else None (every
    Node without ``spec.host`` is local); ``UsageError`` unless it is a DNS label."""
    host = getattr(args, "host", None) or os.environ.get("HM_HOST") or None
    if host is not None and not _LABEL.match(host):
        raise UsageError(
            f"--host / $HM_HOST must be a DNS label (a-z, 0-9, '-', at most 63): {host[:80]!r}"
        )
    return host


def join_token_of(args: argparse.Namespace) -> str | None:
    """The join token: the first line of ``--join-token-file``, else ``$HM_JOIN_TOKEN``; None
    without either. Errors name the file, never the token."""
    path = getattr(args, "join_token_file", None)
    if path:
        try:
            with Path(path).open("rb") as handle:
                raw = handle.read(MAX_TOKEN + 1)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the join token: {exc.strerror}") from None
        text = raw.decode("utf-8", "replace").strip()
        if not text or len(raw) > MAX_TOKEN or "\n" in text or not text.isprintable():
            raise UsageError(f"{path}: not a join token (one line, hmjoin-…)")
        return text
    token = os.environ.get("HM_JOIN_TOKEN", "").strip()
    if token and (len(token) > MAX_TOKEN or not token.isprintable()):
        raise UsageError("$HM_JOIN_TOKEN is not a join token (one line, hmjoin-…)")
    return token or None


def nothing_declared(files: list[str]) -> list[Problem]:
    return [
        Problem(Position(file), "no resources found (empty, or only comments)")
        for file in files or ["<input>"]
    ]


def peer_ref(address: str, node_id: str | None) -> PeerRef:
    """The node at ``address`` whose key is ``node_id`` (None: any key); ``UsageError``
    naming what is wrong with a bad address."""
    try:
        return PeerRef(address, node_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
