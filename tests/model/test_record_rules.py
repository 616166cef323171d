"""Rules across Records at one name, as the registry applies them (``zonedata.check_owner``):
``hmctl validate`` refuses what the registry would, at the Record's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.errors import ManifestError
from hypermesh.model.validate import load_desired

HEAD = """\
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: demo}
spec: {mode: private, registry: {node: reg}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: reg}
spec: {network: demo, roles: [registry], listen: "127.0.0.1:0"}
---
apiVersion: hypermesh.online/v1alpha1
kind: TLD
metadata: {name: acme}
spec: {network: demo, owner: {node: reg}}
"""


def record(name: str, spec: str) -> str:
    return (
        "---\napiVersion: hypermesh.online/v1alpha1\nkind: Record\n"
        f"metadata: {{name: {name}}}\nspec: {{tld: acme, {spec}}}\n"
    )


def problems(tmp_path: Path, *records: str) -> list[str]:
    path = tmp_path / "net.yaml"
    path.write_text(HEAD + "".join(records))
    try:
        load_desired([str(path)])
    except ManifestError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    ("records", "words", "at"),
    [
        (  # a CNAME beside other data, in another Record
            [
                record("www.acme", "type: CNAME, values: [web.acme.]"),
                record("www-a.acme", "name: www, type: A, values: [198.18.0.1]"),
            ],
            "a CNAME stands alone",
            "type: CNAME",
        ),
        (  # beside what a target record publishes
            [
                record("www.acme", "type: CNAME, values: [web.acme.]"),
                record("www-svc.acme", "name: www, target: {node: reg}"),
            ],
            "also holds A, HTTPS",
            "type: CNAME",
        ),
        (  # one name and type declared twice, spelled two ways
            [
                record("alias.acme", "type: TXT, values: ['\"a\"']"),
                record("alias2.acme", "name: Alias, type: TXT, values: ['\"b\"']"),
            ],
            "alias TXT in TLD 'acme' is also declared by Record/alias.acme",
            "name: Alias",
        ),
    ],
)
def test_rules_across_records_at_one_name(
    tmp_path: Path, records: list[str], words: str, at: str
) -> None:
    found = problems(tmp_path, *records)
    assert len(found) == 1, found
    lines = (tmp_path / "net.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if at in text)  # the offending field's line
    assert words in found[0] and f"net.yaml:{line}:" in found[0], found[0]


def test_records_at_different_names_and_types_are_fine(tmp_path: Path) -> None:
    assert (
        problems(
            tmp_path,
            record("www.acme", "type: CNAME, values: [web.acme.]"),
            record("web.acme", "type: A, values: [198.18.0.1]"),
            record("web6.acme", "name: web, type: AAAA, values: ['2001:db8::1']"),
        )
        == []
    )
