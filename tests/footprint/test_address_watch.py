"""The host's addresses are watched, not polled: the kernel announces a change over netlink
(``hostaddresses.AddressWatch``) and the node's directory publisher acts on it at once; where
netlink is unavailable the publisher looks on its timer, as before."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap

import pytest

from hypermesh.node.hostaddresses import AddressWatch, local_addresses

IN_OWN_NETNS = textwrap.dedent(
    """
    import asyncio, json, subprocess, time
    from hypermesh.node.hostaddresses import AddressWatch

    async def main():
        watch = AddressWatch.open()
        assert watch is not None, "no netlink"
        before = watch.addresses()
        quiet = watch.changed.is_set()
        began = time.monotonic()
        subprocess.run(["ip", "addr", "add", "192.0.2.7/32", "dev", "lo"], check=True)
        await asyncio.wait_for(watch.changed.wait(), 5)
        took = time.monotonic() - began
        print(json.dumps({"before": before, "quiet": quiet, "after": watch.addresses(),
                          "seconds": took, "events": watch.events}))
        watch.close()

    asyncio.run(main())
    """
)


def test_an_address_added_is_announced_at_once() -> None:
    # A network namespace of its own (root, as the lab tests): the host's addresses untouched.
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", IN_OWN_NETNS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    print("\naddress change seen after", f"{seen['seconds'] * 1000:.1f} ms", seen)
    assert seen["quiet"] is False  # nothing announced before the change
    assert "192.0.2.7" not in seen["before"]
    assert "192.0.2.7" in seen["after"]  # looked up again after the announcement
    assert seen["events"] >= 1
    assert seen["seconds"] < 1.0  # generous: the kernel tells in about a millisecond


def test_without_netlink_there_is_no_watch_and_the_timer_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def opened() -> AddressWatch | None:
        return AddressWatch.open()

    monkeypatch.delattr(socket, "AF_NETLINK")
    assert asyncio.run(opened()) is None


def test_the_watch_keeps_the_addresses_until_told() -> None:
    looks: list[int] = []

    def lookup() -> list[str]:
        looks.append(1)
        return local_addresses()

    async def scenario() -> None:
        watch = AddressWatch.open(lookup)
        assert watch is not None
        try:
            assert watch.addresses() == watch.addresses() == local_addresses()
            assert len(looks) == 1  # asked once; then from memory until the kernel speaks
            watch._readable()  # as when an announcement arrives
            assert watch.changed.is_set()
            watch.addresses()
            assert len(looks) == 2
        finally:
            watch.close()

    asyncio.run(scenario())
