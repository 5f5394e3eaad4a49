"""Quick fixes: the engine's `Problem.fixes` arrive as workspace edits on the diagnostic."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp.conftest import MANIFEST, open_new, rng

pytestmark = pytest.mark.asyncio(loop_scope="module")

DUPLICATE = '[[bottles.web.git]]\nname = "origin"\nurl = "ssh://other.invalid/r.git"\n\n'


@pytest.mark.parametrize(
    ("old", "new", "cursor", "expected"),
    [
        (
            'backend = "docker"',
            'backnd = "docker"',
            (9, 2),
            ("BB101", "Replace 'backnd' with 'backend'", rng((9, 0), (9, 6)), "backend"),
        ),
        (
            'backend = "smolmachines"',
            'backend = "smolmachine"',
            (23, 12),
            ("BB103", 'Replace with "smolmachines"', rng((23, 10), (23, 23)), '"smolmachines"'),
        ),
        (
            'bottle = "web"\nprompt',
            'bottle = "gpu"\nprompt',
            (1, 11),
            ("BB201", "Add a [bottles.gpu] table", rng((24, 0), (24, 0)), "\n[bottles.gpu]\n"),
        ),
        (
            'hosts = ["api.anthropic.com"]',
            'hosts = ["api.openai.com"]',
            (16, 12),
            (
                "BB304",
                "Add 'api.openai.com' to the egress allowlist",
                rng((12, 8), (12, 44)),
                '["api.anthropic.com", "*.npmjs.org", "api.openai.com"]',
            ),
        ),
        (
            "[bottles.offline]",
            DUPLICATE + "[bottles.offline]",
            (23, 9),
            ("BB305", "Remove this duplicate upstream", rng((22, 0), (26, 0)), ""),
        ),
    ],
    ids=[
        "did-you-mean-key",
        "did-you-mean-enum",
        "add-bottle",
        "allow-secret-host",
        "duplicate-git",
    ],
)
async def test_quick_fix_from_the_engine(
    shared_client: LanguageClient,
    shared_root: Path,
    old: str,
    new: str,
    cursor: tuple[int, int],
    expected: tuple[str, str, types.Range, str],
) -> None:
    text = MANIFEST.replace(old, new)
    uri = open_new(shared_client, shared_root, text)
    actions = await shared_client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=rng(cursor, cursor),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions is not None
    action = actions[0]
    assert isinstance(action, types.CodeAction)
    assert action.kind == types.CodeActionKind.QuickFix
    assert action.is_preferred is True
    assert action.edit is not None and action.edit.changes is not None
    [edit] = action.edit.changes[uri]
    assert action.diagnostics is not None
    code, title, edit_range, replacement = expected
    assert (action.diagnostics[0].code, action.title, edit.range, edit.new_text) == (
        code,
        title,
        edit_range,
        replacement,
    )


async def test_no_actions_away_from_problems(
    shared_client: LanguageClient, shared_root: Path
) -> None:
    uri = open_new(
        shared_client, shared_root, MANIFEST.replace('backend = "docker"', 'backnd = "docker"')
    )
    actions = await shared_client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=rng((0, 0), (0, 3)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert list(actions or []) == []
