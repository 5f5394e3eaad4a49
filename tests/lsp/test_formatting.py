"""Formatting over the wire: layout only, comments and strings untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.conftest import open_new, rng

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESSY = '[agents.dev]   \nbottle="web"  # the only one\n\n\n\n[bottles.web]\nenv={ A = "1" }\n\n'


async def format_document(client: LanguageClient, uri: str) -> list[types.TextEdit]:
    result = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            options=types.FormattingOptions(tab_size=4, insert_spaces=True),
        )
    )
    return list(result or [])


async def test_formatting_fixes_layout_and_keeps_comments(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, MESSY)
    assert await format_document(shared_client, uri) == [
        types.TextEdit(
            range=rng((0, 0), (8, 0)),
            new_text='[agents.dev]\nbottle = "web"  # the only one\n\n[bottles.web]\n'
            'env = { A = "1" }\n',
        )
    ]


async def test_formatting_leaves_broken_toml_alone(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(shared_client, shared_root, "[agents.dev\nbottle=1\n")
    assert await format_document(shared_client, uri) == []
