"""The registry's page for people: its TLDs, owners, serials and status, as one HTML document.

Served at ``/registry/`` over HTTP/3 and over HTTP/1.1 on TCP (``node.web``), so an ordinary
browser opens it. Static HTML, no script; every value is escaped; a strict
Content-Security-Policy forbids anything but the inline style.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

from hypermesh.registry.service import Policy, TldInfo
from hypermesh.transport.identity import short_id
from hypermesh.zonedata import ZoneDataError, tld_label, unicode_label

PAGE = "/registry/"

PAGE_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
)

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem;
       color: #1d2329; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
p.meta { color: #5b6570; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #dde2e6;
         vertical-align: top; }
th { font-weight: 600; background: #f4f6f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 13px; word-break: break-all; }
.status { font-weight: 600; }
.active { color: #1a7f37; } .pending { color: #9a6700; }
.rejected, .expired, .problem { color: #cf222e; }
"""


def render_page(tlds: Sequence[TldInfo], policy: Policy, admin: str | None, now: float) -> str:
    """The page as text."""
    e = html.escape
    rows = "\n".join(_row(info) for info in tlds) or (
        '<tr><td colspan="6">No TLD is registered yet.</td></tr>'
    )
    counts: dict[str, int] = {}
    for info in tlds:
        counts[info.status] = counts.get(info.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    reserved = ", ".join(sorted(policy.reserved)) or "none"
    when = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>HyperMesh registry</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>HyperMesh registry</h1>
<p class="meta">{len(tlds)} TLD(s): {e(summary)} &middot; approval {e(policy.approval)}
&middot; term {policy.term_days} days &middot; at most {policy.max_tlds_per_owner} TLD(s) per
owner key &middot; reserved: {e(reserved)}
&middot; administrator <code>{e(admin or "none")}</code> &middot; as of {e(when)}</p>
<table>
<thead><tr><th>TLD</th><th>Status</th><th>Owner</th><th>Serial</th><th>Expires</th>
<th>DS (for DNSSEC)</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _row(info: TldInfo) -> str:
    e = html.escape
    status = e(info.status)
    note = f"<br><small>{e(info.note)}</small>" if info.note else ""
    if info.problem:
        note += f'<br><small class="problem">not served: {e(info.problem)}</small>'
    shown = unicode_label(info.name) if _is_label(info.name) else info.name
    name = f"<strong>{e(info.name)}</strong>" + (f" ({e(shown)})" if shown != info.name else "")
    ds = "<br>".join(f"<code>{e(d)}</code>" for d in info.ds) or "unsigned"
    return (
        f'<tr id="tld-{e(info.name)}"><td>{name}</td>'
        f'<td><span class="status {status}">{status}</span>{note}</td>'
        f'<td><code title="{e(info.owner)}">{e(short_id(info.owner))}…</code></td>'
        f'<td class="num">{info.serial}</td>'
        f"<td>{e(info.expires_at.strftime('%Y-%m-%d'))}</td><td>{ds}</td></tr>"
    )


def _is_label(name: str) -> bool:
    """Whether ``name`` is a canonical TLD label (a row an older release stored may not be)."""
    try:
        return tld_label(name) == name
    except ZoneDataError:
        return False
