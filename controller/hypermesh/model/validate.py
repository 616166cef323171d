"""From loaded documents to a validated DesiredState, collecting every problem at once.

Three passes: each document against its kind's JSON Schema (positions from the loader); then
defaults from the schemas; then the rules a schema cannot say (references between resources,
duplicates, listen-address clashes, cross-field rules).
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any, BinaryIO

from hypermesh import API_VERSION
from hypermesh.errors import ManifestError, Position, Problem
from hypermesh.model.loader import Document, FieldPath, FileCache, LoadResult, dotted, load
from hypermesh.model.placement import node_host, reachable_address
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
from hypermesh.policy import PolicyEngine, PolicyError
from hypermesh.transport.address import explain, parse_address
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
]


DRIFT_ANNOTATION = "hypermesh.online/drift"
"""The annotation that sets one resource's drift policy (``reconcile.drift``)."""
DRIFT_POLICIES = ("detect", "correct")


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
    found = _schema_problems(document.position, label, _errors(kind, data))
    if found:
        problems.extend(found)
        return None
    assert isinstance(meta, dict) and isinstance(name, str)
    drift = (meta.get("annotations") or {}).get(DRIFT_ANNOTATION)
    if drift is not None and drift not in DRIFT_POLICIES:
        problems.append(
            Problem(
                document.position(("metadata", "annotations", DRIFT_ANNOTATION)),
                f"{drift!r} is not a drift policy: {' or '.join(DRIFT_POLICIES)}",
                label,
                f"metadata.annotations.{DRIFT_ANNOTATION}",
            )
        )
        return None
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
    return _schema_problems(lambda _path: resource.position(), label, _errors(resource.kind, data))


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
    relative_schema_path: tuple[str | int, ...] = ()

    def __init__(self, error: Any) -> None:
        self.absolute_path = list(error.instance_path)
        self.message = str(error.message)
        self.instance = error.instance


Where = Callable[[FieldPath], Position]
"""Where a field of the document was written."""


def _schema_problems(where: Where, label: str, errors: Iterable[Any]) -> list[Problem]:
    """One problem per schema error, but per missing field for ``required``: jsonschema says
    which field only in its message, so the fields are read from the keyword's own list (its
    errors, one per missing field, come together)."""
    problems: list[Problem] = []
    reported: set[tuple[tuple[str | int, ...], tuple[str | int, ...]]] = set()
    for error in errors:
        if error.validator != "required":
            problems.append(_schema_problem(where, label, error))
            continue
        keyword = (tuple(error.absolute_path), tuple(error.relative_schema_path))
        if keyword not in reported:
            reported.add(keyword)
            problems.extend(_missing_fields(where, label, error))
    return problems


def _missing_fields(where: Where, label: str, error: Any) -> list[Problem]:
    path = tuple(error.absolute_path)
    present = error.instance if isinstance(error.instance, dict) else {}
    return [
        Problem(where(path), f"missing required field {name!r}", label, dotted((*path, name)))
        for name in error.validator_value
        if name not in present
    ]


def _schema_problem(where: Where, label: str, error: Any) -> Problem:
    path = tuple(error.absolute_path)
    if "propertyNames" in error.relative_schema_path:  # a key of a map
        return _key_problem(where, label, error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        problem = _unknown_field(where, label, error)
        if problem is not None:
            return problem
    return Problem(where(path), _keyword_message(error), label, dotted(path))


def _key_problem(where: Where, label: str, error: Any) -> Problem:
    """A key of a map (its schema's ``propertyNames``) that is not valid."""
    key = error.instance
    path = (*error.absolute_path, str(key))
    if error.validator == "pattern":
        message = f"key {_short(key)} is not valid: {_pattern_hint(error.validator_value)}"
    else:
        message = f"key {_short(key)}: {error.message}"
    return Problem(where(path), message, label, dotted(path))


def _unknown_field(where: Where, label: str, error: Any) -> Problem | None:
    """The first field the schema does not know, with a guess at the one meant."""
    allowed = list(error.schema.get("properties", {}))
    extra = sorted(k for k in error.instance if k not in allowed)
    if not extra:
        return None
    path = (*error.absolute_path, extra[0])
    hint = _did_you_mean(extra[0], allowed)
    more = f" (and {', '.join(map(repr, extra[1:]))})" if len(extra) > 1 else ""
    return Problem(where(path), f"unknown field {extra[0]!r}{more}{hint}", label, dotted(path))


_BOUNDS = frozenset({"minimum", "maximum", "minItems", "maxItems", "maxLength", "minLength"})


def _keyword_message(error: Any) -> str:
    """What a schema keyword's error means, said from the keyword and its value."""
    keyword, want, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        want_text = " or ".join(want) if isinstance(want, list) else str(want)
        return f"expected {want_text}, got {_type_name(instance)} {_short(instance)}"
    if keyword == "enum":
        message = f"{_short(instance)} is not one of: {', '.join(str(v) for v in want)}"
        if isinstance(instance, str):
            message += _did_you_mean(instance, [str(v) for v in want])
        return message
    if keyword == "pattern":
        if want == HOST_PORT_PATTERN:
            return explain(instance)
        return f"{_short(instance)} is not valid: {_pattern_hint(want)}"
    if keyword == "const":
        return f"must be {want!r}"
    if keyword == "uniqueItems":
        return "items must be unique"
    if keyword in _BOUNDS:
        return str(error.message).replace(repr(instance), _short(instance))
    return str(error.message)


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
    refs = _References(resources, invalid)
    for resource in refs.declared():
        if resource.kind != "Network":
            refs.ref(resource, "Network", resource.spec.get("network"), "network")
        check = _KIND_CHECKS.get(resource.kind)
        if check is not None:
            check(resource, refs)
    records = [r for r in refs.declared() if r.kind == "Record"]
    _check_record_owners(records, refs.problems, refs.record_owners)
    return refs.problems


class _References:
    """The resources declared (the first of each key), what the rules between them found so
    far, and the listen addresses taken."""

    def __init__(self, resources: Iterable[Resource], invalid: Collection[ResourceKey]) -> None:
        self.problems: list[Problem] = []
        self.seen: dict[ResourceKey, Resource] = {}
        self.invalid = invalid
        self.listeners: dict[tuple[str | None, str, int], Resource] = {}
        """(host the node is placed on, listen host, port) → the Node listening there."""
        self.identities: dict[str, Resource] = {}
        """Pinned node IDs (``Node.spec.identity``) → the first Node pinning it."""
        self.record_owners: dict[ResourceKey, tuple[str, str, str]] = {}
        """Records whose data holds → ``(tld, canonical owner name, type)``."""
        for resource in resources:
            self._declare(resource)

    def _declare(self, resource: Resource) -> None:
        first = self.seen.get(resource.key)
        if first is None:
            self.seen[resource.key] = resource
        else:
            self.problems.append(
                Problem(
                    resource.position(),
                    f"duplicate resource: {resource.key} is already defined at {first.position()}",
                    str(resource.key),
                    "metadata.name",
                )
            )

    def declared(self) -> Iterable[Resource]:
        return self.seen.values()

    def exists(self, kind: str, name: str, namespace: str) -> bool:
        """Whether the resource is declared (a document that failed its schema counts)."""
        key = ResourceKey(kind, name, namespace)
        return key in self.seen or key in self.invalid

    def member_exists(self, name: str, namespace: str) -> bool:
        """Whether ``name`` is a declared Node or Peer."""
        return self.exists("Node", name, namespace) or self.exists("Peer", name, namespace)

    def report(
        self, resource: Resource, message: str, *path: str | int, unresolved: bool = False
    ) -> None:
        """A problem at ``spec.<path>`` of ``resource`` (``unresolved``: a reference to a
        resource not declared)."""
        where, label = resource.position(*path), str(resource.key)
        self.problems.append(Problem(where, message, label, dotted(("spec", *path)), unresolved))

    def ref(
        self, resource: Resource, kind: str, name: Any, *path: str | int, role: str | None = None
    ) -> None:
        """``spec.<path>`` of ``resource`` names a ``kind`` called ``name``: it must be declared
        (and, with a ``role``, be a Node with that role)."""
        if not isinstance(name, str):
            return
        key = ResourceKey(kind, name, resource.namespace)
        target = self.seen.get(key)
        if target is None and key in self.invalid:
            return
        if target is None:
            declared = [k.name for k in self.seen if k.kind == kind]
            hint = _did_you_mean(name, declared)
            self.report(resource, f"{kind} {name!r} is not declared{hint}", *path, unresolved=True)
        elif role is not None and role not in target.spec.get("roles", []):
            message = f"Node {name!r} is named as registry but lacks role {role!r}"
            self.report(resource, message, *path)


def _check_node(resource: Resource, refs: _References) -> None:
    _check_listen(resource, refs.listeners, refs.problems)
    _check_identity(resource, refs)


def _check_identity(resource: Resource, refs: _References) -> None:
    """A node ID is pinned by one Node: two Nodes with one key would be one member under two
    names, and one of them a node its host cannot be."""
    identity = resource.spec.get("identity")
    if not isinstance(identity, str):
        return
    first = refs.identities.get(identity)
    if first is None:
        refs.identities[identity] = resource
        return
    message = (
        f"identity {identity} is already pinned by {first.key} at {first.position('identity')}"
    )
    refs.report(resource, message, "identity")


def _check_remote_registry(network: Resource, refs: _References) -> None:
    """A registry node placed on one host and reached by nodes on another must be found from
    there without asking anyone: by its pinned key (``identity``) and an address others can
    dial (``advertise``, or a ``listen`` with a concrete host and port)."""
    name = (network.spec.get("registry") or {}).get("node")
    registry = refs.seen.get(ResourceKey("Node", str(name), network.namespace)) if name else None
    if registry is None:
        return
    elsewhere = sorted(
        str(node.spec.get("host") or "(no host)")
        for node in refs.declared()
        if node.kind == "Node"
        and node.spec.get("network") == network.name
        and node.namespace == network.namespace
        and node_host(node) != node_host(registry)
    )
    if not elsewhere:
        return
    where = f"nodes on host {elsewhere[0]} reach it from another host"
    if not registry.spec.get("identity"):
        message = (
            f"registry node {registry.name!r} is remote to other hosts ({where}): it needs "
            "'identity' (its node ID, from `hmctl keys show "
            f"{registry.name}` on host {registry.spec.get('host') or '(no host)'})"
        )
        refs.report(registry, message, "host" if registry.spec.get("host") else "network")
    if reachable_address(registry) is None:
        message = (
            f"registry node {registry.name!r} is remote to other hosts ({where}): it needs a "
            "reachable address: 'advertise', or a 'listen' with a concrete host and a port "
            f"other than 0 (not {registry.spec.get('listen')})"
        )
        refs.report(registry, message, "listen")


def _check_tld(resource: Resource, refs: _References) -> None:
    owner = resource.spec.get("owner", {})
    if ("node" in owner and "peer" in owner) or not owner:
        refs.report(resource, "owner needs exactly one of 'node' or 'peer'", "owner")
    refs.ref(resource, "Node", owner.get("node"), "owner", "node")
    refs.ref(resource, "Peer", owner.get("peer"), "owner", "peer")
    _check_tld_name(resource, refs.problems)


def _check_record(resource: Resource, refs: _References) -> None:
    spec = resource.spec
    refs.ref(resource, "TLD", spec.get("tld"), "tld")
    has_values, has_target = "values" in spec, "target" in spec
    if has_values == has_target:
        refs.problems.append(
            Problem(
                resource.position(),
                "a Record needs exactly one of 'values' or 'target'",
                str(resource.key),
                "spec",
            )
        )
    if has_target:
        refs.ref(resource, "Node", spec["target"].get("node"), "target", "node")
    elif "type" not in spec:
        refs.problems.append(
            Problem(
                resource.position(),
                "missing required field 'type' (only a target record may omit it)",
                str(resource.key),
                "spec.type",
            )
        )
    else:
        canonical = _check_record_data(resource, refs.problems)
        if canonical is not None:
            refs.record_owners[resource.key] = (spec["tld"], canonical.name, canonical.type)


def _check_network(resource: Resource, refs: _References) -> None:
    _check_registry(resource, refs)
    _check_remote_registry(resource, refs)
    _check_federation(resource, refs)
    spec = resource.spec
    if spec.get("mode") == "ephemeral" and "ttl" not in spec:
        refs.problems.append(
            Problem(
                resource.position("mode"),
                "an ephemeral network needs a 'ttl'",
                str(resource.key),
                "spec.ttl",
            )
        )
    if spec.get("mode") != "ephemeral" and "ttl" in spec:
        refs.report(resource, "only an ephemeral network has a 'ttl'", "ttl")


def _check_registry(resource: Resource, refs: _References) -> None:
    """A Network's registry is a Node of these manifests with the role, or a remote one."""
    registry = resource.spec.get("registry") or {}
    if "node" in registry:
        if "endpoint" in registry or "identity" in registry:
            message = (
                "registry is either a 'node' of this manifest or an 'endpoint' with an "
                "'identity', not both"
            )
            refs.report(resource, message, "registry")
        refs.ref(resource, "Node", registry["node"], "registry", "node", role="registry")
    elif registry and not ("endpoint" in registry and "identity" in registry):
        refs.report(resource, "a remote registry needs both 'endpoint' and 'identity'", "registry")


def _check_federation(resource: Resource, refs: _References) -> None:
    """Each federated network is named once, by exactly one of a Network or a registry."""
    names: set[str] = set()
    for i, item in enumerate(resource.spec.get("federation", [])):
        if ("network" in item) == ("registry" in item):
            message = (
                "a federated network is named by exactly one of 'network' (of these "
                "manifests) or 'registry' (a remote one)"
            )
            refs.report(resource, message, "federation", i)
        if item.get("network") == resource.name:
            refs.report(
                resource, "a network cannot federate with itself", "federation", i, "network"
            )
        elif "network" in item:
            refs.ref(resource, "Network", item["network"], "federation", i, "network")
        if item.get("name") in names:
            message = f"federated network name {item.get('name')!r} is used twice"
            refs.report(resource, message, "federation", i, "name")
        names.add(str(item.get("name")))


def _check_listen(
    resource: Resource,
    listeners: dict[tuple[str | None, str, int], Resource],
    problems: list[Problem],
) -> None:
    """Two Nodes on one host cannot listen on one port (Nodes on different hosts may)."""
    listen = resource.spec.get("listen", "")
    try:
        host, port = parse_address(listen)
    except ValueError as exc:  # the schema refuses it first; never reached from build
        problems.append(
            Problem(resource.position("listen"), str(exc), str(resource.key), "spec.listen")
        )
        return
    if port == 0:
        return
    placed = node_host(resource)
    for (other_place, other_host, other_port), other in listeners.items():
        if other_place == placed and other_port == port and _hosts_overlap(host, other_host):
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
    listeners[(placed, host, port)] = resource


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


def _check_policy(resource: Resource, refs: _References) -> None:
    spec = resource.spec
    federated = _federated_names(resource, refs)
    for group, members in spec.get("groups", {}).items():
        for i, member in enumerate(members):
            if not refs.member_exists(member, resource.namespace):
                message = f"group member {member!r} is neither a declared Node nor Peer"
                refs.report(resource, message, "groups", group, i, unresolved=True)
    for r, rule in enumerate(spec.get("rules", [])):
        for side in ("from", "to"):
            _check_selector(resource, refs, federated, ("rules", r, side), rule.get(side, {}))
    for t, test in enumerate(spec.get("tests", [])):
        _check_policy_test(resource, refs, federated, t, test)
    _check_policy_tests_hold(resource, refs)


def _federated_names(policy: Resource, refs: _References) -> set[str]:
    """The names the policy's Network gives the networks it federates with."""
    key = ResourceKey("Network", str(policy.spec.get("network")), policy.namespace)
    network = refs.seen.get(key)
    return {str(f.get("name")) for f in (network.spec.get("federation", []) if network else [])}


def _check_selector(
    resource: Resource,
    refs: _References,
    federated: set[str],
    where: tuple[str, int, str],
    selector: dict[str, Any],
) -> None:
    """A rule's ``from`` or ``to`` (at ``spec.<where>``) names what is declared."""
    side = where[-1]
    for i, name in enumerate(selector.get("nodes", [])):
        refs.ref(resource, "Node", name, *where, "nodes", i)
    for i, name in enumerate(selector.get("peers", [])):
        refs.ref(resource, "Peer", name, *where, "peers", i)
    for i, name in enumerate(selector.get("networks", [])):
        if side == "to":
            message = "'to' names nodes of this network, not federated networks"
        elif name not in federated:
            message = (
                f"{name!r} is not a federated network of network "
                f"{resource.spec.get('network')!r} (spec.federation)"
            )
        else:
            continue
        refs.report(resource, message, *where, "networks", i)
    for i, name in enumerate(selector.get("groups", [])):
        if name not in resource.spec.get("groups", {}):
            message = f"group {name!r} is not defined in spec.groups"
            refs.report(resource, message, *where, "groups", i)


def _check_policy_test(
    resource: Resource, refs: _References, federated: set[str], t: int, test: dict[str, Any]
) -> None:
    """A policy test's caller (a member, or ``NETWORK/MEMBER`` of a federated network) and
    target are declared."""
    sender = test.get("from")
    if isinstance(sender, str) and "/" in sender:
        network = sender.split("/", 1)[0]
        if network not in federated:
            message = (
                f"{sender!r}: {network!r} is not a federated network "
                f"of network {resource.spec.get('network')!r} (spec.federation)"
            )
            refs.report(resource, message, "tests", t, "from")
    elif isinstance(sender, str) and not refs.member_exists(sender, resource.namespace):
        message = f"{sender!r} is neither a declared Node nor Peer"
        refs.report(resource, message, "tests", t, "from", unresolved=True)
    if "to" in test:
        refs.ref(resource, "Node", test["to"], "tests", t, "to")


def _check_policy_tests_hold(resource: Resource, refs: _References) -> None:
    """The policy's own tests must hold before it is accepted (as Tailscale's ACL tests)."""
    try:
        results = PolicyEngine.of(resource.spec, refs.declared()).run_tests()
    except PolicyError as exc:  # a spec the schema did not check (made by a program)
        refs.problems.append(Problem(resource.position(), str(exc), str(resource.key), "spec"))
        return
    for result in results:
        if not result.passed:
            refs.problems.append(
                Problem(
                    resource.position("tests", result.index, "expect"),
                    f"policy test {result.name!r} fails: {result.describe()}",
                    str(resource.key),
                    f"spec.tests[{result.index}]",
                )
            )


_KIND_CHECKS: dict[str, Callable[[Resource, _References], None]] = {
    "Network": _check_network,
    "Node": _check_node,
    "TLD": _check_tld,
    "Record": _check_record,
    "InterfacePolicy": _check_policy,
}
"""The rules of each kind that a schema cannot say."""


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


def _check_record_owners(
    records: list[Resource],
    problems: list[Problem],
    known: Mapping[ResourceKey, tuple[str, str, str]],
) -> None:
    """The registry's rules across Records at one name (``zonedata.check_owner``: a CNAME
    stands alone), and one Record per name and type: what validates, the registry stores.
    ``known`` holds the owners ``_check_record_data`` already made canonical."""
    at: dict[tuple[str, str], list[tuple[str, Resource]]] = {}
    for resource in records:
        owner = known.get(resource.key) or _record_owner(resource)
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


def _check_record_data(resource: Resource, problems: list[Problem]) -> RecordSet | None:
    """A Record's owner name, type and values under the registry's own rule
    (``hypermesh.zonedata``): what validates here, the registry stores. Returns the canonical
    record set, or None (with its problem reported)."""
    spec = resource.spec
    tld = spec.get("tld")
    if not isinstance(tld, str):
        return None
    name = spec.get("name")
    if name is None:  # as the Record driver derives it
        name = "@" if resource.name == tld else resource.name.removesuffix(f".{tld}")
    ttl = spec.get("ttl", 0)
    rrset = RecordSet(name, str(spec["type"]), ttl, tuple(spec.get("values") or ()))
    try:
        return rrset.canonical(f"{tld}.")
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
        return None
