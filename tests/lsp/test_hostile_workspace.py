"""A repository an agent wrote, opened in the editor: what the real `bottle-lsp` does on the host
by itself, before anyone launches or trusts anything.

VS Code starts the server in the workspace folder, so every name the server (or the engine it
calls) looks up on PATH must not be found there: a PATH with an empty or relative entry (a
trailing ':' from `PATH=$PATH:$EXTRA` with EXTRA unset is enough) names the working directory.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from bottle_engine.display import safe_editor_text
from bottle_engine.manifest.validate import MAX_PROBLEMS
from tests.lsp.conftest import (
    MANIFEST,
    open_document,
    open_new,
    position_of,
    start_client,
    stop_client,
)
from tests.lsp.test_commands import execute
from tests.lsp.test_diagnostics import wait_for_diagnostics
from tests.unit.test_manifest_attacks import unsafe_characters

pytestmark = pytest.mark.asyncio

# A bottle of the smolmachines backend, as `records.py` stores it: its status asks smolvm.
SMOL_RECORD = {
    "agent": "dev",
    "backend": "smolmachines",
    "bottle": "default",
    "bundle_ip": "10.243.0.2",
    "cwd": "/m",
    "manifest": "/m/bottle.toml",
    "name": "bottle-dev-1",
    "resources": {"cpus": 1.0, "memory_bytes": 2147483648},
    "slug": "dev-1",
    "started_at": "2026-01-01T00:00:00+00:00",
    "subnet": "10.243.0.0/28",
}


def plant(directory: Path, name: str, marker: Path) -> None:
    """An executable `name` in `directory` that records that it ran, and passes for smolvm."""
    program = directory / name
    program.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\necho "smolvm 1.0.0"\n')
    program.chmod(0o755)


@pytest.mark.parametrize("entry", ["", ".", "bin"])
async def test_a_program_in_the_workspace_never_runs_through_a_relative_path_entry(
    tmp_path: Path, entry: str
) -> None:
    workspace = tmp_path / "project"
    (workspace / "bin").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    marker = tmp_path / "ran"
    for where in (workspace, workspace / "bin"):
        for name in ("smolvm", "git", "docker", "runsc"):
            plant(where, name, marker)
    record = tmp_path / "state" / "records" / "dev-1.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps(SMOL_RECORD))
    path = os.pathsep.join([os.environ.get("PATH", ""), entry])
    environment = {"PATH": path, "BOTTLE_SMOLVM": ""}
    client = await start_client(tmp_path, fake_engine=False, env=environment, cwd=workspace)
    try:
        listed = await execute(client, "bottle.list")
        assert [bottle["slug"] for bottle in listed] == ["dev-1"]
        assert not marker.exists(), marker.read_text()
    finally:
        await stop_client(client, tmp_path)


async def test_a_bottle_toml_of_a_mib_costs_one_diagnostic_not_a_parse(
    client: LanguageClient, project: Path
) -> None:
    """1 MiB of bottles, each with an unknown key: the server used to parse and validate it all
    on every change (7.7 s here) and publish one diagnostic per bottle (32769)."""
    bottle = "[bottles.b{}]\nbakend = 'docker'\n"
    text = "".join(bottle.format(index) for index in range(1024 * 1024 // len(bottle)))
    uri = open_document(client, project / "bottle.toml", text)
    [diagnostic] = await wait_for_diagnostics(client, uri)
    assert diagnostic.code == "BB002"
    document = types.TextDocumentIdentifier(uri=uri)
    at = position_of(text, "bakend")
    assert await client.text_document_hover_async(types.HoverParams(document, at)) is None
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(document))
    options = types.FormattingOptions(tab_size=2, insert_spaces=True)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(document, options)
    )
    lenses = await client.text_document_code_lens_async(types.CodeLensParams(document))
    assert (list(symbols or []), list(edits or []), list(lenses or [])) == ([], [], [])


async def test_a_bottle_toml_under_the_size_cap_costs_a_bounded_number_of_diagnostics(
    client: LanguageClient, project: Path
) -> None:
    """Under 256 KiB, `git = [{}, {}, ...]` is two problems per three bytes (each upstream lacks
    its name and url): 170001 diagnostics and 42 s of validation per change here, during which
    the server answered nothing, approvals of running bottles included."""
    text = "[bottles.b]\ngit = [" + "{}," * 20_000 + "]\n"
    uri = open_document(client, project / "bottle.toml", text)
    found = await wait_for_diagnostics(client, uri)
    assert len(found) == MAX_PROBLEMS + 1
    assert [d.code for d in found if d.code == "BB003"] == ["BB003"]


async def test_a_bottle_toml_linked_to_the_servers_own_input_is_refused_not_read(
    client: LanguageClient, project: Path
) -> None:
    """A committed link `bottle.toml -> /dev/stdin`, and Launch from the palette (which asks
    for the workspace's only manifest's agents): the server read its own input, the editor's
    messages, until 256 KiB of them came, and answered nothing more."""
    manifest = project / "bottle.toml"
    manifest.symlink_to("/dev/stdin")
    # Bounded: a server that reads its input answers nothing, and the test must still end.
    agents = await asyncio.wait_for(
        execute(client, "bottle.agents", {"uri": manifest.as_uri()}), timeout=60
    )
    review = await execute(client, "bottle.trustReview", {"uri": manifest.as_uri()})
    assert agents == [] and "not a valid manifest" in review["error"]
    assert await execute(client, "bottle.list") == []


def _walk(symbols: list[types.DocumentSymbol]) -> list[types.DocumentSymbol]:
    return [s for symbol in symbols for s in (symbol, *_walk(symbol.children or []))]


async def test_hostile_names_reach_the_outline_made_safe(
    client: LanguageClient, project: Path
) -> None:
    """Agent and bottle names and a backend, as written in a bottle.toml an agent wrote, are
    shown in the outline, the breadcrumbs and Go to Symbol: no bidi override, invisible
    character, link or icon syntax gets there raw (TOML strings hold them literally)."""
    names = ["git push origin \u202enaim\u202c", "ok\u200b\u2066", "$(check) [ok](command:x.y)"]
    lines = []
    for index, name in enumerate(names):
        lines += [f"[bottles.'{name}']", f"backend = '{name}'", f"[bottles.'{name}'.egress]"]
        lines += [f"[agents.'a{index}{name}']", f"bottle = '{name}'"]
    uri = open_new(client, project.parent, "\n".join(lines) + "\n")
    found = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(types.TextDocumentIdentifier(uri=uri))
    )
    symbols = _walk(list(found or []))  # type: ignore[arg-type]
    shown_names = {symbol.name for symbol in symbols}
    assert {safe_editor_text(name) for name in names} <= shown_names, shown_names
    for symbol in symbols:
        for shown in (symbol.name, symbol.detail or ""):
            assert not unsafe_characters(shown), shown
            assert "](" not in shown and "$(" not in shown, shown


async def test_line_breaks_only_python_knows_never_move_a_diagnostic_or_its_fix(
    client: LanguageClient, project: Path
) -> None:
    """The editor ends a line at \\n, \\r\\n or \\r only. TOML comments may hold U+2028, U+0085
    and the like, where pygls's `str.splitlines` also breaks: the server measured each range's
    UTF-16 columns on another line than the editor shows, so the emoji on the line above put the
    unknown key's squiggle, and the edit of its quick fix, over `bakend = "` instead."""
    comment = "# note\u2028" + "\U0001f642" * 6 + "\n"
    text = MANIFEST.replace('backend = "docker"', comment + 'bakend = "docker"')
    uri = open_document(client, project / "bottle.toml", text)
    at = position_of(text, "bakend")
    key = types.Range(start=at, end=types.Position(line=at.line, character=at.character + 6))
    found = [d for d in await wait_for_diagnostics(client, uri) if d.code == "BB101"]
    assert [d.range for d in found] == [key]
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=at, end=at),
            context=types.CodeActionContext(diagnostics=found),
        )
    )
    edits = [
        edit
        for action in actions or []
        if isinstance(action, types.CodeAction) and action.edit and action.edit.changes
        for edit in action.edit.changes[uri]
    ]
    assert [(edit.range, edit.new_text) for edit in edits] == [(key, "backend")]
