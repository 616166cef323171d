"""One resource converged as a pass converges each (``converge_one``, what the operator's
handlers run): applied when new, when the spec changed or when it drifted; left alone when the
world matches; a failure to look is a resource not Ready, not an error."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from hypermesh.errors import TemporaryError
from hypermesh.model.resources import ResourceKey
from hypermesh.plan import DriftKind
from hypermesh.reconcile import MISSING, ApplyContext, Live, converge_one
from hypermesh.reconcile.one import observe, observed_of
from tests.reconcile.test_reconciler import MemoryDriver, World, desired

NODE = ResourceKey("Node", "a")


def run(
    world: World, applied: Mapping[str, Any] | None, *, settles: bool = False
) -> tuple[MemoryDriver, Any]:
    state = desired("a")
    node = state.get("Node", "a")
    assert node is not None
    driver = MemoryDriver("Node", world)
    handle = {"name": "a"} if applied is not None else {}
    result = asyncio.run(
        converge_one(driver, node, handle, applied, ApplyContext(state, 1), settles=settles)
    )
    return driver, result


def test_a_new_resource_is_applied() -> None:
    world = World()
    driver, result = run(world, None)
    assert world.calls == [("apply", "Node/a")]
    assert driver.prepared, "the driver is handed the desired state first"
    assert result.ready and result.reason == "Converged" and result.handle == {"name": "a"}


def test_a_resource_that_matches_the_world_is_left_alone() -> None:
    world = World()
    node = desired("a").get("Node", "a")
    assert node is not None
    world.objects[NODE] = node.spec
    _, result = run(world, dict(node.spec))
    assert world.calls == []
    assert result.ready


def test_a_resource_gone_from_the_world_is_applied_again() -> None:
    world = World()
    node = desired("a").get("Node", "a")
    assert node is not None
    _, result = run(world, dict(node.spec))  # applied once, since deleted by hand
    assert world.calls == [("apply", "Node/a")]
    assert NODE in world.objects and result.ready


def test_a_changed_spec_is_applied() -> None:
    world = World()
    world.objects[NODE] = {"network": "n", "listen": "127.0.0.1:1"}
    _, result = run(world, {"network": "n", "listen": "127.0.0.1:1"})
    assert world.calls == [("apply", "Node/a")]
    assert world.objects[NODE]["listen"] == "127.0.0.1:0" and result.ready


def test_settling_resources_report_what_is_observed_after_applying() -> None:
    world = World()
    _, result = run(world, None, settles=True)
    assert result.ready and result.status == {"address": "x"}


def test_an_apply_failure_is_raised_with_its_retry_policy() -> None:
    world = World()
    world.failures["a"] = [TemporaryError("registry busy", delay=3.0)]
    with pytest.raises(TemporaryError) as raised:
        run(world, None)
    assert raised.value.delay == 3.0


class Blind(MemoryDriver):
    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        raise TemporaryError("cannot reach the node", reason="Unreachable")


def test_a_failure_to_look_is_a_resource_not_ready() -> None:
    live = asyncio.run(observe(Blind("Node", World()), NODE, {}, {"x": 1}))
    assert live.exists and not live.ready and live.reason == "Unreachable"


def test_an_applied_resource_gone_without_a_word_has_drifted_as_missing() -> None:
    seen = observed_of(NODE, {"x": 1}, 3, Live(exists=False))
    assert seen.drift == (MISSING,) and MISSING.kind is DriftKind.MISSING
    assert observed_of(NODE, None, 0, Live(exists=False)).drift == ()  # never applied: new
