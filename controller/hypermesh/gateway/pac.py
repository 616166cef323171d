"""The PAC file that sends only HyperMesh names to the gateway: pure text."""

from __future__ import annotations

from hypermesh.gateway.authority import check_tlds


def pac_file(tlds: tuple[str, ...], proxy: str) -> str:
    """``FindProxyForURL`` sending every name under ``tlds`` to ``proxy`` (``HOST:PORT``) and
    everything else ``DIRECT`` (a bare TLD too: it names no host the gateway could serve)."""
    tlds = check_tlds(tlds)
    tests = " ||\n        ".join(f'dnsDomainIs(host, ".{tld}")' for tld in tlds)
    return (
        "// HyperMesh gateway: names under "
        + ", ".join(f".{t}" for t in tlds)
        + f" go through {proxy}; everything else is DIRECT.\n"
        "function FindProxyForURL(url, host) {\n"
        '    host = host.toLowerCase().replace(/\\.$/, "");\n'
        f"    if ({tests}) {{\n"
        f'        return "PROXY {proxy}";\n'
        "    }\n"
        '    return "DIRECT";\n'
        "}\n"
    )
