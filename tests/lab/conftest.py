"""The lab's fixture: a ``Lab`` removed after the test, whatever the test did.

The lab tests skip (saying why) only where network namespaces cannot be made: not root, no
``ip``, or a kernel or sandbox that refuses them; or on request with ``HM_TEST_NETNS=skip``.
CI runs as root and runs them. ``nft`` is needed too (``.ci/run`` installs nftables): without it
they fail, saying so.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import skipped_on_request
from tests.harness.netns import can_make_namespaces
from tests.lab.lab import Lab


def require_lab() -> None:
    """Skip (with the reason) where a lab cannot be made; fail where only ``nft`` is missing."""
    if skipped_on_request("netns"):
        pytest.skip("HM_TEST_NETNS=skip: the lab tests are skipped on request")
    if not can_make_namespaces():
        pytest.skip("network namespaces cannot be made here (root and `ip netns` are needed)")
    if shutil.which("nft") is None:
        pytest.fail("the lab needs nft: apt-get install nftables (.ci/run does)", pytrace=False)


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A new lab with no host; closed after the test, passed or failed."""
    require_lab()
    made = Lab()
    try:
        yield made
    finally:
        made.close()
