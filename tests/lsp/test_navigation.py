"""Hover, go to definition, references, rename, document symbols and folding over the wire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.conftest import MANIFEST, open_new, rng

pytestmark = pytest.mark.asyncio(loop_scope="module")


def doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


def at(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


async def hover_at(
    client: LanguageClient, uri: str, line: int, character: int
) -> tuple[types.Range | None, str]:
    """The hover's range and markdown at (line, character), which must exist."""
    result = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=at(line, character))
    )
    assert result is not None and isinstance(result.contents, types.MarkupContent)
    return result.range, result.contents.value


async def definition_at(client: LanguageClient, uri: str, line: int, character: int) -> Any:
    return await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc(uri), position=at(line, character))
    )


async def test_hover_on_a_key_shows_doc_type_and_default_from_the_schema(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, MANIFEST)
    hover_range, markdown = await hover_at(shared_client, uri, 9, 3)
    assert hover_range == rng((9, 0), (9, 7))
    assert markdown.startswith(
        '**`bottles.BOTTLE.backend`** — "docker" | "smolmachines"\n\n'
        "What the sandbox is. `BOTTLE_BACKEND` in the environment overrides it.\n\n"
        'Default: `"docker"`'
    )


@pytest.mark.parametrize(
    ("line", "character", "name_range", "summary"),
    [
        pytest.param(
            1,
            11,
            rng((1, 9), (1, 14)),
            "**bottle `web`**\n\n"
            "- backend: `docker` (runtime `auto`)\n"
            "- egress allowlist: `api.anthropic.com`, `*.npmjs.org`\n"
            "- secrets: `ANTHROPIC_API_KEY`\n"
            "- git upstreams (pushed to by the gate): `origin` on host `example.invalid`",
            id="bottle",
        ),
        pytest.param(
            4,
            10,
            rng((4, 8), (4, 16)),
            "**agent `reviewer`** — `bottle-engine launch reviewer`\n\n"
            "- bottle: `web`\n"
            '- command: `["claude"]`\n'
            "- skills: `pdf`",
            id="agent",
        ),
    ],
)
async def test_hover_on_a_name_summarises_what_it_names(
    shared_client: LanguageClient,
    shared_root: Path,
    line: int,
    character: int,
    name_range: types.Range,
    summary: str,
) -> None:
    uri = open_new(shared_client, shared_root, MANIFEST)
    hover_range, markdown = await hover_at(shared_client, uri, line, character)
    assert hover_range == name_range
    assert markdown == summary


async def test_hover_on_a_bottle_says_how_its_egress_is_judged(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    text = (
        '[agents.a]\nbottle = "web"\n\n[bottles.web.egress]\nallow = ["pypi.org"]\n'
        'ask = true\nintercept = "all"\n'
    )
    uri = open_new(shared_client, shared_root, text)
    _, markdown = await hover_at(shared_client, uri, 1, 11)
    assert markdown.splitlines()[3:] == [
        "- egress allowlist: `pypi.org`",
        "- unlisted hosts: held for a person's answer (`ask = true`)",
        '- HTTPS: every tunnel opened, each request inside judged (`intercept = "all"`)',
    ]


async def test_definition_of_a_bottle_name_is_its_table(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, MANIFEST)
    result = await definition_at(shared_client, uri, 5, 11)
    assert result == types.Location(uri=uri, range=rng((8, 9), (8, 12)))


@pytest.mark.parametrize(
    ("line", "character", "from_root", "target"),
    [
        pytest.param(2, 20, False, ("prompts", "dev.md"), id="prompt-file"),
        pytest.param(6, 12, True, ("home", ".claude", "skills", "pdf", "SKILL.md"), id="skill"),
    ],
)
async def test_definition_on_a_file_reference_opens_the_file(
    shared_client: LanguageClient,
    shared_root: Path,
    line: int,
    character: int,
    from_root: bool,
    target: tuple[str, ...],
) -> None:
    """A prompt path resolves next to the manifest; a skill to its SKILL.md under the home."""
    uri = open_new(shared_client, shared_root, MANIFEST)
    result = await definition_at(shared_client, uri, line, character)
    base = shared_root if from_root else Path(uri.removeprefix("file://")).parent
    expected = base.joinpath(*target)
    assert result == types.Location(uri=expected.as_uri(), range=rng((0, 0), (0, 0)))


async def test_references_of_a_bottle_include_headers_and_agents(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, MANIFEST)
    result = await shared_client.text_document_references_async(
        types.ReferenceParams(
            text_document=doc(uri),
            position=at(8, 10),
            context=types.ReferenceContext(include_declaration=False),
        )
    )
    assert [location.range for location in result or []] == [
        rng((1, 9), (1, 14)),
        rng((5, 9), (5, 14)),
        rng((11, 9), (11, 12)),
        rng((14, 9), (14, 12)),
        rng((18, 10), (18, 13)),
    ]


async def test_renaming_a_bottle_updates_every_reference(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, MANIFEST)
    prepared = await shared_client.text_document_prepare_rename_async(
        types.PrepareRenameParams(text_document=doc(uri), position=at(1, 11))
    )
    assert prepared == rng((1, 10), (1, 13))
    edit = await shared_client.text_document_rename_async(
        types.RenameParams(text_document=doc(uri), position=at(1, 11), new_name="frontend")
    )
    assert edit is not None and edit.changes is not None
    assert [(e.range, e.new_text) for e in edit.changes[uri]] == [
        (rng((8, 9), (8, 12)), "frontend"),
        (rng((1, 9), (1, 14)), '"frontend"'),
        (rng((5, 9), (5, 14)), '"frontend"'),
        (rng((11, 9), (11, 12)), "frontend"),
        (rng((14, 9), (14, 12)), "frontend"),
        (rng((18, 10), (18, 13)), "frontend"),
    ]


async def test_renaming_an_agent_renames_its_table(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, MANIFEST)
    edit = await shared_client.text_document_rename_async(
        types.RenameParams(text_document=doc(uri), position=at(4, 10), new_name="critic")
    )
    assert edit is not None and edit.changes is not None
    assert list(edit.changes[uri]) == [
        types.TextEdit(range=rng((4, 8), (4, 16)), new_text="critic")
    ]


async def test_document_symbols_outline_agents_and_bottles(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, MANIFEST)
    result = await shared_client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc(uri))
    )
    assert result is not None
    outline = [
        (
            s.name,
            [
                (c.name, c.detail, c.range, [g.name for g in c.children or []])
                for c in s.children or []
            ],
        )
        for s in result
        if isinstance(s, types.DocumentSymbol)
    ]
    assert outline == [
        (
            "agents",
            [
                ("dev", "bottle web", rng((0, 0), (2, 30)), []),
                ("reviewer", "bottle web", rng((4, 0), (6, 16)), []),
            ],
        ),
        (
            "bottles",
            [
                (
                    "web",
                    "docker",
                    rng((8, 0), (20, 45)),
                    ["egress", "secrets.ANTHROPIC_API_KEY", "git[0]"],
                ),
                ("offline", "smolmachines", rng((22, 0), (23, 24)), []),
            ],
        ),
    ]


async def test_folding_ranges_cover_sections_and_multiline_arrays(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    text = MANIFEST.replace(
        'allow = ["api.anthropic.com", "*.npmjs.org"]',
        'allow = [\n  "api.anthropic.com",\n  "*.npmjs.org",\n]',
    )
    uri = open_new(shared_client, shared_root, text)
    result = await shared_client.text_document_folding_range_async(
        types.FoldingRangeParams(text_document=doc(uri))
    )
    assert [(r.start_line, r.end_line) for r in result or []] == [
        (0, 2),
        (4, 6),
        (8, 9),
        (11, 15),
        (12, 15),
        (17, 19),
        (21, 23),
        (25, 26),
    ]


# A bottle.toml the agent wrote: a name that would close its code span and add a link and an
# image (fetched when the hover renders).
HOSTILE_NAME = "x` [ok](https://evil.invalid) ![](https://evil.invalid/beacon) `y"


@pytest.mark.parametrize(
    ("text", "line", "character", "shown"),
    [
        pytest.param(
            f'[agents.dev]\nbottle = "{HOSTILE_NAME}"\n',
            1,
            12,
            f"**bottle ``{HOSTILE_NAME}``** — not defined in this manifest (or the file does not "
            "parse)",
            id="bottle-name",
        ),
        # An `env` entry's name ends the schema path a key's hover names.
        pytest.param(
            f'[bottles.web.env]\n"{HOSTILE_NAME}" = "v"\n',
            1,
            3,
            f"**``bottles.BOTTLE.env.{HOSTILE_NAME}``** — table of strings\n\n",
            id="env-key",
        ),
    ],
)
async def test_hover_keeps_hostile_names_inside_their_code_spans(
    shared_client: LanguageClient,
    shared_root: Path,
    text: str,
    line: int,
    character: int,
    shown: str,
) -> None:
    uri = open_new(shared_client, shared_root, text)
    _, markdown = await hover_at(shared_client, uri, line, character)
    assert markdown.startswith(shown)
