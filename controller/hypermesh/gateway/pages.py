"""The pages the gateway itself answers with: errors a person can read, and its own index. Pure:
every value from outside is escaped."""

from __future__ import annotations

import html
from dataclasses import dataclass

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


def reason(status: int) -> str:
    return _REASONS.get(status, "Error")


@dataclass(frozen=True, slots=True)
class Page:
    """A whole response: status, content type, body."""

    status: int
    content_type: str
    body: bytes


def error_page(status: int, title: str, detail: str, host: str = "") -> Page:
    """``status`` with an HTML page saying ``title`` and ``detail`` (and for which ``host``)."""
    where = f" <code>{html.escape(host)}</code>" if host else ""
    text = (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{status} {html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:46em;margin:3em auto;"
        "padding:0 1em;line-height:1.5}code{background:#eee;padding:0 .2em}"
        "h1{color:#a40000}</style></head><body>\n"
        f'<h1 id="title">{html.escape(title)}</h1>\n'
        f'<p id="detail">{html.escape(detail)}</p>\n'
        f"<p>The HyperMesh gateway answered this{where}; no page of the node was shown.</p>\n"
        "</body></html>\n"
    )
    return Page(status, "text/html; charset=utf-8", text.encode())


def index_page(listen: str, tlds: tuple[str, ...], fingerprint: str) -> Page:
    """``GET /`` on the gateway: what it is and where its PAC file and CA are."""
    names = ", ".join(f"<code>.{html.escape(t)}</code>" for t in tlds)
    text = (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>HyperMesh gateway</title></head><body>\n"
        "<h1>HyperMesh gateway</h1>\n"
        f"<p>A proxy on <code>{html.escape(listen)}</code> for names under {names}, each "
        "resolved and checked from the registry's key and reached over HTTP/3 with the key "
        "its TLSA record pins.</p>\n"
        '<ul><li><a href="/proxy.pac">/proxy.pac</a>: the proxy auto-configuration file</li>'
        '<li><a href="/ca.pem">/ca.pem</a>: the local CA (SHA-256 '
        f"<code>{html.escape(fingerprint)}</code>)</li>"
        '<li><a href="/status.json">/status.json</a>: counts</li></ul>\n'
        "</body></html>\n"
    )
    return Page(200, "text/html; charset=utf-8", text.encode())
