"""Rendering: secrets masked, tables aligned, plans as unified diffs, colour only when asked."""

from __future__ import annotations

from hypermesh.cli.render import MASK, Palette, mask_secrets, render_markdown, render_plan, table
from hypermesh.model.resources import DesiredState, Resource
from hypermesh.plan import Observed, plan
from hypermesh.plan.planner import Drift, DriftKind


def test_secrets_are_masked_at_any_depth() -> None:
    masked = mask_secrets({"a": 1, "apiToken": "t0k", "nested": [{"private_key": "k", "ok": 2}]})
    assert masked == {"a": 1, "apiToken": MASK, "nested": [{"private_key": MASK, "ok": 2}]}


def test_a_diff_never_shows_a_secret_value() -> None:
    desired = DesiredState.of([Resource("Peer", "p", {"network": "n", "password": "new-s3cret"})])
    observed = [Observed(desired.resources[0].key, {"network": "n", "password": "old-s3cret"})]
    text = render_plan(plan(desired, observed), Palette(False))
    assert "s3cret" not in text
    assert plan(desired, observed).to_dict()["items"]  # the change itself is still planned


def test_table_aligns_columns_and_marks_empty_cells() -> None:
    text = table(["NAME", "ADDRESS"], [["alpha", "127.0.0.1:1"], ["b", None]])
    assert text.splitlines() == ["NAME    ADDRESS", "alpha   127.0.0.1:1", "b       <none>"]


def test_plan_renders_like_kubectl_diff() -> None:
    before = Resource("Node", "a", {"network": "n", "interfaces": ["public"]})
    after = Resource("Node", "a", {"network": "n", "interfaces": ["public", "private"]})
    the_plan = plan(DesiredState.of([after]), [Observed(before.key, before.spec)])
    plain = render_plan(the_plan, Palette(False))
    assert "~ update Node/a" in plain
    assert "--- Node/a (applied)" in plain and "+++ Node/a (desired)" in plain
    assert "+  - private" in plain
    assert "\033[" not in plain
    coloured = render_plan(the_plan, Palette(True))
    assert "\033[32m+  - private\033[0m" in coloured


def test_a_one_line_change_shows_one_line_whatever_the_key_order() -> None:
    written = {
        "network": "n",
        "listen": "127.0.0.1:0",
        "roles": ["mirror"],
        "interfaces": ["public"],
    }
    stored = {k: written[k] for k in sorted(written)} | {"interfaces": ["public", "private"]}
    after = Resource("Node", "a", written)
    the_plan = plan(DesiredState.of([after]), [Observed(after.key, stored)])
    changed = [
        line
        for line in render_plan(the_plan, Palette(False)).splitlines()
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert changed == ["-  - private"]


def test_markdown_puts_creates_changes_prunes_and_drift_in_sections() -> None:
    declared = [
        Resource("Node", "new", {"network": "n"}),
        Resource("Node", "edited", {"network": "n", "interfaces": ["public"], "token": "s3cret"}),
        Resource("Node", "drifted", {"network": "n"}),
    ]
    observed = [
        Observed(declared[1].key, {"network": "n", "interfaces": ["public", "private"]}),
        Observed(
            declared[2].key, {"network": "n"}, drift=(Drift(DriftKind.MISSING, "not running"),)
        ),
        Observed(Resource("Node", "gone", {"network": "n"}).key, {"network": "n"}),
    ]
    text = render_markdown(plan(DesiredState.of(declared), observed, prune=True))
    assert text.startswith("### HyperMesh plan: 1 to create, 2 to update, 1 to delete")
    headings = [line for line in text.splitlines() if line.startswith("#### ")]
    assert headings == [
        "#### Creates (1)",
        "#### Changes (1)",
        "#### Prunes (1)",
        "#### Drift (1): the live objects are put back as declared",
    ]
    changes = text.split("#### Changes")[1].split("#### Prunes")[0]
    assert "<summary><code>Node/edited</code></summary>" in changes
    assert "\n-  - private\n" in changes and "drifted" not in changes
    assert "- `Node/drifted`: not running" in text
    assert "s3cret" not in text
