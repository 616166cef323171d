"""What ``hmctl validate`` says of a schema error is decided by the error's keyword and values,
not its English text: each missing required field is named once, a bad key of a map is named as
the key, and an unknown field gets a guess at the one meant."""

from __future__ import annotations

from hypermesh.model.loader import load_text
from hypermesh.model.validate import build


def _problems(text: str) -> list[str]:
    loaded = load_text(text, "m.yaml")
    return sorted(str(p) for p in build(loaded)[1])


def test_each_missing_required_field_is_named_once_at_its_object() -> None:
    found = _problems(
        "apiVersion: hypermesh.online/v1alpha1\nkind: Peer\nmetadata: {name: p}\nspec: {}\n"
    )
    assert found == [
        f"m.yaml:4:1: Peer/p: spec.{name}: missing required field {name!r}"
        for name in ("address", "identity", "network")
    ]


def test_a_bad_key_of_a_map_and_an_unknown_field_are_named_as_such() -> None:
    found = _problems(
        "apiVersion: hypermesh.online/v1alpha1\nkind: InterfacePolicy\n"
        "metadata: {name: p}\n"
        "spec: {network: n, interface: private, groups: {Staff: [a]}, rulez: []}\n"
    )
    assert any(
        "spec.groups.Staff: key 'Staff' is not valid: expected a DNS label" in p for p in found
    )
    assert any("spec.rulez: unknown field 'rulez' (did you mean 'rules'?)" in p for p in found)
