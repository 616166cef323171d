"""``hmctl``: the command line, kubectl's conventions.

Exit codes: 0 success; 1 "invalid" for validate, "there are changes" for diff/plan, "did not
converge" for apply; 2 bad input, usage or state errors, or a system other than Linux; 3 the
state is locked by another hmctl.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from hypermesh import __version__
from hypermesh.cli.common import duration
from hypermesh.cli.render import error
from hypermesh.errors import HyperMeshError, LockHeldError, ManifestError

EXIT_INVALID = 1
EXIT_ERROR = 2
EXIT_LOCKED = 3

HEAVY = "hypermesh.cli.commands"
LIGHT = "hypermesh.cli.validate"


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""Where a command (or an action of a command group) is added."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _add_files(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=required,
        metavar="PATH",
        help="a manifest file, a folder of *.yaml/*.yml (and its subfolders, not those whose "
        "names start with a dot, like .github), or - for standard input (repeatable)",
    )


def _add_timeout(parser: argparse.ArgumentParser, default: float) -> None:
    parser.add_argument(
        "--timeout",
        type=duration,
        default=default,
        metavar="DURATION",
        help=f"give up after this long (default {default:g}s)",
    )


def _command(
    sub: Subparsers,
    name: str,
    handler: tuple[str, str],
    summary: str,
    example: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=f"example:\n  {example}",
        formatter_class=_Formatter,
    )
    parser.set_defaults(handler=handler, command_parser=parser)
    return parser


def _add_output(
    parser: argparse.ArgumentParser, choices: list[str], help: str | None = None
) -> None:
    """``-o/--output`` with ``choices``, the first the default."""
    parser.add_argument("-o", "--output", choices=choices, default=choices[0], help=help)


def build_parser() -> argparse.ArgumentParser:
    """hmctl's whole command line: global options, then one builder per command group."""
    parser = argparse.ArgumentParser(
        prog="hmctl",
        description="Declare a HyperMesh network in YAML and converge it.",
        epilog=(
            "examples:\n"
            "  hmctl up -f examples/quickstart        # start a small network on loopback\n"
            "  hmctl get nodes -o wide                 # what runs, where\n"
            "  hmctl diff -f examples/quickstart       # what an apply would change\n"
            "  hmctl down                              # stop it"
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"hmctl {__version__}")
    parser.add_argument(
        "--state",
        metavar="DIR",
        help="state directory (default: $HM_STATE or ./.hypermesh)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (
        _add_validate,
        _add_diff,
        _add_apply,
        _add_up,
        _add_down,
        _add_controller,
        _add_get,
        _add_describe,
        _add_delete,
        _add_dns,
        _add_resolver,
        _add_registry,
        _add_chain,
        _add_message,
        _add_policy,
        _add_tunnel,
        _add_ping,
        _add_keys,
        _add_network,
        _add_gateway,
        _add_prometheus,
        _add_dashboard,
        _add_version,
    ):
        add(sub)
    return parser


def _add_validate(sub: Subparsers) -> None:
    p = _command(
        sub,
        "validate",
        (LIGHT, "validate"),
        "check manifests against the schemas and each other",
        "hmctl validate -f examples/quickstart",
    )
    _add_files(p)


def _add_dashboard(sub: Subparsers) -> None:
    p = _command(
        sub,
        "dashboard",
        ("hypermesh.cli.dashboard", "dashboard"),
        "the network's live dashboard: print its URL (--open: in a browser)",
        "hmctl dashboard --open",
    )
    p.add_argument("--node", metavar="NAME", help="this node's dashboard (default: the registry's)")
    p.add_argument("--network", metavar="NAME", help="only this network's nodes")
    p.add_argument("--open", action="store_true", help="open it in a browser (webbrowser)")
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve it on 127.0.0.1 with the state store's view merged in (Ready as the "
        "controller sees it, the policy probe's findings, the controller's events)",
    )
    p.add_argument("--port", type=int, default=0, help="--serve on this port (default: any)")


def _add_version(sub: Subparsers) -> None:
    _command(sub, "version", (LIGHT, "version"), "print the version", "hmctl version")


def _add_diff(sub: Subparsers) -> None:
    for name in ("diff", "plan"):
        p = _command(
            sub,
            name,
            (HEAVY, "diff"),
            "show what apply would change (exit 0: none, 1: changes, 2: error)",
            f"hmctl {name} -f examples/quickstart -o json",
        )
        _add_files(p)
        _add_host(p)
        p.add_argument("--prune", action="store_true", help="include deletes of undeclared")
        _add_output(
            p,
            ["text", "json", "markdown"],
            "text: a unified diff per resource (default); json: the plan as data; markdown: "
            "a pull-request comment (creates, changes, prunes and drift in sections)",
        )
        p.add_argument("-a", "--all", action="store_true", help="also list unchanged resources")


def _add_apply(sub: Subparsers) -> None:
    p = _command(
        sub,
        "apply",
        (HEAVY, "apply"),
        "converge the world to the manifests; nodes keep running after it exits",
        "hmctl apply -f examples/quickstart --timeout 60s",
    )
    _add_files(p)
    _add_apply_flags(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")


def _add_up(sub: Subparsers) -> None:
    p = _command(
        sub,
        "up",
        (HEAVY, "up"),
        "apply, then keep reconciling in the foreground; Ctrl-C or `hmctl down` stops it all",
        "hmctl up -f examples/quickstart",
    )
    _add_files(p)
    _add_apply_flags(p)
    _add_loop_flags(p)


def _add_down(sub: Subparsers) -> None:
    _command(
        sub,
        "down",
        (HEAVY, "down"),
        "stop every node this state started (and a running `up` or controller)",
        "hmctl down",
    )


def _add_get(sub: Subparsers) -> None:
    p = _command(
        sub,
        "get",
        (HEAVY, "get"),
        "list resources with their live status; `get paths`: how each local node reaches its peers",
        "hmctl get nodes -o wide   |   hmctl get paths -o wide",
    )
    p.add_argument("kind", help="node, network, peer, tld, record, policy, all, or paths")
    p.add_argument("name", nargs="?", help="one resource")
    _add_host(p)
    _add_output(
        p,
        ["table", "wide", "yaml", "json", "name"],
        "table (default), wide (more columns), yaml or json (objects that apply back), name",
    )


def _add_describe(sub: Subparsers) -> None:
    p = _command(
        sub,
        "describe",
        (HEAVY, "describe"),
        "everything about one resource: spec, status, conditions, events",
        "hmctl describe node alpha",
    )
    p.add_argument("kind", help="node, network, peer, tld, record or policy")
    p.add_argument("name", help="the resource's metadata.name")


def _add_delete(sub: Subparsers) -> None:
    p = _command(
        sub,
        "delete",
        (HEAVY, "delete"),
        "delete resources from the world and the inventory (a later apply recreates declared ones)",
        "hmctl delete node beta",
    )
    p.add_argument("kind", nargs="?", help="node, network, peer, tld, record or policy")
    p.add_argument("name", nargs="*", help="one or more names of that kind")
    _add_files(p, required=False)


def _add_dns(sub: Subparsers) -> None:
    p = _command(
        sub,
        "dns",
        ("hypermesh.cli.dns", "query"),
        "ask a running node over DNS over QUIC (default) or HTTP/3, key pinned; prints like dig",
        "hmctl dns query www.acme HTTPS --via alpha --verify",
    )
    p.add_argument("action", choices=["query"], help="query: one question, one answer")
    p.add_argument("name", help="the name to look up")
    p.add_argument("type", nargs="?", default="A", help="record type (default A)")
    p.add_argument("--via", metavar="NODE", help="the node to ask (default: the registry)")
    p.add_argument("--address", metavar="HOST:PORT", help="ask this address instead of a node")
    p.add_argument("--identity", metavar="NODE_ID", help="with --address: the key to pin")
    p.add_argument("--doh", action="store_true", help="DNS over HTTPS on HTTP/3, not DoQ")
    p.add_argument("--get", action="store_true", help="with --doh: GET instead of POST")
    p.add_argument("--dnssec", action="store_true", help="set the DO bit: return signatures")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the answer's DNSSEC chain from the registry's key (exit 1 if it fails); "
        "a node that holds no copy of the registry's anchors yet is asked again until --timeout",
    )
    p.add_argument(
        "--registry-id",
        metavar="NODE_ID",
        help="with --verify: the registry's node ID (default: from the state)",
    )
    _add_timeout(p, 5.0)
    _add_output(p, ["text", "json"], "text: as dig prints it (default); json: for scripts")


RESOLVER = "hypermesh.cli.resolver"


def _add_resolver(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "resolver",
        (RESOLVER, "status"),
        "a local validating stub resolver: plain DNS for the operating system, HyperMesh names "
        "verified from the registry's key, other names forwarded",
        "hmctl resolver run --listen 127.0.0.53:53 --via alpha",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_resolver_run(actions)
    _add_resolver_status_and_setup(actions)


def _add_resolver_run(actions: Subparsers) -> None:
    p = _command(
        actions,
        "run",
        (RESOLVER, "run"),
        "serve DNS over UDP and TCP on --listen until interrupted, asking a node over DoQ",
        "hmctl resolver run --listen 127.0.0.1:5353 --via alpha --upstream 192.0.2.53:53",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.53:53",
        metavar="HOST:PORT",
        help="where to listen, UDP and TCP (default 127.0.0.53:53; port 0: any free port)",
    )
    p.add_argument(
        "--via", metavar="NODE", help="the node of the state to ask (default: the registry)"
    )
    p.add_argument(
        "--address", metavar="HOST:PORT", help="ask this node instead of one of the state"
    )
    p.add_argument("--identity", metavar="NODE_ID", help="with --address: the key to pin")
    p.add_argument(
        "--registry-id",
        metavar="NODE_ID",
        help="the registry's node ID, which answers are checked from (default: from the state)",
    )
    p.add_argument(
        "--upstream",
        action="append",
        metavar="HOST:PORT",
        help="a resolver for other names (repeatable; default: the nameservers of --resolv-conf)",
    )
    p.add_argument(
        "--resolv-conf",
        default="/etc/resolv.conf",
        metavar="PATH",
        help="where the system's resolvers are read without --upstream (default /etc/resolv.conf)",
    )
    p.add_argument(
        "--no-forward", action="store_true", help="answer names outside the mesh REFUSED"
    )
    p.add_argument(
        "--status-file",
        metavar="PATH",
        help="where to keep the status (default: resolver/status.json in the state directory)",
    )


def _add_resolver_status_and_setup(actions: Subparsers) -> None:
    p = _command(
        actions,
        "status",
        (RESOLVER, "status"),
        "what the stubs running here serve, where, their upstreams and counts",
        "hmctl resolver status -o json",
    )
    p.add_argument("--status-file", metavar="PATH", help="read this status file only")
    _add_output(p, ["table", "json"])
    p = _command(
        actions,
        "setup",
        (RESOLVER, "setup"),
        "print what sends HyperMesh names to the stub: a systemd-resolved drop-in, "
        "NetworkManager's dnsmasq lines, or a resolv.conf",
        "hmctl resolver setup --print resolved --listen 127.0.0.2:53",
    )
    p.add_argument(
        "--print",
        required=True,
        choices=["resolved", "networkmanager", "resolv.conf"],
        help="which configuration to print",
    )
    p.add_argument(
        "--listen", default="127.0.0.53:53", metavar="HOST:PORT", help="where the stub listens"
    )
    p.add_argument(
        "--domain",
        action="append",
        metavar="TLD",
        help="a HyperMesh TLD to send to the stub (repeatable; default: the state's TLDs)",
    )


REGISTRY = "hypermesh.cli.registry"


CHAIN = "hypermesh.cli.chain"


def _add_chain(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "chain",
        (CHAIN, "log"),
        "a node's signed chain: log, show, append, verify, proof",
        "hmctl chain log alpha",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _chain_action(
        actions, "log", "the latest blocks, newest first", "hmctl chain log alpha --limit 50"
    )
    p.add_argument("--limit", type=int, default=20, help="how many blocks (default 20)")
    _add_output(p, ["table", "json"])
    p = _chain_action(
        actions, "show", "one block with its payload, as JSON", "hmctl chain show alpha 3"
    )
    p.add_argument("seq", type=int, help="the block's height")
    _add_chain_append(actions)
    _add_chain_verify(actions)
    _add_chain_proofs(actions)


def _chain_action(
    actions: Subparsers, name: str, summary: str, example: str
) -> argparse.ArgumentParser:
    """An action of ``hmctl chain``: the node (optional for verify) and a timeout."""
    p = _command(actions, name, (CHAIN, name), summary, example)
    p.add_argument(
        "node",
        nargs="?" if name == "verify" else None,
        help="the node whose chain it is (a node of this state)",
    )
    _add_timeout(p, 10.0)
    return p


def _add_chain_append(actions: Subparsers) -> None:
    p = _chain_action(
        actions,
        "append",
        "append a block, signed with the node's own key",
        "hmctl chain append alpha --text 'deployed v2'",
    )
    p.add_argument("--text", help="the payload, as text")
    p.add_argument("--file", help="the payload, from a file")
    p.add_argument("--kind", default="note", help="note (default), link, receipt, message, key")
    p.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="NODE_ID:SEQ:HASH",
        help="a block of another chain this one has seen (repeatable, at most 16)",
    )


def _add_chain_verify(actions: Subparsers) -> None:
    p = _chain_action(
        actions,
        "verify",
        "fetch the whole chain and check every block, link, tree head and payload; or check "
        "a provenance bundle offline",
        "hmctl chain verify alpha   |   hmctl chain verify --bundle proof.json",
    )
    p.add_argument("--bundle", metavar="FILE", help="check this provenance bundle, offline")
    p.add_argument(
        "--witnesses",
        type=int,
        default=0,
        metavar="K",
        help="also require K cosignatures of the latest checkpoint by other nodes of this state",
    )


def _add_chain_proofs(actions: Subparsers) -> None:
    p = _chain_action(
        actions,
        "provenance",
        "a bundle of proofs that block SEQ of NODE had seen an origin block of another chain",
        "hmctl chain provenance beta 4 --origin hm1…:2 --out proof.json",
    )
    p.add_argument("seq", type=int, help="the block whose provenance is asked")
    p.add_argument("--origin", required=True, metavar="NODE_ID:SEQ", help="the origin block")
    p.add_argument("--out", metavar="FILE", help="write the bundle here (default: print it)")
    p = _chain_action(
        actions,
        "proof",
        "an inclusion proof of block SEQ (or a consistency proof), checked here",
        "hmctl chain proof alpha 3 --size 10",
    )
    p.add_argument("seq", type=int, help="the block (or, with --consistency, the newer size)")
    p.add_argument("--size", type=int, help="the tree size to prove against (default: all)")
    p.add_argument(
        "--consistency",
        type=int,
        metavar="OLD_SIZE",
        help="prove that the first OLD_SIZE blocks are a prefix of the first SEQ blocks",
    )
    _add_output(p, ["text", "json"])


def _add_policy(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "policy",
        ("hypermesh.cli.policy", "test"),
        "interface policies: run their tests, or ask one who may do what",
        "hmctl policy test -f examples/registry-and-names",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _command(
        actions,
        "test",
        ("hypermesh.cli.policy", "test"),
        "run each InterfacePolicy's tests (exit 1 if one fails), or decide one request",
        "hmctl policy test -f net/ --from partner --to alpha --operation chain.read",
    )
    _add_files(p, required=True)
    p.add_argument("--policy", metavar="NAME", help="only this InterfacePolicy")
    p.add_argument("--from", dest="caller", metavar="NAME", help="the caller: a Node or Peer")
    p.add_argument("--to", dest="target", metavar="NODE", help="the node it calls")
    p.add_argument("--operation", metavar="OP", help="dns.query, chain.read, chain.write, …")


def _add_tunnel(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "tunnel",
        ("hypermesh.cli.tunnel", "request"),
        "anonymous tunnels through relay nodes (the ephemeral interface)",
        "hmctl tunnel request beta /status --hops 2",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _command(
        actions,
        "request",
        ("hypermesh.cli.tunnel", "request"),
        "send one request to a node's services through a fresh tunnel, and print the answer",
        "hmctl tunnel request beta /status --via r1,r2,r3",
    )
    p.add_argument("node", help="the destination node (interface ephemeral)")
    p.add_argument("path", nargs="?", default="/status", help="what to ask (default /status)")
    p.add_argument("-X", "--method", default="GET", help="the HTTP method (default GET)")
    p.add_argument("--data", metavar="TEXT|@FILE", help="the request body")
    p.add_argument("--hops", type=int, default=2, help="relays to pick at random (default 2)")
    p.add_argument("--via", metavar="R1,R2,…", help="the relays to go through, in order")
    p.add_argument(
        "--ttl", type=duration, default=60.0, metavar="DURATION", help="the tunnel's TTL (60s)"
    )
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _add_timeout(p, 30.0)


GATEWAY = "hypermesh.cli.gateway"


def _add_ca_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca-dir",
        metavar="DIR",
        help="the CA directory (default: $XDG_DATA_HOME or ~/.local/share, then hypermesh/gateway)",
    )


def _add_registry_ref(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry", metavar="HOST:PORT", help="the registry to ask (default: the state's)"
    )
    parser.add_argument("--registry-id", metavar="NODE_ID", help="with --registry: its key")


def _add_gateway_run(actions: Subparsers) -> None:
    p = _command(
        actions,
        "run",
        (GATEWAY, "run"),
        "serve the proxy: HyperMesh names over the verified path, a 403 for any other name",
        "hmctl gateway run --listen 127.0.0.1:7443 --via alpha",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:7443",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:7443)",
    )
    p.add_argument("--via", metavar="NODE", help="the node that resolves (default: the registry)")
    _add_ca_dir(p)
    _add_registry_ref(p)
    _add_timeout(p, 15.0)


def _add_prometheus(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "prometheus",
        ("hypermesh.cli.prometheus", "sd"),
        "monitoring: the nodes as Prometheus targets (file-based service discovery)",
        "hmctl prometheus sd -o /etc/prometheus/hypermesh.json",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _command(
        actions,
        "sd",
        ("hypermesh.cli.prometheus", "sd"),
        "write the nodes' /metrics addresses as file_sd JSON (nodes need spec.web.listen)",
        "hmctl prometheus sd -o targets.json --network demo",
    )
    p.add_argument(
        "-o", "--output", dest="output_file", metavar="FILE", help="write here (default stdout)"
    )
    p.add_argument("--network", metavar="NAME", help="only this network's nodes")


def _add_gateway(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "gateway",
        (GATEWAY, "status"),
        "browsers reach HyperMesh names: a local proxy and a CA constrained to the HyperMesh TLDs",
        "hmctl gateway trust --tld acme && hmctl gateway run",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _command(
        actions,
        "trust",
        (GATEWAY, "trust"),
        "make the local CA once (key 0600, never printed) and install it in the NSS databases "
        "of Chromium and Firefox (and with --system, the system store)",
        "hmctl gateway trust --tld acme",
    )
    p.add_argument(
        "--tld",
        action="append",
        metavar="TLD",
        help="a TLD the CA may sign for (repeatable; default: the registry's active TLDs)",
    )
    p.add_argument(
        "--system",
        action="store_true",
        help="also install in /usr/local/share/ca-certificates (as root)",
    )
    p.add_argument("--no-nss", action="store_true", help="do not touch the NSS databases")
    _add_ca_dir(p)
    _add_registry_ref(p)
    p = _command(
        actions,
        "untrust",
        (GATEWAY, "untrust"),
        "remove the CA from every store trust put it in, and delete it and its key",
        "hmctl gateway untrust",
    )
    _add_ca_dir(p)
    _add_gateway_run(actions)
    p = _command(
        actions,
        "pac",
        (GATEWAY, "pac"),
        "print the PAC file: names under the CA's TLDs to the gateway, the rest DIRECT",
        "hmctl gateway pac --proxy 127.0.0.1:7443 > hypermesh.pac",
    )
    p.add_argument(
        "--proxy", metavar="HOST:PORT", help="the gateway's address (default 127.0.0.1:7443)"
    )
    _add_ca_dir(p)
    p = _command(
        actions,
        "status",
        (GATEWAY, "status"),
        "the CA (subject, fingerprint, what it may sign, where installed) and the running "
        "gateway's counts",
        "hmctl gateway status -o json",
    )
    p.add_argument(
        "--gateway", metavar="HOST:PORT", help="ask this gateway (default: the one running)"
    )
    _add_ca_dir(p)
    _add_output(p, ["text", "json"], "text: tables (default); json: for scripts")


def _add_ping(sub: Subparsers) -> None:
    p = _command(
        sub,
        "ping",
        ("hypermesh.cli.ping", "ping"),
        "reach a node by its key (node directory, happy eyeballs over its record's addresses) "
        "and time round trips on one connection; exit 1 when it cannot be reached",
        "hmctl ping gamma -c 5 --via alpha",
    )
    p.add_argument("node", help="a node ID (hm1…), a node of this state, or a member name")
    p.add_argument(
        "-c", "--count", type=int, default=3, metavar="N", help="requests to time (default 3)"
    )
    p.add_argument(
        "--via",
        metavar="NODE",
        help="the node of this state that pings and says which path it took (default: the "
        "first local node; without one, this process pings, directly)",
    )
    _add_output(p, ["text", "json"])
    _add_timeout(p, 10.0)


def _add_keys(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "keys",
        ("hypermesh.cli.keys", "rotate"),
        "node keys: rotate one (revocation is hmctl registry revoke)",
        "hmctl keys rotate alpha",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _command(
        actions,
        "rotate",
        ("hypermesh.cli.keys", "rotate"),
        "give a running node a new key: the old key records the hand-over on its chain and "
        "revokes itself at the registry; the node stops, and hmctl apply starts it anew",
        "hmctl keys rotate alpha && hmctl apply -f network.yaml",
    )
    p.add_argument("node", help="the node (of this state, running)")
    p.add_argument("--registry", metavar="NODE", help="the registry node (default: the only one)")
    p.set_defaults(address=None, identity=None, admin_key=None)
    _add_timeout(p, 10.0)
    p = _command(
        actions,
        "show",
        ("hypermesh.cli.keys", "show"),
        "print a node's ID, for spec.identity on other hosts (its key is made, 0600, if it "
        "has none yet)",
        "hmctl keys show edge",
    )
    p.add_argument("node", help="the node's name (its folder under the state directory)")
    p.add_argument("-n", "--namespace", default="", help="the node's namespace, if it has one")
    _add_output(p, ["text", "json"], "text: the node ID alone (default); json: with its key file")


NETWORK = "hypermesh.cli.network"


def _add_network(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "network",
        (NETWORK, "list_tokens"),
        "a network's join tokens, on its registry's host: create, list, revoke",
        "hmctl network token create --ttl 1h --tags edge",
    )
    groups = parent.add_subparsers(dest="group", metavar="GROUP", required=True)
    token = _command(
        groups,
        "token",
        (NETWORK, "list_tokens"),
        "join tokens: a node on another host joins the network with one "
        "(--join-token-file or $HM_JOIN_TOKEN)",
        "hmctl network token create --ttl 1h",
    )
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _network_action(
        actions,
        "create",
        "create_token",
        "create a join token; it is printed once, alone on its line, and never again",
        "hmctl network token create --ttl 24h --reusable --tags edge,eu",
    )
    p.add_argument(
        "--ttl",
        type=duration,
        default=3600.0,
        metavar="DURATION",
        help="how long the token can be used (default 1h; 1m to 365d)",
    )
    p.add_argument("--reusable", action="store_true", help="usable by many nodes")
    p.add_argument("--ephemeral", action="store_true", help="members end with their node record")
    p.add_argument("--tags", default="", metavar="A,B", help="tags the members get")
    p.add_argument("--description", default="", metavar="TEXT", help="what it is for")
    p = _network_action(
        actions,
        "list",
        "list_tokens",
        "list the tokens (never their secrets)",
        "hmctl network token list -o json",
    )
    p = _network_action(
        actions,
        "revoke",
        "revoke_token",
        "revoke a token by its ID",
        "hmctl network token revoke 0123456789ab",
    )
    p.add_argument("id", help="the token's ID (12 hex digits, as list shows it)")


def _network_action(
    actions: Subparsers, name: str, function: str, summary: str, example: str
) -> argparse.ArgumentParser:
    """An action of ``hmctl network token``, with the options that say which registry."""
    p = _command(actions, name, (NETWORK, function), summary, example)
    p.add_argument(
        "--registry", metavar="NODE", help="the registry node of this state (default: the only one)"
    )
    p.add_argument(
        "--admin-key",
        metavar="FILE",
        help="the administrator's key (default: registry-admin/identity.key of the node)",
    )
    p.set_defaults(address=None, identity=None)
    _add_output(p, ["text", "json"], "text (default) or json")
    _add_timeout(p, 10.0)
    return p


MESSAGE = "hypermesh.cli.message"


def _add_message(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "message",
        (MESSAGE, "inbox"),
        "signed, end-to-end encrypted messages between nodes, with receipts on both chains",
        "hmctl message send alpha beta --text 'hello'",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _command(
        actions,
        "send",
        (MESSAGE, "send"),
        "send a message from one node of this state to another",
        "hmctl message send alpha beta --text 'deploy at noon'",
    )
    p.add_argument("sender", help="the sending node (its key signs)")
    p.add_argument(
        "to",
        help="the receiving node: a node of this state, or any node's ID (on another host, "
        "behind a NAT: the sender finds it in the node directory and reaches it over its paths)",
    )
    p.add_argument("--text", required=True, help="the message")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _add_timeout(p, 10.0)
    p = _command(
        actions,
        "inbox",
        (MESSAGE, "inbox"),
        "the messages a node received, newest first",
        "hmctl message inbox beta",
    )
    p.add_argument("node", help="the node whose inbox (its key signs the request)")
    p.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    _add_timeout(p, 10.0)


def _add_registry(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "registry",
        (REGISTRY, "list_tlds"),
        "a registry's TLDs and its administration: list, approve, reject, expire, reserve, "
        "policy, renew, transfer",
        "hmctl registry list -o wide",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = _registry_action(
        actions,
        "list",
        "list_tlds",
        "list the registry's TLDs with owner, status and serial",
        "hmctl registry list -o wide",
    )
    _add_output(p, ["table", "wide", "json"], "table (default), wide (with DS records) or json")
    _add_registry_tld_actions(actions)
    _add_registry_transfer(actions)
    _add_registry_reserve(actions)
    _add_registry_revoke(actions)
    _add_registry_policy(actions)


def _registry_action(
    actions: Subparsers, name: str, function: str, summary: str, example: str
) -> argparse.ArgumentParser:
    """An action of ``hmctl registry``, with the options that say which registry and key."""
    p = _command(actions, name, (REGISTRY, function), summary, example)
    p.add_argument(
        "--registry",
        metavar="NODE",
        help="the registry node of this state (default: the only one)",
    )
    p.add_argument("--address", metavar="HOST:PORT", help="a registry this state does not run")
    p.add_argument("--identity", metavar="NODE_ID", help="with --address: the key to pin")
    p.add_argument(
        "--admin-key",
        metavar="FILE",
        help="the administrator's key (default: registry-admin/identity.key of the node)",
    )
    _add_timeout(p, 10.0)
    return p


def _add_as_node(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--as",
        dest="as_node",
        metavar="NODE",
        help="sign as this node (default: the node that owns the TLD)",
    )


REGISTRY_TLD_ACTIONS = (
    (
        "approve",
        "approve a pending TLD (manual approval mode); its zone is served at once",
        "hmctl registry approve acme",
    ),
    (
        "reject",
        "reject a pending TLD, with a reason its owner sees",
        "hmctl registry reject acme --reason 'trademark dispute'",
    ),
    (
        "expire",
        "end a registration now: its zone stops being served until the owner renews",
        "hmctl registry expire acme --reason 'abuse report 17'",
    ),
    (
        "renew",
        "renew a TLD for another term, signed by its owner (a node of this state)",
        "hmctl registry renew acme",
    ),
)
"""The registry's actions on one TLD: name, summary, example."""


def _add_registry_tld_actions(actions: Subparsers) -> None:
    for name, summary, example in REGISTRY_TLD_ACTIONS:
        p = _registry_action(actions, name, name, summary, example)
        p.add_argument("tld", help="the TLD")
        if name in ("reject", "expire"):
            p.add_argument("--reason", default="", help="why; shown to the owner and on the page")
        if name == "renew":
            _add_as_node(p)
        _add_output(p, ["text", "json"], "text (default) or json: the TLD as the API returns it")


def _add_registry_transfer(actions: Subparsers) -> None:
    p = _registry_action(
        actions,
        "transfer",
        "transfer",
        "hand a TLD to another node: signed by the owner, cosigned by the new owner",
        "hmctl registry transfer acme --to beta",
    )
    p.add_argument("tld", help="the TLD")
    p.add_argument(
        "--to", required=True, metavar="NODE", help="the new owner, a node of this state"
    )
    _add_as_node(p)
    _add_output(p, ["text", "json"], "text (default) or json")


def _add_registry_reserve(actions: Subparsers) -> None:
    for name, undo, summary, example in (
        (
            "reserve",
            False,
            "reserve names so that nobody can register them",
            "hmctl registry reserve beta gamma",
        ),
        ("unreserve", True, "release reserved names", "hmctl registry unreserve beta"),
    ):
        p = _registry_action(actions, name, "reserve", summary, example)
        p.add_argument("names", nargs="+", metavar="NAME", help="one or more TLD names")
        p.set_defaults(undo=undo)
        _add_output(p, ["text", "json"], "text (default) or json: the resulting policy")


def _add_registry_revoke(actions: Subparsers) -> None:
    p = _registry_action(
        actions,
        "revoke",
        "revoke",
        "revoke a node key: every node of the network refuses it once the revocation reaches "
        "it with the registry's anchors",
        "hmctl registry revoke beta --reason 'laptop stolen'",
    )
    p.add_argument("key", metavar="NODE|NODE_ID", help="a node of this state, or a node ID")
    p.add_argument("--reason", default="", help="why; listed with the revocation")
    p.add_argument(
        "--self",
        dest="self_signed",
        action="store_true",
        help="sign with the node's own key instead of the administrator's",
    )
    _add_output(p, ["text", "json"])
    p = _registry_action(
        actions,
        "revocations",
        "revocations",
        "list the node keys the registry has revoked",
        "hmctl registry revocations",
    )
    _add_output(p, ["table", "json"])


def _add_registry_policy(actions: Subparsers) -> None:
    p = _registry_action(
        actions,
        "policy",
        "policy",
        "show the registry's policy, or change its approval mode, term or quota",
        "hmctl registry policy --approval manual --term-days 365",
    )
    p.add_argument(
        "--approval",
        choices=["automatic", "manual"],
        help="automatic: new TLDs are active at once; manual: they wait for approve",
    )
    p.add_argument(
        "--term-days",
        type=int,
        metavar="DAYS",
        help="how long a registration lasts before it must be renewed",
    )
    p.add_argument(
        "--max-tlds-per-owner",
        type=int,
        metavar="N",
        help="how many TLDs one owner key may hold (default 10; 0 refuses every registration)",
    )
    _add_output(p, ["text", "json"], "text (default) or json")


def _add_controller(sub: Subparsers) -> None:
    parent = _command(
        sub,
        "controller",
        (HEAVY, "controller_status"),
        "the reconcile loop (GitOps): run it, suspend and resume it, see its status",
        "hmctl controller run -f manifests/ --prune --interval 30s",
    )
    actions = parent.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_controller_run(actions)
    p = _command(
        actions,
        "suspend",
        (HEAVY, "controller_suspend"),
        "suspend the loop: it keeps observing and reports drift, but changes nothing",
        "hmctl controller suspend --reason 'maintenance of the registry host'",
    )
    p.add_argument("--reason", default="", help="why; shown by `hmctl controller status`")
    p = _command(
        actions,
        "resume",
        (HEAVY, "controller_resume"),
        "resume a suspended loop: its next pass applies what the files declare",
        "hmctl controller resume",
    )
    p = _command(
        actions,
        "status",
        (HEAVY, "controller_status"),
        "the loop's source, revisions applied and attempted, last pass, suspension and "
        "conditions (Ready, Reconciling, Stalled)",
        "hmctl controller status -o json",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=["text", "yaml", "json"],
        default="text",
        help="text (default), or the loop as a Kubernetes-style object in yaml or json",
    )


def _add_controller_run(actions: Subparsers) -> None:
    p = _command(
        actions,
        "run",
        (HEAVY, "controller"),
        "keep a folder or a git checkout converged, in the foreground: a pass every "
        "--interval and at once when a manifest changes; the revision applied and the "
        "conditions are in `hmctl controller status`",
        "hmctl controller run -f /srv/net-config/manifests --prune --git-pull",
    )
    _add_files(p)
    _add_apply_flags(p)
    _add_loop_flags(p)
    p.add_argument(
        "--git-pull",
        action="store_true",
        help="-f is in a git checkout: run `git pull --ff-only` before a pass, every "
        "--pull-interval; a failed pull is reported and the files stay as they were",
    )
    p.add_argument(
        "--pull-interval",
        type=duration,
        default=60.0,
        metavar="DURATION",
        help="with --git-pull: pull this often (default 60s)",
    )


def _add_host(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        metavar="NAME",
        help="the host this controller runs for (default: $HM_HOST): only the Nodes whose "
        "spec.host is NAME are started here; the others are remote members",
    )


def _add_apply_flags(p: argparse.ArgumentParser) -> None:
    _add_host(p)
    p.add_argument(
        "--join-token-file",
        metavar="PATH",
        help="a join token (hmctl network token create) in a file, for local nodes whose "
        "registry is on another host and whose identity is not pinned (default: "
        "$HM_JOIN_TOKEN, the token itself)",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete what this state created that the files no longer declare",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="let --prune delete more than half of the inventory, or all of it, and let the "
        "manifests move resources this state applied to another network into theirs",
    )
    p.add_argument(
        "--timeout",
        type=duration,
        default=120.0,
        metavar="DURATION",
        help="give up converging after this long (default 120s)",
    )
    p.add_argument(
        "--parallelism",
        type=int,
        default=8,
        metavar="N",
        help="resources of one kind acted on at once (default 8)",
    )


def _add_loop_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--interval",
        type=duration,
        default=5.0,
        metavar="DURATION",
        help="re-observe the world this often (default 5s)",
    )
    p.add_argument(
        "--drift",
        choices=("detect", "correct"),
        default="correct",
        help="what a pass does with drift of the world (a node process gone, a record changed "
        "at the registry): put it back (correct, the default), or only report it as the "
        "condition Drifted, an event and a count in `hmctl controller status` (detect); "
        "the annotation hypermesh.online/drift overrides it per resource",
    )
    p.add_argument(
        "--notify",
        metavar="URL",
        help="POST each resource's Ready, Stalled and Drifted transitions to this webhook, "
        "one JSON object each (in the background: a dead webhook never holds up a pass)",
    )
    p.add_argument(
        "--metrics-file",
        type=Path,
        metavar="PATH",
        help="after each pass, write the controller's figures (drifted resources, converged, "
        "notifications) here as a Prometheus textfile",
    )


def unsupported_platform(platform: str | None = None) -> str | None:
    """Why hmctl cannot run on ``platform`` (default: this one), or None on Linux. It holds
    its state with flock, tells live nodes from dead ones through /proc and isolates networks
    in network namespaces; elsewhere it would see every node as dead, so it says so at once."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return None
    return (
        f"hmctl runs on Linux only (it needs flock, /proc and network namespaces); "
        f"this system is {platform}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    unsupported = unsupported_platform()
    if unsupported is not None:
        error(unsupported)
        return EXIT_ERROR
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said with the usage of the command given, not hmctl's
        command: argparse.ArgumentParser = getattr(args, "command_parser", None) or parser
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_ERROR
    module, function = args.handler
    try:
        return int(getattr(importlib.import_module(module), function)(args))
    except ManifestError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        n = len(exc.problems)
        error(f"{n} problem{'s' if n != 1 else ''} in the manifests; nothing was changed")
        return EXIT_ERROR
    except LockHeldError as exc:
        error(str(exc))
        return EXIT_LOCKED
    except HyperMeshError as exc:
        error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
