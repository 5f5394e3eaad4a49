"""Allow over the wire against a hostile bottle.toml: the real server, a VS Code-like client that
numbers lines as LSP says (\\n, \\r\\n, \\r only) and applies the server's edit itself."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.conftest import ClientFactory, open_document
from tests.lsp.test_activity import record, start
from tests.lsp.test_commands import execute
from tests.unit.test_lsp_allow_attacks import HOSTILE

pytestmark = pytest.mark.asyncio

MANIFEST = HOSTILE  # comments with line breaks to Python, not to the editor


@pytest.fixture(autouse=True)
def server_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep what the server announced (its sync kind decides what the client sends)."""
    original = LanguageClient.initialize_session

    async def initialize(self: LanguageClient, params: Any) -> Any:
        result = await original(self, params)
        self.server_capabilities = result.capabilities  # type: ignore[attr-defined]
        return result

    monkeypatch.setattr(LanguageClient, "initialize_session", initialize)


def editor_lines(text: str) -> list[str]:
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)


def apply(params: types.ApplyWorkspaceEditParams, text: str) -> str:
    """`text` after the server's edit, as the editor applies it."""
    (change,) = params.edit.document_changes or []
    assert isinstance(change, types.TextDocumentEdit)
    (edit,) = change.edits
    assert isinstance(edit, types.TextEdit)
    assert edit.range.start.character == edit.range.end.character == 0
    lines = editor_lines(text)
    lines[edit.range.start.line : edit.range.end.line] = [edit.new_text]
    return "".join(lines)


def type_into(client: LanguageClient, uri: str, text: str, line: int, new_line: str) -> str:
    """Replace editor line `line` with `new_line` as VS Code sends it: a ranged change when the
    server asked for incremental sync, the whole text when it asked for full sync."""
    lines = editor_lines(text)
    old = lines[line].rstrip("\r\n")
    lines[line] = new_line + lines[line][len(old) :]
    changed = "".join(lines)
    sync = client.server_capabilities.text_document_sync  # type: ignore[attr-defined]
    kind = sync.change if isinstance(sync, types.TextDocumentSyncOptions) else sync
    if kind == types.TextDocumentSyncKind.Incremental:
        range_ = types.Range(
            start=types.Position(line=line, character=0),
            end=types.Position(line=line, character=len(old.encode("utf-16-le")) // 2),
        )
        change: types.TextDocumentContentChangeEvent = types.TextDocumentContentChangePartial(
            range=range_, text=new_line
        )
    else:
        change = types.TextDocumentContentChangeWholeDocument(text=changed)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[change],
        )
    )
    return changed


async def test_allow_lands_in_the_bottles_allow_not_in_a_secrets_hosts(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    client = await start(make_client, tmp_path, [record(project, "dev-1", "running")])
    open_document(client, project / "bottle.toml", MANIFEST)
    answer = await execute(
        client, "bottle.allowHost", {"slug": "dev-1", "host": "stranger.test", "port": 80}
    )
    assert answer["applied"] is True
    (params,) = client.edits  # type: ignore[attr-defined]
    web = tomllib.loads(apply(params, MANIFEST))["bottles"]["web"]
    assert web["egress"]["allow"] == ["upstream.test", "stranger.test"]
    assert web["secrets"]["TOKEN"]["hosts"] == ["upstream.test"]


async def test_typing_after_an_unusual_line_break_keeps_the_servers_copy_exact(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    """pygls applies a ranged change by str.splitlines lines: with U+2028 above, a change to
    one line lands on another, and the server's copy (which Allow edits) drifts from the
    editor's. The server must keep an exact copy."""
    client = await start(make_client, tmp_path, [record(project, "dev-1", "running")])
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    typed = type_into(client, uri, MANIFEST, 8, '    "upstream.test",\n    "other.test",')
    answer = await execute(
        client, "bottle.allowHost", {"slug": "dev-1", "host": "stranger.test", "port": 80}
    )
    assert answer["applied"] is True, answer
    (params,) = client.edits  # type: ignore[attr-defined]
    result = apply(params, typed)
    web = tomllib.loads(result)["bottles"]["web"]
    assert web["egress"]["allow"] == ["upstream.test", "other.test", "stranger.test"]
    assert web["secrets"]["TOKEN"]["hosts"] == ["upstream.test"]
