"""From loaded documents to a validated DesiredState, collecting every problem at once.

Three passes: each document against its kind's JSON Schema (positions from the loader); then
defaults from the schemas; then the rules a schema cannot say (references between resources,
duplicates, listen-address clashes, cross-field rules).
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, BinaryIO

from hypermesh import API_VERSION
from hypermesh.errors import ManifestError, Position, Problem
from hypermesh.model.addresses import explain, split_host_port
from hypermesh.model.loader import Document, FieldPath, FileCache, LoadResult, dotted, load
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.model.schemas import (
    DURATION_PATTERN,
    HOST_PORT_PATTERN,
    KINDS,
    LABEL_PATTERN,
    NAME_PATTERN,
    NODE_ID_PATTERN,
    fast_validator_for,
    load_schema,
    validator_for,
)
from hypermesh.policy import PolicyEngine
from hypermesh.zonedata import (
    RecordSet,
    ZoneDataError,
    check_owner,
    owner_name,
    record_type,
    tld_label,
)

__all__ = [
    "ManifestSet",
    "build",
    "check_references",
    "load_desired",
    "resource_problems",
    "split_host_port",
]


def load_desired(paths: Iterable[str], stdin: BinaryIO | None = None) -> DesiredState:
    """Load, validate and default every manifest; raise ManifestError with every problem."""
    loaded = load(paths, stdin)
    desired, problems = build(loaded)
    if problems:
        raise ManifestError(problems)
    return desired


_Built = tuple[Resource | None, list[Problem], ResourceKey | None]
Memo = dict[int, tuple[Document, list[_Built]]]
"""What ``build`` made of each document it saw, keyed by the document object's id."""


def build(loaded: LoadResult, memo: Memo | None = None) -> tuple[DesiredState, list[Problem]]:
    """Turn documents into resources; returns the state and every problem found.

    With a ``memo``, documents seen before (the same objects, from a loader cache) are not
    validated again; the checks between resources always run on the whole set.
    """
    problems = list(loaded.problems)
    resources: list[Resource] = []
    invalid: set[ResourceKey] = set()
    fresh: Memo = {}
    for document in loaded.documents:
        seen = memo.get(id(document)) if memo is not None else None
        if seen is not None and seen[0] is document:
            built = seen[1]
        else:
            built = [_build_one(item) for item in _expand_lists([document])]
        fresh[id(document)] = (document, built)
        for resource, found, key in built:
            problems.extend(found)
            if resource is not None:
                resources.append(resource)
            elif key is not None:
                invalid.add(key)
    if memo is not None:
        memo.clear()
        memo.update(fresh)
    problems.extend(check_references(resources, invalid))
    return DesiredState.of(resources, loaded.files), problems


def _build_one(document: Document) -> _Built:
    found: list[Problem] = []
    resource = _resource(document, found)
    return (resource, found, None if resource is not None else _key_of(document))


class ManifestSet:
    """The manifests behind ``-f``, re-read incrementally: only files that changed are parsed
    and validated again (``hmctl controller run`` reloads on every edit)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = list(paths)
        self._files: FileCache = {}
        self._memo: Memo = {}

    def load(self) -> DesiredState:
        """The current desired state; raises ManifestError with every problem."""
        loaded = load(self.paths, cache=self._files)
        live = set(loaded.files)
        for stale in [f for f in self._files if f not in live]:
            del self._files[stale]
        desired, problems = build(loaded, self._memo)
        if problems:
            raise ManifestError(problems)
        return desired


def _expand_lists(documents: Iterable[Document]) -> Iterable[Document]:
    """Each item of a ``kind: List`` (what ``hmctl get -o yaml`` prints) as a document."""
    for document in documents:
        data = document.data
        if (
            isinstance(data, dict)
            and data.get("kind") == "List"
            and data.get("apiVersion") == "v1"
            and isinstance(data.get("items"), list)
        ):
            for i, item in enumerate(data["items"]):
                yield replace(document, data=item, prefix=("items", i))
        else:
            yield document


def _key_of(document: Document) -> ResourceKey | None:
    """The key a document claims, even when it is invalid (so references to it do not cascade
    into more errors)."""
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None
    kind, name = data.get("kind"), data["metadata"].get("name")
    namespace = data["metadata"].get("namespace", "")
    if isinstance(kind, str) and isinstance(name, str) and isinstance(namespace, str):
        return ResourceKey(kind, name, namespace)
    return None


def _label(key: ResourceKey) -> str:
    """How a problem names the resource: ``str(key)``, with a name or namespace that is not
    plain printable text quoted, so that a message stays on one line."""

    def plain(part: str) -> str:
        clean = part.isprintable() and not any(c.isspace() for c in part)
        return part if clean else repr(part)

    return str(ResourceKey(key.kind, plain(key.name), plain(key.namespace)))


def _resource(document: Document, problems: list[Problem]) -> Resource | None:
    data = document.data
    if not isinstance(data, dict):
        problems.append(
            Problem(
                document.position(),
                f"a manifest document must be a mapping, not {_type_name(data)}",
            )
        )
        return None
    kind = data.get("kind")
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    key = _key_of(document)
    label = _label(key) if key is not None else ""
    if not isinstance(kind, str) or not kind:
        problems.append(Problem(document.position(), "missing 'kind'", label, "kind"))
        return None
    if kind not in KINDS:
        hint = _did_you_mean(kind, KINDS)
        problems.append(
            Problem(
                document.position(("kind",)),
                f"unknown kind {kind!r}{hint}; known kinds: {', '.join(KINDS)}",
                label,
                "kind",
            )
        )
        return None
    if data.get("apiVersion") != API_VERSION:
        got = data.get("apiVersion")
        problems.append(
            Problem(
                document.position(("apiVersion",)),
                f"apiVersion must be {API_VERSION!r}, got {got!r}"
                if got is not None
                else f"missing apiVersion (want {API_VERSION!r})",
                label,
                "apiVersion",
            )
        )
        return None
    found = [_schema_problem(document.position, label, error) for error in _errors(kind, data)]
    if found:
        problems.extend(found)
        return None
    assert isinstance(meta, dict) and isinstance(name, str)
    spec = _with_defaults(load_schema(kind)["properties"]["spec"], data["spec"])
    return Resource(
        kind=kind,
        name=name,
        namespace=meta.get("namespace", ""),
        spec=spec,
        labels=meta.get("labels", {}),
        annotations=meta.get("annotations", {}),
        document=document,
    )


def resource_problems(resource: Resource) -> list[Problem]:
    """What its kind's schema says is wrong with ``resource``: none for one that ``build``
    made, but a resource made by other code (the operator, a program) is checked too before
    anything acts on it."""
    data = resource.to_manifest()
    label = str(resource.key)
    return [
        _schema_problem(lambda _path: resource.position(), label, error)
        for error in _errors(resource.kind, data)
    ]


def _errors(kind: str, data: dict[str, Any]) -> list[Any]:
    """Schema errors of one document. The compiled validator decides (fast); jsonschema
    explains, as its errors carry the keyword and the schema. Both match patterns as ECMA-262
    does (``schemas.ecma_regex``), so they agree."""
    fast = fast_validator_for(kind)
    if fast.is_valid(data):
        return []
    found = sorted(
        validator_for(kind).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))
    )
    # Should they ever disagree, the compiled validator's finding is reported as it is.
    return found or [_FastError(e) for e in fast.iter_errors(data)]


class _FastError:
    """A jsonschema-rs error in the shape ``_schema_problem`` reads."""

    validator = "fast"
    validator_value: Any = None
    schema: dict[str, Any] = {}

    def __init__(self, error: Any) -> None:
        self.absolute_path = list(error.instance_path)
        self.message = str(error.message)
        self.instance = error.instance


def _schema_problem(where: Callable[[FieldPath], Position], label: str, error: Any) -> Problem:
    path = tuple(error.absolute_path)
    keyword = error.validator
    instance = error.instance
    message = error.message
    if "propertyNames" in getattr(error, "relative_schema_path", ()):  # a key of a map
        path = (*path, str(instance))
        if keyword == "pattern":
            message = f"key {_short(instance)} is not valid: {_pattern_hint(error.validator_value)}"
        else:
            message = f"key {_short(instance)}: {error.message}"
        return Problem(where(path), message, label, dotted(path))
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        if extra:
            key = extra[0]
            hint = _did_you_mean(key, allowed)
            more = f" (and {', '.join(map(repr, extra[1:]))})" if len(extra) > 1 else ""
            return Problem(
                where((*path, key)),
                f"unknown field {key!r}{more}{hint}",
                label,
                dotted((*path, key)),
            )
    elif keyword == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(error.message)
        return Problem(
            where(path),
            f"missing required field {missing!r}",
            label,
            dotted((*path, missing)),
        )
    elif keyword == "type":
        want = error.validator_value
        want_text = " or ".join(want) if isinstance(want, list) else str(want)
        message = f"expected {want_text}, got {_type_name(instance)} {_short(instance)}"
    elif keyword == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        message = f"{_short(instance)} is not one of: {options}"
        if isinstance(instance, str):
            message += _did_you_mean(instance, [str(v) for v in error.validator_value])
    elif keyword == "pattern" and error.validator_value == HOST_PORT_PATTERN:
        message = explain(instance)
    elif keyword == "pattern":
        message = f"{_short(instance)} is not valid: {_pattern_hint(error.validator_value)}"
    elif keyword == "const":
        message = f"must be {error.validator_value!r}"
    elif keyword == "uniqueItems":
        message = "items must be unique"
    elif keyword in ("minimum", "maximum", "minItems", "maxItems", "maxLength", "minLength"):
        message = error.message.replace(repr(instance), _short(instance))
    return Problem(where(path), message, label, dotted(path))


_PATTERN_HINTS = {
    NAME_PATTERN: (
        "names must be lowercase letters, digits, '-' and '.', "
        "starting and ending with a letter or digit"
    ),
    LABEL_PATTERN: "expected a DNS label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    NODE_ID_PATTERN: "a node ID is 'hm1' followed by 52 base32 characters (a-z, 2-7)",
    DURATION_PATTERN: "expected a duration such as 30s, 15m, 2h or 1d",
}


def _pattern_hint(pattern: str) -> str:
    """What a value of ``pattern`` looks like, in words."""
    return _PATTERN_HINTS.get(pattern, f"must match {pattern!r}")


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _short(value: Any) -> str:
    """``repr(value)`` cut to about 40 characters, keeping both ends (a stray character at
    the end, such as a newline, stays visible)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:24] + "..." + text[-13:]


def _with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A copy of ``value`` with the schema's defaults filled in for absent object fields."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        out = {k: _with_defaults(props.get(k, {}), v) for k, v in value.items()}
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_with_defaults(schema["items"], v) for v in value]
    return value


# -- rules between resources ----------------------------------------------------------------


def check_references(
    resources: list[Resource], invalid: set[ResourceKey] | frozenset[ResourceKey] = frozenset()
) -> list[Problem]:
    """Every rule that spans resources or fields; returns all problems found. ``invalid`` are
    the keys of documents that failed their schema: references to them are not reported again."""
    problems: list[Problem] = []
    seen: dict[ResourceKey, Resource] = {}
    for resource in resources:
        first = seen.get(resource.key)
        if first is not None:
            where = first.position()
            problems.append(
                Problem(
                    resource.position(),
                    f"duplicate resource: {resource.key} is already defined at {where}",
                    str(resource.key),
                    "metadata.name",
                )
            )
        else:
            seen[resource.key] = resource

    def exists(kind: str, name: str, namespace: str) -> bool:
        key = ResourceKey(kind, name, namespace)
        return key in seen or key in invalid

    def ref(
        resource: Resource, kind: str, name: Any, *path: str | int, role: str | None = None
    ) -> None:
        if not isinstance(name, str):
            return
        key = ResourceKey(kind, name, resource.namespace)
        target = seen.get(key)
        if target is None and key in invalid:
            return
        if target is None:
            declared = [k.name for k in seen if k.kind == kind]
            problems.append(
                Problem(
                    resource.position(*path),
                    f"{kind} {name!r} is not declared{_did_you_mean(name, declared)}",
                    str(resource.key),
                    dotted(("spec", *path)),
                )
            )
        elif role is not None and role not in target.spec.get("roles", []):
            problems.append(
                Problem(
                    resource.position(*path),
                    f"Node {name!r} is named as registry but lacks role {role!r}",
                    str(resource.key),
                    dotted(("spec", *path)),
                )
            )

    listeners: dict[tuple[str, int], Resource] = {}
    for resource in seen.values():
        spec = resource.spec
        kind = resource.kind
        if kind != "Network":
            ref(resource, "Network", spec.get("network"), "network")
        if kind == "Network":
            _check_network(resource, problems, ref)
        elif kind == "Node":
            _check_listen(resource, listeners, problems)
        elif kind == "TLD":
            owner = spec.get("owner", {})
            if ("node" in owner and "peer" in owner) or not owner:
                problems.append(
                    Problem(
                        resource.position("owner"),
                        "owner needs exactly one of 'node' or 'peer'",
                        str(resource.key),
                        "spec.owner",
                    )
                )
            ref(resource, "Node", owner.get("node"), "owner", "node")
            ref(resource, "Peer", owner.get("peer"), "owner", "peer")
            _check_tld_name(resource, problems)
        elif kind == "Record":
            ref(resource, "TLD", spec.get("tld"), "tld")
            has_values, has_target = "values" in spec, "target" in spec
            if has_values == has_target:
                problems.append(
                    Problem(
                        resource.position(),
                        "a Record needs exactly one of 'values' or 'target'",
                        str(resource.key),
                        "spec",
                    )
                )
            if has_target:
                ref(resource, "Node", spec["target"].get("node"), "target", "node")
            elif "type" not in spec:
                problems.append(
                    Problem(
                        resource.position(),
                        "missing required field 'type' (only a target record may omit it)",
                        str(resource.key),
                        "spec.type",
                    )
                )
            else:
                _check_record_data(resource, problems)
        elif kind == "InterfacePolicy":
            _check_policy(resource, problems, ref, exists, seen.values())
    _check_record_owners([r for r in seen.values() if r.kind == "Record"], problems)
    return problems


def _check_network(resource: Resource, problems: list[Problem], ref: Any) -> None:
    spec = resource.spec
    registry = spec.get("registry") or {}
    if "node" in registry:
        if "endpoint" in registry or "identity" in registry:
            problems.append(
                Problem(
                    resource.position("registry"),
                    "registry is either a 'node' of this manifest or an 'endpoint' with an "
                    "'identity', not both",
                    str(resource.key),
                    "spec.registry",
                )
            )
        ref(resource, "Node", registry["node"], "registry", "node", role="registry")
    elif registry and not ("endpoint" in registry and "identity" in registry):
        problems.append(
            Problem(
                resource.position("registry"),
                "a remote registry needs both 'endpoint' and 'identity'",
                str(resource.key),
                "spec.registry",
            )
        )
    names: set[str] = set()
    for i, item in enumerate(spec.get("federation", [])):
        where = ("federation", i)
        if ("network" in item) == ("registry" in item):
            problems.append(
                Problem(
                    resource.position(*where),
                    "a federated network is named by exactly one of 'network' (of these "
                    "manifests) or 'registry' (a remote one)",
                    str(resource.key),
                    f"spec.federation[{i}]",
                )
            )
        if item.get("network") == resource.name:
            problems.append(
                Problem(
                    resource.position(*where, "network"),
                    "a network cannot federate with itself",
                    str(resource.key),
                    f"spec.federation[{i}].network",
                )
            )
        elif "network" in item:
            ref(resource, "Network", item["network"], *where, "network")
        if item.get("name") in names:
            problems.append(
                Problem(
                    resource.position(*where, "name"),
                    f"federated network name {item.get('name')!r} is used twice",
                    str(resource.key),
                    f"spec.federation[{i}].name",
                )
            )
        names.add(str(item.get("name")))
    if spec.get("mode") == "ephemeral" and "ttl" not in spec:
        problems.append(
            Problem(
                resource.position("mode"),
                "an ephemeral network needs a 'ttl'",
                str(resource.key),
                "spec.ttl",
            )
        )
    if spec.get("mode") != "ephemeral" and "ttl" in spec:
        problems.append(
            Problem(
                resource.position("ttl"),
                "only an ephemeral network has a 'ttl'",
                str(resource.key),
                "spec.ttl",
            )
        )


def _check_listen(
    resource: Resource, listeners: dict[tuple[str, int], Resource], problems: list[Problem]
) -> None:
    listen = resource.spec.get("listen", "")
    try:
        host, port = split_host_port(listen)
    except ValueError as exc:  # the schema refuses it first; never reached from build
        problems.append(
            Problem(resource.position("listen"), str(exc), str(resource.key), "spec.listen")
        )
        return
    if port == 0:
        return
    for (other_host, other_port), other in listeners.items():
        if other_port == port and _hosts_overlap(host, other_host):
            problems.append(
                Problem(
                    resource.position("listen"),
                    f"listen address {listen} clashes with {other.key} "
                    f"({other.spec['listen']}) at {other.position('listen')}",
                    str(resource.key),
                    "spec.listen",
                )
            )
            return
    listeners[(host, port)] = resource


def _hosts_overlap(a: str, b: str) -> bool:
    a, b = _normal_host(a), _normal_host(b)
    wildcard = {"0.0.0.0", "::"}  # noqa: S104 (a comparison, not a bind)
    return a == b or a in wildcard or b in wildcard


def _normal_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _check_policy(
    resource: Resource,
    problems: list[Problem],
    ref: Any,
    exists: Any,
    resources: Iterable[Resource],
) -> None:
    spec = resource.spec
    ns = resource.namespace
    groups = spec.get("groups", {})
    network = next(
        (
            r
            for r in resources
            if r.kind == "Network" and r.name == spec.get("network") and r.namespace == ns
        ),
        None,
    )
    federated = {
        str(f.get("name")) for f in (network.spec.get("federation", []) if network else [])
    }
    for group, members in groups.items():
        for i, member in enumerate(members):
            if not (exists("Node", member, ns) or exists("Peer", member, ns)):
                problems.append(
                    Problem(
                        resource.position("groups", group, i),
                        f"group member {member!r} is neither a declared Node nor Peer",
                        str(resource.key),
                        f"spec.groups.{group}[{i}]",
                    )
                )
    for r, rule in enumerate(spec.get("rules", [])):
        for side in ("from", "to"):
            selector = rule.get(side, {})
            for i, name in enumerate(selector.get("nodes", [])):
                ref(resource, "Node", name, "rules", r, side, "nodes", i)
            for i, name in enumerate(selector.get("peers", [])):
                ref(resource, "Peer", name, "rules", r, side, "peers", i)
            for i, name in enumerate(selector.get("networks", [])):
                if side == "to" or name not in federated:
                    problems.append(
                        Problem(
                            resource.position("rules", r, side, "networks", i),
                            f"{name!r} is not a federated network of network "
                            f"{spec.get('network')!r} (spec.federation)"
                            if side == "from"
                            else "'to' names nodes of this network, not federated networks",
                            str(resource.key),
                            f"spec.rules[{r}].{side}.networks[{i}]",
                        )
                    )
            for i, name in enumerate(selector.get("groups", [])):
                if name not in groups:
                    problems.append(
                        Problem(
                            resource.position("rules", r, side, "groups", i),
                            f"group {name!r} is not defined in spec.groups",
                            str(resource.key),
                            f"spec.rules[{r}].{side}.groups[{i}]",
                        )
                    )
    for t, test in enumerate(spec.get("tests", [])):
        sender = test.get("from")
        if isinstance(sender, str) and "/" in sender:
            if sender.split("/", 1)[0] not in federated:
                problems.append(
                    Problem(
                        resource.position("tests", t, "from"),
                        f"{sender!r}: {sender.split('/', 1)[0]!r} is not a federated network "
                        f"of network {spec.get('network')!r} (spec.federation)",
                        str(resource.key),
                        f"spec.tests[{t}].from",
                    )
                )
        elif isinstance(sender, str) and not (
            exists("Node", sender, ns) or exists("Peer", sender, ns)
        ):
            problems.append(
                Problem(
                    resource.position("tests", t, "from"),
                    f"{sender!r} is neither a declared Node nor Peer",
                    str(resource.key),
                    f"spec.tests[{t}].from",
                )
            )
        if "to" in test:
            ref(resource, "Node", test["to"], "tests", t, "to")
    # The policy's own tests must hold before it is accepted (as Tailscale's ACL tests).
    for result in PolicyEngine.of(spec, resources).run_tests():
        if not result.passed:
            problems.append(
                Problem(
                    resource.position("tests", result.index, "expect"),
                    f"policy test {result.name!r} fails: {result.describe()}",
                    str(resource.key),
                    f"spec.tests[{result.index}]",
                )
            )


def _check_tld_name(resource: Resource, problems: list[Problem]) -> None:
    """A TLD's name is one label under the registry's own rule (``hypermesh.zonedata``)."""
    try:
        canonical = tld_label(resource.name)
    except ZoneDataError as exc:
        message = "a TLD is a single label: " + ("no dots" if "." in resource.name else str(exc))
    else:
        if canonical == resource.name:
            return
        message = f"a TLD is named in canonical form: {canonical!r}"
    problems.append(Problem(resource.position(), message, str(resource.key), "metadata.name"))


TARGET_TYPES = ("HTTPS", "A")
"""What a ``target`` Record publishes at its own name (its TLSA goes under ``_443._udp``)."""


def _record_owner(resource: Resource) -> tuple[str, str, str] | None:
    """``(tld, canonical owner name, type)`` of a Record whose data holds, else None."""
    spec = resource.spec
    tld, kind = spec.get("tld"), spec.get("type", "HTTPS" if "target" in spec else None)
    if not isinstance(tld, str) or not isinstance(kind, str):
        return None
    name = spec.get("name")
    if name is None:
        name = "@" if resource.name == tld else resource.name.removesuffix(f".{tld}")
    try:
        return tld, owner_name(name, f"{tld}."), record_type(kind)
    except ZoneDataError:
        return None  # reported by _check_record_data


def _check_record_owners(records: list[Resource], problems: list[Problem]) -> None:
    """The registry's rules across Records at one name (``zonedata.check_owner``: a CNAME
    stands alone), and one Record per name and type: what validates, the registry stores."""
    at: dict[tuple[str, str], list[tuple[str, Resource]]] = {}
    for resource in records:
        owner = _record_owner(resource)
        if owner is None:
            continue
        tld, name, kind = owner
        kinds = TARGET_TYPES if "target" in resource.spec else (kind,)
        at.setdefault((tld, name), []).extend((k, resource) for k in kinds)
    for (tld, name), held in at.items():
        first: dict[str, Resource] = {}
        for kind, resource in held:
            other = first.setdefault(kind, resource)
            if other is not resource:
                path = ("name",) if "name" in resource.spec else ()
                problems.append(
                    Problem(
                        resource.position(*path),
                        f"{name} {kind} in TLD {tld!r} is also declared by {other.key}",
                        str(resource.key),
                        dotted(("spec", *path)) if path else "metadata.name",
                    )
                )
        try:
            check_owner(name, first)
        except ZoneDataError as exc:
            cname = first["CNAME"]
            path = ("type",) if "type" in cname.spec else ()
            problems.append(
                Problem(cname.position(*path), exc.message, str(cname.key), dotted(("spec", *path)))
            )


def _check_record_data(resource: Resource, problems: list[Problem]) -> None:
    """A Record's owner name, type and values under the registry's own rule
    (``hypermesh.zonedata``): what validates here, the registry stores."""
    spec = resource.spec
    tld = spec.get("tld")
    if not isinstance(tld, str):
        return
    name = spec.get("name")
    if name is None:  # as the Record driver derives it
        name = "@" if resource.name == tld else resource.name.removesuffix(f".{tld}")
    ttl = spec.get("ttl", 0)
    rrset = RecordSet(name, str(spec["type"]), ttl, tuple(spec.get("values") or ()))
    try:
        rrset.canonical(f"{tld}.")
    except ZoneDataError as exc:
        path: tuple[str | int, ...]
        if exc.field.startswith("values["):
            path = ("values", int(exc.field[len("values[") : -1]))
        elif exc.field in ("name", "type", "ttl"):
            path = (exc.field,)
        else:
            path = ("values",)
        if path == ("name",) and "name" not in spec:
            position, where = resource.position(), "metadata.name"
        else:
            position, where = resource.position(*path), dotted(("spec", *path))
        problems.append(Problem(position, exc.message, str(resource.key), where))
