"""The paths matrix (issue 17): a node behind each NAT kind dials a node behind each other kind,
both ways, in the lab (``tests/lab/paths_net.py``: a registry, a relay and one node per kind,
each on its own host). Every pair must answer, and end on a direct path exactly where the
network allows one (the table ``EXPECTED``, with the reason per pair); a NAT mapping dropped
(conntrack flushed) or a host moved to another network recovers its path within seconds (at
most ``RECOVERY``: the relay keepalive's bound).

One network for the module (about 15 s to start and publish); the pings of the matrix run in
rounds where each node dials one peer at a time and no two nodes dial each other at once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hypermesh.transport import relayclient
from tests.lab.conftest import require_lab
from tests.lab.paths_net import KINDS, PathsNet, published_net

OPEN = ("public", "full-cone")
"""Endpoint-independent filtering: anyone's packets get in, so whoever dials them (with UDP)
reaches them directly, even from behind a NAT that maps each destination anew."""
EIM_APDF = ("port-restricted", "double")
"""Endpoint-independent mapping, address-and-port-dependent filtering (RFC 4787): the port
seen by the registry is the one the peer sees too, and each side's probes open its own filter
for the other."""


def expected(dialer: str, target: str) -> tuple[str, str]:
    """The path ``dialer`` → ``target`` must end on, and why (RFC 4787's terms)."""
    pair = {dialer, target}
    if "udp-blocked" in pair:
        return "relayed", "no UDP at one end: only the relay, over TCP"
    if pair & set(OPEN):
        return "direct", "an end with endpoint-independent filtering accepts anyone"
    if pair <= set(EIM_APDF):
        return "direct", "EIM both sides: reflexive addresses are right, probes open filters"
    if "symmetric" in pair:
        return "relayed", "EDM: the port the peer is sent from is not one it can learn or open"
    raise AssertionError(f"no expectation for {dialer} → {target}")


EXPECTED = {(a, b): expected(a, b) for a, b in itertools.permutations(KINDS, 2)}
"""Every ordered pair of distinct kinds (30), spelled out by ``expected``:

- public, full-cone ↔ anything with UDP: direct (endpoint-independent filtering; a symmetric
  dialer's handshake goes straight in, a symmetric target's probes reveal its peer-reflexive
  address to the dialer, which handshakes to it);
- port-restricted, double ↔ port-restricted, double: direct (endpoint-independent mapping on
  both sides, hole punched by simultaneous probes);
- symmetric ↔ port-restricted, double: relayed (the symmetric NAT's port towards the peer is
  new and unknown, and the peer's filter only opens for ports it sent to);
- udp-blocked ↔ anything: relayed, over TCP to the relay.
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PathsNet]:
    """The network of ``paths_net`` plus a second port-restricted host ``pr2`` (for the
    recovery test), every node published; logs kept under the module's tmp folder."""
    require_lab()
    with published_net(
        tmp_path_factory.mktemp("paths"),
        Path("/tmp/hm-paths-matrix-logs"),
        timeout=40,
        extra={"pr2": "port-restricted"},
    ) as made:
        yield made


def rounds() -> list[list[tuple[str, str]]]:
    """The 30 ordered pairs in rounds: each node dials once per round and is dialled once,
    and no two nodes dial each other in the same round."""
    n = len(KINDS)
    out: list[list[tuple[str, str]]] = []
    for shift in range(1, n):
        pairs = [(KINDS[i], KINDS[(i + shift) % n]) for i in range(n)]
        if 2 * shift == n:  # i → i+3 and i+3 → i: two half-rounds
            out += [pairs[: n // 2], pairs[n // 2 :]]
        else:
            out.append(pairs)
    assert sorted(p for r in out for p in r) == sorted(EXPECTED)
    return out


def in_parallel(
    pairs: list[tuple[str, str]], work: Callable[[str, str], dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    with ThreadPoolExecutor(len(pairs)) as pool:
        futures = {pair: pool.submit(work, *pair) for pair in pairs}
        return {pair: future.result() for pair, future in futures.items()}


def test_every_pair_connects_and_ends_direct_exactly_where_the_nats_allow(net: PathsNet) -> None:
    started = time.monotonic()
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for batch in rounds():
        results.update(in_parallel(batch, lambda a, b: net.ping(a, b, count=3)))
    print(f"\nmatrix: {len(results)} pairs in {time.monotonic() - started:.1f}s")
    print(f"{'dialer':16} {'target':16} {'status':6} {'path':8} {'want':8} up  first_ms  reason")
    wrong = []
    for (dialer, target), got in sorted(results.items()):
        answer = got.get("answer", {})
        path = answer.get("path") if got.get("status") == 200 else None
        want, reason = EXPECTED[(dialer, target)]
        rtt = answer.get("rtt_ms") or [None]
        mark = "" if path == want else "  <-- WRONG"
        print(
            f"{dialer:16} {target:16} {got.get('status')!s:6} {path!s:8} {want:8} "
            f"{'y' if answer.get('upgraded') else 'n'}  {rtt[0]!s:8}  {reason}{mark}"
        )
        if path != want:
            wrong.append(f"{dialer} → {target}: {got} (want {want}: {reason})")
    assert not wrong, "pairs not as RFC 4787 says:\n" + "\n".join(wrong)


def ping_until(
    net: PathsNet, dialer: str, target: str, done: Callable[[dict[str, Any]], bool], limit: float
) -> tuple[float, dict[str, Any]]:
    """Ping (count 1) until ``done(answer)`` or ``limit`` seconds: the seconds it took and the
    last answer (whatever it was)."""
    started = time.monotonic()
    last: dict[str, Any] = {}
    for _ in range(200):
        last = net.ping(dialer, target, count=1)
        if done(last) or time.monotonic() - started > limit:
            break
        time.sleep(0.3)
    return time.monotonic() - started, last


def answers(got: dict[str, Any]) -> bool:
    return got.get("status") == 200


def direct(got: dict[str, Any]) -> bool:
    return answers(got) and got["answer"].get("path") == "direct"


RECOVERY = relayclient.KEEPALIVE_INTERVAL + relayclient.PONG_TIMEOUT + 7.0
"""Seconds a node whose NAT lost its mappings may stay unreachable: until its relay keepalive
goes out (after at most ``KEEPALIVE_INTERVAL`` of silence), is not answered in time (the relay's
QUIC backed off while its packets were dropped) and the node attaches afresh; then a dial."""


def test_a_flushed_nat_mapping_recovers_the_direct_path(net: PathsNet) -> None:
    took, got = ping_until(net, "pr2", "port-restricted", direct, 15)
    assert direct(got), f"pr2 → port-restricted never direct: {got}"
    for flushed in ("port-restricted", "pr2"):  # the target's NAT, then the dialer's
        assert net.lab.flush_conntrack(flushed) == 1
        took, got = ping_until(net, "pr2", "port-restricted", answers, RECOVERY)
        print(f"\n{flushed} flushed: answered after {took:.1f}s on {got.get('answer', {})}")
        assert answers(got), f"no answer within {RECOVERY:g}s of flushing {flushed}: {got}"
        took, got = ping_until(net, "pr2", "port-restricted", direct, 15)
        print(f"{flushed} flushed: direct again after {took:.1f}s")
        assert direct(got), f"not direct within 15s of flushing {flushed}: {got}"


def test_a_moved_host_is_noticed_and_reached_again(net: PathsNet) -> None:
    before = net.view("pr2").get("reflexive")
    assert before, f"pr2 knows no reflexive address: {net.view('pr2')}"
    started = time.monotonic()
    host = net.lab.move("pr2", nat="port-restricted")
    moved = f"{host.public_address}:"
    seen: list[str] = []
    for _ in range(100):
        seen = net.view("pr2").get("reflexive") or []
        if any(a.startswith(moved) for a in seen) or time.monotonic() - started > 10:
            break
        time.sleep(0.2)
    noticed = time.monotonic() - started
    nat = net.view("pr2").get("nat")
    print(f"\nmoved: reflexive {before} → {seen} (nat {nat}) after {noticed:.1f}s")
    assert any(a.startswith(moved) for a in seen), f"pr2 did not notice its move: {seen}"
    # only the new address: the relays were attached to again, so none reports the old one
    assert all(a.startswith(moved) for a in seen), f"pr2 publishes a dead address: {seen}"
    assert nat == "endpoint-independent", nat
    # A fresh dial to pr2 goes through its home relay first, which pr2 attached to again from
    # its new address when it noticed the move: reached again within seconds.
    for dialer, target in (("port-restricted", "pr2"), ("pr2", "port-restricted")):
        took, got = ping_until(net, dialer, target, answers, RECOVERY)
        print(f"{dialer} → {target} after the move: {took:.1f}s, {got.get('answer', got)}")
        assert answers(got), f"{dialer} → {target}: no answer within {RECOVERY:g}s: {got}"
