"""The planner is pure: same inputs, same plan; tested without any I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Action, DiffOp, Drift, DriftKind, Observed, diff, plan


def res(kind: str, name: str, **spec: object) -> Resource:
    return Resource(kind=kind, name=name, spec=spec)


DESIRED = DesiredState.of(
    [
        res("Node", "a", network="n", listen="127.0.0.1:0"),
        res("Record", "www.t", tld="t", type="A", values=["192.0.2.1"]),
        res("Network", "n", mode="private"),
        res("TLD", "t", network="n", owner={"node": "a"}),
    ]
)


def applied(resource: Resource, **override: object) -> Observed:
    return Observed(resource.key, spec={**resource.spec, **override}, generation=1)


def test_from_empty_everything_is_created_in_dependency_order() -> None:
    result = plan(DESIRED, [])
    assert [i.action for i in result.items] == [Action.CREATE] * 4
    assert [i.key.kind for i in result.items] == ["Network", "Node", "TLD", "Record"]
    assert result.count(Action.CREATE) == 4
    assert result.has_changes


def test_converged_state_is_all_noop() -> None:
    result = plan(DESIRED, [applied(r) for r in DESIRED])
    assert not result.has_changes
    assert result.summary() == "0 to create, 0 to update, 0 to delete, 4 unchanged"


def test_update_carries_field_level_diffs() -> None:
    observed = [applied(r) for r in DESIRED]
    node = DESIRED.get("Node", "a")
    assert node is not None
    observed[1] = applied(node, listen="127.0.0.1:7000", roles=["mirror"])
    result = plan(DESIRED, observed)
    (item,) = result.changes
    assert item.action is Action.UPDATE and item.key == ResourceKey("Node", "a")
    assert [(d.op, d.field, d.old, d.new) for d in item.diffs] == [
        (DiffOp.CHANGE, "listen", "127.0.0.1:7000", "127.0.0.1:0"),
        (DiffOp.REMOVE, "roles", ["mirror"], None),
    ]


def test_drift_without_spec_change_is_an_update_marked_as_drift() -> None:
    observed = [applied(r) for r in DESIRED]
    observed[1] = Observed(
        observed[1].key,
        observed[1].spec,
        1,
        drift=(Drift(DriftKind.MISSING, "process not running"),),
    )
    (item,) = plan(DESIRED, observed).changes
    assert item.action is Action.UPDATE
    assert item.diffs == ()
    assert item.drift == (Drift(DriftKind.MISSING, "process not running"),)
    assert item.to_dict()["drift"] == ["process not running"]  # JSON says the words


def test_deletes_only_with_prune_and_in_reverse_dependency_order() -> None:
    extra = [
        Observed(ResourceKey("Node", "old"), {"network": "n"}, 1),
        Observed(ResourceKey("Record", "gone.t"), {"tld": "t"}, 1),
        Observed(ResourceKey("Node", "foreign"), {"network": "n"}, 1, managed=False),
    ]
    observed = [applied(r) for r in DESIRED] + extra
    kept = plan(DESIRED, observed)
    assert not kept.has_changes
    assert set(kept.orphans) == {ResourceKey("Node", "old"), ResourceKey("Record", "gone.t")}
    pruned = plan(DESIRED, observed, prune=True)
    assert [(i.action, str(i.key)) for i in pruned.changes] == [
        (Action.DELETE, "Record/gone.t"),
        (Action.DELETE, "Node/old"),
    ]


def test_plan_json_shape() -> None:
    data = plan(DESIRED, []).to_dict()
    assert data["changes"] is True
    assert data["summary"] == {"create": 4, "update": 0, "delete": 0, "noop": 0}
    first = data["items"][0]
    assert first["action"] == "create" and first["resource"] == "Network/n"
    assert first["diff"] == [{"op": "add", "field": "mode", "new": "private"}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values, json_values)
def test_diff_is_empty_exactly_when_equal(old: object, new: object) -> None:
    assert (diff(old, new) == ()) == (old == new and type(old) is type(new))


@given(
    st.dictionaries(st.text(max_size=3), json_values, max_size=4),
    st.dictionaries(st.text(max_size=3), json_values, max_size=4),
)
def test_diff_applied_to_old_gives_new(old: dict[str, object], new: dict[str, object]) -> None:
    result: dict[str, object] = dict(old)

    def put(target: dict[str, object], path: tuple[object, ...], value: object) -> None:
        for part in path[:-1]:
            target = target[part]  # type: ignore[assignment,index]
        target[path[-1]] = value  # type: ignore[index]

    def drop(target: dict[str, object], path: tuple[object, ...]) -> None:
        for part in path[:-1]:
            target = target[part]  # type: ignore[assignment,index]
        del target[path[-1]]  # type: ignore[arg-type]

    import copy

    result = copy.deepcopy(old)
    for item in diff(old, new):
        if item.op is DiffOp.REMOVE:
            drop(result, item.path)
        else:
            put(result, item.path, copy.deepcopy(item.new))
    assert result == new
