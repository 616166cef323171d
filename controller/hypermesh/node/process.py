"""The node process: ``python -m hypermesh.node --config PATH``.

Start-up order: read the config (exit 2 when bad), take the node lock (exit 3 when another
process holds it), load or create the identity, open the node's features (``node.features``:
its registry or mirror, chain, messaging, DNS, metrics, its QUIC interfaces, …, in that order,
each on one exit stack, and each feature's module imported only then), publish
``runtime.json``. SIGHUP then reads the config again and takes what a running node can (the
network's members and policies: ``node.reload``), or refuses it and keeps the config it runs;
with ``watch_config`` (a node in a pod) so does a change of the file's content, which the node
watches (inotify on its event loop, ``node.filewatch``, imported only then).
SIGTERM or SIGINT closes the features in the reverse order (the interfaces before the
databases), withdraws ``runtime.json`` and releases the lock, in that order, and exits 0. Any
other failure to start exits 1 with one line on stderr (which the controller appends to the
node's log).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hypermesh import __version__
from hypermesh.errors import HyperMeshError
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import Feature, NodeContext
from hypermesh.node.features import FEATURES
from hypermesh.node.lockfile import AlreadyRunning, NodeLock
from hypermesh.node.logs import log_to_file
from hypermesh.node.reload import config_digest, fields_of, restart_needs
from hypermesh.node.rotation import finish_rotation
from hypermesh.node.runtime import remove_runtime, write_runtime
from hypermesh.transport.identity import NEW_KEY_MARK, Identity, load_or_create_identity

log = logging.getLogger("hypermesh.node")

CHAIN_DB = "chain.db"
"""The node's chain (``features.chain``, not imported here: a node loads only its features)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
EXIT_ALREADY_RUNNING = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run a node until SIGTERM/SIGINT; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m hypermesh.node", description="Run one HyperMesh node."
    )
    parser.add_argument("--config", required=True, type=Path, help="the node's JSON config")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_quietly)  # until the event loop takes over
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload before the node serves: nothing

    try:
        text = args.config.read_text(encoding="utf-8")
        config = NodeConfig.from_json(text)
    except (OSError, ValueError) as exc:
        return _fail(f"bad config {args.config}: {exc}", EXIT_BAD_CONFIG)

    node_dir = Path(config.node_dir)
    try:
        lock = NodeLock.acquire(node_dir)
    except AlreadyRunning as exc:
        return _fail(f"node {config.name} already running (pid {exc.pid})", EXIT_ALREADY_RUNNING)
    except OSError as exc:
        return _fail(f"node {config.name}: cannot lock {node_dir}: {exc}", EXIT_FAILED)

    try:
        log_to_file(Path(config.log_file), config.log_level)
        remove_runtime(node_dir)  # left behind by a process that died; it is not ours
        if finish_rotation(node_dir, CHAIN_DB):
            log.info("key rotated", extra={"node": config.name})
        identity = load_or_create_identity(node_dir)
        new_key = (node_dir / NEW_KEY_MARK).exists()  # made here or by the controller, unused
        with contextlib.suppress(OSError):
            (node_dir / NEW_KEY_MARK).unlink()
        reload = ConfigFile(args.config, config_digest(text))
        return asyncio.run(serve(config, identity, reload=reload, new_key=new_key))
    except (HyperMeshError, OSError) as exc:
        log.error("node failed", extra={"node": config.name, "error": str(exc)})
        return _fail(f"node {config.name}: {exc}", EXIT_FAILED)
    finally:
        remove_runtime(node_dir)
        lock.release()


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """Where the node's config was read, and the digest of what was read."""

    path: Path
    digest: str


async def serve(
    config: NodeConfig,
    identity: Identity,
    features: Sequence[Feature] = FEATURES,
    *,
    reload: ConfigFile | None = None,
    new_key: bool = False,
) -> int:
    """Open the ``features`` the config asks for, in order, publish ``runtime.json`` and serve
    until SIGTERM or SIGINT; then close them in the reverse order and withdraw the file. A
    feature that fails to open closes the ones opened before it and fails the start. With
    ``reload``, SIGHUP reads that file again once the node serves (``reload_config``), and so
    does a change of its content with ``watch_config`` (``watch_config_file``). ``new_key``:
    no node started with this key before (``NodeContext.new_key``)."""
    stop = _stop_on_signals()
    node = NodeContext.starting(config, identity)
    node.new_key = new_key
    opened: list[str] = []
    if reload is not None:
        node.config_digest = reload.digest
    try:
        async with contextlib.AsyncExitStack() as stack:
            for feature in features:
                if feature.enabled(config):
                    await feature.open(node, stack)
                    opened.append(feature.name)
            if reload is not None:
                _reload_on_change(node, reload.path, stack)
            _started(node, opened)
            await stop.wait()
            log.info("node stopping", extra={"node": config.name})
    finally:
        remove_runtime(node.node_dir)
    log.info("node stopped", extra={"node": config.name})
    return EXIT_OK


WATCH_DEBOUNCE = 1.0
"""Seconds without another change after which the watch reloads (a kubelet's swap is a few
changes at once)."""


def _reload_on_change(node: NodeContext, path: Path, stack: contextlib.AsyncExitStack) -> None:
    """SIGHUP reloads the config at ``path``; with ``watch_config`` a change of its content
    does too (``watch_config_file``), until the stack closes."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload_config, node, path)
    stack.callback(loop.remove_signal_handler, signal.SIGHUP)
    if node.config.watch_config:
        watch = asyncio.create_task(watch_config_file(node, path), name="config watch")
        stack.callback(watch.cancel)


async def watch_config_file(node: NodeContext, path: Path) -> None:
    """Watch the directory of the config file at ``path`` (inotify, not recursive: ``filewatch``)
    until cancelled, and reload the file (``reload_config``) whenever its content's digest
    differs from the last one seen. A ConfigMap volume's files are symlinks through ``..data``,
    which the kubelet swaps for a new directory: the events are of the directory's entries,
    the digest is of what ``path`` reads now."""
    from hypermesh.node.filewatch import changes  # only a node with watch_config

    seen = node.config_digest
    try:
        seen = _reload_if_changed(node, path, seen)  # changed since it was read at the start
        async for _ in changes([path.parent], WATCH_DEBOUNCE):
            seen = _reload_if_changed(node, path, seen)
    except OSError as exc:
        log.warning(
            "config file not watched; it is reloaded on SIGHUP only",
            extra={"node": node.config.name, "config": str(path), "error": str(exc)},
        )


def _reload_if_changed(node: NodeContext, path: Path, seen: str) -> str:
    """Reload the config at ``path`` when its digest is not ``seen``; the digest seen now (a
    file refused is not refused again until it changes)."""
    try:
        digest = config_digest(path.read_bytes())
    except OSError:
        return seen  # between two steps of a swap: the next event reads it
    if digest == seen:
        return seen
    reload_config(node, path)
    refused = node.reload_refused
    return str(refused["digest"]) if refused and refused.get("digest") else node.config_digest


def reload_config(node: NodeContext, path: Path) -> bool:
    """Read the config at ``path`` again and run it (``NodeContext.reload``) when only what a
    running node can take changed (``node.reload``); else refuse it: the node keeps the config
    it runs, logs why and says so in ``GET /status`` (``reloadRefused``). True when it runs
    the file's config now."""
    name, digest = node.config.name, ""
    try:
        data = path.read_bytes()
        digest = config_digest(data)
        config = NodeConfig.from_json(data.decode("utf-8"))
        needs = restart_needs(fields_of(node.config.to_json()), fields_of(config.to_json()))
        if needs:
            raise ValueError(f"only a restart applies a change of {', '.join(needs)}")
        node.reload(config)
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and PolicyError are ValueErrors
        node.reload_refused = {"digest": digest, "error": str(exc)[:500]}
        log.error(
            "config reload refused; the node keeps its config",
            extra={"node": name, "config": str(path), "error": str(exc)[:500]},
        )
        return False
    node.config_digest, node.reload_refused = digest, None
    log.info(
        "config reloaded",
        extra={"node": name, "members": len(config.directory), "digest": digest[:16]},
    )
    return True


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _started(node: NodeContext, features: list[str]) -> None:
    """Publish ``runtime.json``: the node serves from now on, with ``features``."""
    runtime = node.runtime()
    write_runtime(node.node_dir, runtime)
    log.info(
        "node started",
        extra={
            "node": node.config.name,
            "network": node.config.network,
            "address": runtime.address,
            "identity": runtime.identity,
            "pid": runtime.pid,
            "web": runtime.web,
            "generation": node.config.generation,
            "version": __version__,
            "features": features,
            "cpu": round(time.process_time(), 4),  # CPU seconds the start took (bench/footprint)
        },
    )


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr, flush=True)
    return code


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(EXIT_OK)
