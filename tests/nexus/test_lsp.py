"""The language server, driven through its protocol by pygls's client over stdio: a real
``nexus lsp`` process gets initialize, didOpen, didChange, completion and hover, and answers
with diagnostics, completion items and hover text from the schemas."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from hypermesh.nexus.lsp import completions, diagnostics, hover_text

BROKEN = 'network "demo" {\n  mdoe = "private"\n}\n'
FIXED = 'network "demo" {\n  mode = "private"\n}\n'


async def _session(tmp_path: Path) -> dict[str, Any]:
    client = LanguageClient("nexus-test", "1")
    published: asyncio.Queue[types.PublishDiagnosticsParams] = asyncio.Queue()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _diagnostics(params: types.PublishDiagnosticsParams) -> None:
        published.put_nowait(params)

    await client.start_io(sys.executable, "-m", "hypermesh.nexus.cli", "lsp")
    out: dict[str, Any] = {}
    try:
        result = await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(), root_uri=tmp_path.as_uri()
            )
        )
        out["capabilities"] = result.capabilities
        client.initialized(types.InitializedParams())
        uri = (tmp_path / "app.nx").as_uri()
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="nexus", version=1, text=BROKEN
                )
            )
        )
        out["opened"] = await asyncio.wait_for(published.get(), 30)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=FIXED)],
            )
        )
        out["changed"] = await asyncio.wait_for(published.get(), 30)
        doc = types.TextDocumentIdentifier(uri=uri)
        out["completion"] = await client.text_document_completion_async(
            types.CompletionParams(text_document=doc, position=types.Position(line=1, character=2))
        )
        out["hover"] = await client.text_document_hover_async(
            types.HoverParams(text_document=doc, position=types.Position(line=1, character=3))
        )
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    return out


def test_language_server_over_its_protocol(tmp_path: Path) -> None:
    out = asyncio.run(_session(tmp_path))
    assert out["capabilities"].hover_provider
    assert out["capabilities"].completion_provider is not None
    [diagnostic] = out["opened"].diagnostics
    assert diagnostic.message == "unknown field 'mdoe' in network (did you mean 'mode'?)"
    assert (diagnostic.range.start.line, diagnostic.range.start.character) == (1, 2)
    assert (diagnostic.range.end.line, diagnostic.range.end.character) == (1, 6)
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert list(out["changed"].diagnostics) == []
    completion = out["completion"]
    labels = {item.label for item in (completion.items if completion else [])}
    assert {"mode", "registry", "federation", "ttl", "description", "labels"} <= labels
    hover = out["hover"]
    assert hover is not None and "members only, with its own registry" in hover.contents.value


def test_diagnostics_carry_validator_problems() -> None:
    text = 'network "demo" {\n  mode = "privat"\n}\n'
    [diagnostic] = diagnostics(text, "/tmp/x.nx")
    assert diagnostic.message.startswith("Network/demo: spec.mode: 'privat' is not one of")
    assert diagnostic.range.start == types.Position(line=1, character=2)


def test_completion_contexts() -> None:
    def labels(text: str) -> set[str]:
        lines = text.split("\n")
        return {i.label for i in completions(text, len(lines) - 1, len(lines[-1]))}

    assert {"network", "node", "let", "for", "import", "on"} <= labels("")
    assert labels('network "x" {\n  registry {\n    ') >= {"node", "endpoint", "identity"}
    assert labels('network "x" {\n  mode = ') >= {'"public"', '"private"', '"ephemeral"'}
    assert labels('policy "p" {\n  rule "r" {\n    from {\n      ') >= {"groups", "networks"}
    assert labels('tld "t" {\n  record "www" {\n    ') >= {"type", "values", "target"}
    assert labels('let port = 1\nnode "n" {\n  listen = ') >= {"port", "format", "range"}
    assert labels('on message to "a" as m {\n  log(m.') == {"id", "from", "to", "body", "time"}
    assert labels('on message to "a" as m {\n  ') >= {"send", "log", "chain.append"}
    assert labels("on ") == {"message", "block", "schedule", "request"}


def test_completion_of_module_exports(tmp_path: Path) -> None:
    (tmp_path / "lib.nx").write_text("let port = 1\nlet _hidden = 2\ndef mirror(name) {\n}\n")
    text = 'import "lib" as lib\nlet x = lib.'
    found = completions(text, 1, len("let x = lib."), str(tmp_path / "app.nx"))
    assert {i.label for i in found} == {"port", "mirror"}


def test_hover_texts() -> None:
    text = 'node "n" {\n  chain { witnesses = 1 }\n  listen = format("{}", 1)\n}\n'
    chain = hover_text(text, 1, 12)
    assert chain is not None and "witnesses" in chain and "Default: `0`" in chain
    assert "kind: Node" in (hover_text(text, 0, 1) or "")
    assert "built-in" in (hover_text(text, 2, 13) or "")
    assert hover_text(text, 3, 0) is None
