"""Random edits over the wire: every request is answered, never with an error, and the server
logs nothing (the shared fixture checks its log when the module ends)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.conftest import MANIFEST, open_new

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Characters of the Basic Multilingual Plane only, so a character is one UTF-16 unit and the
# test can compute client positions by counting characters.
ALPHABET = st.sampled_from([*list("[]{}\"'=.,#\n -_abz09"), "é", "中", "\x00", '"""'])
EDITS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1),
        st.integers(min_value=0, max_value=10),
        st.lists(ALPHABET, max_size=8).map("".join),
    ),
    min_size=1,
    max_size=5,
)


def position(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=EDITS)
async def test_random_edits_never_make_the_server_fail(
    shared_client: LanguageClient, shared_root: Path, changes: list[tuple[float, int, str]]
) -> None:
    text = MANIFEST
    uri = open_new(shared_client, shared_root, text)
    document = types.TextDocumentIdentifier(uri=uri)
    for version, (where, delete, insert) in enumerate(changes, start=2):
        at = int(where * len(text))
        end = min(at + delete, len(text))
        text = text[:at] + insert + text[end:]
        shared_client.text_document_did_change(  # the server asks for whole-text sync
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
        cursor = position(text, min(at + len(insert), len(text)))
        await shared_client.text_document_completion_async(
            types.CompletionParams(text_document=document, position=cursor)
        )
        await shared_client.text_document_hover_async(
            types.HoverParams(text_document=document, position=cursor)
        )
    report = await shared_client.text_document_diagnostic_async(
        types.DocumentDiagnosticParams(text_document=document)
    )
    assert isinstance(report, types.RelatedFullDocumentDiagnosticReport)
    await shared_client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=document)
    )
    await shared_client.text_document_code_lens_async(types.CodeLensParams(text_document=document))
    await shared_client.text_document_folding_range_async(
        types.FoldingRangeParams(text_document=document)
    )
    shared_client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=document))


async def test_a_document_nested_past_the_parsers_depth_is_a_diagnostic_not_a_failure(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    """tomllib recurses once per nested bracket: a pasted blob of them raised RecursionError in
    every feature that parses the buffer."""
    text = '[agents.dev]\ncommand = ["claude"]\nprompt = ' + "[" * 3000 + "]" * 3000 + "\n"
    uri = open_new(shared_client, shared_root, text)
    document = types.TextDocumentIdentifier(uri=uri)
    report = await shared_client.text_document_diagnostic_async(
        types.DocumentDiagnosticParams(text_document=document)
    )
    assert isinstance(report, types.RelatedFullDocumentDiagnosticReport)
    assert [d.range.start for d in report.items if "nested too deeply" in d.message] == [
        types.Position(line=2, character=9 + 2999)
    ]
    edits = await shared_client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=document,
            options=types.FormattingOptions(tab_size=4, insert_spaces=True),
        )
    )
    assert not edits
    await shared_client.text_document_hover_async(
        types.HoverParams(text_document=document, position=types.Position(line=2, character=3))
    )
    shared_client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=document))
