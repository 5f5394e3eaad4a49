"""Diagnostics over the wire: pushed on open and (debounced) on change, pulled on request, and
identical in code and message to the engine's own validation."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.conftest import MANIFEST, ClientFactory, open_document, rng

pytestmark = pytest.mark.asyncio


async def wait_for_diagnostics(
    client: LanguageClient, uri: str, count: int | None = None
) -> list[types.Diagnostic]:
    for _ in range(1500):  # up to 30 s: generous for a loaded CI machine
        found = client.diagnostics.get(uri)
        if found is not None and (count is None or len(found) == count):
            return list(found)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no diagnostics for {uri}: {client.diagnostics.get(uri)}")


async def diagnostics_on_open(
    client: LanguageClient, project: Path, text: str
) -> list[types.Diagnostic]:
    """What the server publishes for the project's bottle.toml opened with `text`."""
    uri = open_document(client, project / "bottle.toml", text)
    return await wait_for_diagnostics(client, uri)


async def test_open_publishes_the_engines_problems_with_exact_ranges(
    client: LanguageClient, project: Path
) -> None:
    text = MANIFEST.replace('backend = "docker"', 'backnd = "docker"')
    found = await diagnostics_on_open(client, project, text)
    assert [(d.code, d.message, d.range, d.severity) for d in found] == [
        (
            "BB101",
            "bottles.web.backnd: unknown key 'backnd' (did you mean 'backend'?)",
            rng((9, 0), (9, 6)),
            types.DiagnosticSeverity.Error,
        )
    ]


async def test_messages_are_those_of_bottle_engine_validate(
    client: LanguageClient, project: Path
) -> None:
    text = MANIFEST.replace('bottle = "web"\nprompt', 'bottle = "wbe"\nprompt').replace(
        'backend = "smolmachines"', 'backend = "smolmachine"\nmemory = "lots"'
    )
    found = await diagnostics_on_open(client, project, text)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "bottle_engine",
            "validate",
            "--format",
            "json",
            "-f",
            "bottle.toml",
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1, cli.stderr
    printed = json.loads(cli.stdout)
    assert [
        (d.code, d.message, d.range.start.line + 1, d.range.start.character + 1) for d in found
    ] == [(p["code"], p["message"], p["line"], p["column"]) for p in printed]
    assert {d.code for d in found} == {"BB201", "BB103", "BB106"}


async def test_a_clean_manifest_has_no_diagnostics(client: LanguageClient, project: Path) -> None:
    assert await diagnostics_on_open(client, project, MANIFEST) == []


async def test_changes_are_revalidated(client: LanguageClient, project: Path) -> None:
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await wait_for_diagnostics(client, uri, 0)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[  # the server asks for whole-text sync
                types.TextDocumentContentChangeWholeDocument(
                    text=MANIFEST.replace('backend = "docker"', 'backend = "dokcer"', 1)
                )
            ],
        )
    )
    found = await wait_for_diagnostics(client, uri, 1)
    assert found[0].code == "BB103"
    assert found[0].range == rng((9, 10), (9, 18))
    assert found[0].message == (
        'bottles.web.backend: "dokcer" is not allowed; expected one of "docker", '
        '"smolmachines" (did you mean "docker"?)'
    )


async def test_a_burst_of_changes_is_validated_once_for_its_last_version(
    make_client: ClientFactory, project: Path
) -> None:
    client = await make_client(debounce=1.0)  # far longer than the burst
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await wait_for_diagnostics(client, uri, 0)
    published: list[types.PublishDiagnosticsParams] = client.published  # type: ignore[attr-defined]
    published.clear()
    text = MANIFEST
    for version, letter in enumerate("xyz", start=2):
        text = letter + text
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
    for _ in range(1500):
        if published:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.5)  # a second publish, if there were one, would come within this
    assert [p.version for p in published] == [4]
    assert published[0].diagnostics[0].code == "BB001"


async def test_pull_diagnostics_return_the_same_problems(
    client: LanguageClient, project: Path
) -> None:
    text = MANIFEST.replace('"*.npmjs.org"', '"*.npmjs.org:99999"')
    uri = open_document(client, project / "bottle.toml", text)
    pushed = await wait_for_diagnostics(client, uri)
    report = await client.text_document_diagnostic_async(
        types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert isinstance(report, types.RelatedFullDocumentDiagnosticReport)
    assert list(report.items) == pushed
    assert [d.code for d in report.items] == ["BB301"]
    assert report.items[0].range == rng((12, 30), (12, 49))


async def test_cross_file_problems_name_the_missing_prompt_file(
    client: LanguageClient, project: Path
) -> None:
    (project / "prompts" / "dev.md").unlink()
    found = await diagnostics_on_open(client, project, MANIFEST)
    assert [(d.code, d.range) for d in found] == [("BB204", rng((2, 14), (2, 30)))]
    assert str(project / "prompts" / "dev.md") in found[0].message


async def test_creating_the_prompt_file_clears_its_diagnostic(
    client: LanguageClient, project: Path
) -> None:
    prompt = project / "prompts" / "dev.md"
    prompt.unlink()
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    assert [d.code for d in await wait_for_diagnostics(client, uri)] == ["BB204"]
    prompt.write_text("# dev\n")
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=prompt.as_uri(), type=types.FileChangeType.Created)]
        )
    )
    assert await wait_for_diagnostics(client, uri, 0) == []


@pytest.mark.parametrize(
    "text",
    [
        "\x00\x01\xff\ufffe[[[ binary = junk",
        "[agents.",
        '[agents.dev]\nbottle = "',
        "[bottles.web]\nbackend = \n",
        "= = =\n[[\n]]",
    ],
)
async def test_any_text_yields_diagnostics_not_errors(
    client: LanguageClient, project: Path, text: str
) -> None:
    found = await diagnostics_on_open(client, project, text)
    assert [d.code for d in found] == ["BB001"]


async def test_a_ten_thousand_line_manifest_gets_diagnostics(
    client: LanguageClient, project: Path
) -> None:
    blocks = [f'[agents.a{i}]\nbottle = "web"\ncommand = ["claude"]\n' for i in range(2500)]
    text = MANIFEST + "\n".join(blocks) + '\n[agents.broken]\nbottle = "nowhere"\n'
    assert text.count("\n") > 10_000
    found = await diagnostics_on_open(client, project, text)
    assert [d.code for d in found] == ["BB201"]


async def test_one_documents_failure_never_affects_another(
    client: LanguageClient, project: Path
) -> None:
    (project / "other").mkdir()
    (project / "other" / "Dockerfile").write_text("FROM scratch\n")
    broken = open_document(client, project / "bottle.toml", "\x00[[[")
    fine = open_document(
        client, project / "other" / "bottle.toml", '[agents.a]\n[bottles.b]\nbackend = "docker"\n'
    )
    assert [d.code for d in await wait_for_diagnostics(client, broken)] == ["BB001"]
    assert await wait_for_diagnostics(client, fine) == []


async def test_ranges_are_in_utf16_units_after_astral_characters(
    client: LanguageClient, project: Path
) -> None:
    text = MANIFEST.replace(
        'backend = "docker"\n', 'backend = "docker"\nenv = { A = "🙂", B = 1 }\n'
    )
    [found] = await diagnostics_on_open(client, project, text)
    assert found.code == "BB102"
    assert found.range == rng((10, 22), (10, 23))  # 🙂 is two UTF-16 code units
