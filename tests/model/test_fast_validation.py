"""The compiled validator (jsonschema-rs) and jsonschema agree, and a value only the stricter
one refuses is still refused."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.model.loader import load_text
from hypermesh.model.schemas import fast_validator_for, validator_for
from hypermesh.model.validate import build
from tests.conftest import EXAMPLES

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.sampled_from(
        ["", "a", "127.0.0.1:0", "[::1]:53", "public", "registry", "hm1", "A", "x y", "30s"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["network", "listen", "roles", "interfaces", "tags", "chain", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=8,
)


def _node(spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "hypermesh.online/v1alpha1",
        "kind": "Node",
        "metadata": {"name": "a"},
        "spec": spec,
    }


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["network", "listen", "roles", "interfaces", "tags", "chain", "bogus"]),
        json_values,
        max_size=5,
    )
)
def test_validators_agree_on_generated_nodes(spec: dict[str, Any]) -> None:
    document = _node(spec)
    fast = fast_validator_for("Node").is_valid(document)
    slow = not list(validator_for("Node").iter_errors(document))
    assert fast == slow


def test_validators_agree_on_the_examples() -> None:
    import yaml

    for path in EXAMPLES.rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert fast_validator_for(document["kind"]).is_valid(document), path


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    text = (
        'apiVersion: hypermesh.online/v1alpha1\nkind: Network\nmetadata: {name: "demo\\n"}\n'
        "spec: {mode: private}\n"
    )
    _, problems = build(load_text(text, "nl.yaml"))
    assert problems and problems[0].path == "metadata.name"
