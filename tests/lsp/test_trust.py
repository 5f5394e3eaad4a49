"""Manifest trust in the editor, over real LSP: the Launch lens becomes "Review changes" while
the saved manifest widens what was last trusted; opening such a manifest shows the difference
with a Trust action; `bottle.trustReview` / `bottle.trust` are the extension's contract; a launch
through the real engine is refused before anything starts. The trust records are the real
ones, in the server's state dir (which the test shares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from bottle_engine import trust_store
from bottle_engine.manifest import load_manifest
from tests.lsp.conftest import MANIFEST, ClientFactory, open_document
from tests.lsp.test_commands import errors, eventually, execute, lenses

pytestmark = pytest.mark.asyncio

WIDENED = MANIFEST.replace(
    'allow = ["api.anthropic.com", "*.npmjs.org"]',
    'allow = ["api.anthropic.com", "*.npmjs.org", "collector.example"]',
)
NEW_HOST = "+ bottle web: allow + collector.example"


@pytest.fixture(autouse=True)
def same_home_as_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def trusted_then_widened(project: Path, widened: str = WIDENED) -> Path:
    """The manifest was launched (trusted) as MANIFEST; now its saved text is `widened`."""
    path = project / "bottle.toml"
    path.write_text(MANIFEST)
    trust_store.record(trust_store.review(load_manifest(path)))
    path.write_text(widened)
    return path


def answering(client: LanguageClient, title: str | None) -> list[types.ShowMessageRequestParams]:
    asked: list[types.ShowMessageRequestParams] = []

    def ask(params: types.ShowMessageRequestParams) -> types.MessageActionItem | None:
        asked.append(params)
        return None if title is None else types.MessageActionItem(title=title)

    client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(ask)
    return asked


class WidenedOpen(NamedTuple):
    """A client that has opened a manifest widened since it was trusted."""

    client: LanguageClient
    asked: list[types.ShowMessageRequestParams]  # every trust question the server put
    path: Path
    uri: str


async def open_widened(
    make_client: ClientFactory,
    project: Path,
    answer: str | None,
    widened: str = WIDENED,
    **client_options: Any,
) -> WidenedOpen:
    """Start a client that answers every trust question with `answer` (None: dismissed), then
    open the project's manifest, trusted as MANIFEST and saved as `widened`."""
    client = await make_client(**client_options)
    asked = answering(client, answer)
    path = trusted_then_widened(project, widened)
    uri = open_document(client, path, widened)
    return WidenedOpen(client, asked, path, uri)


async def test_the_lens_says_review_changes_until_the_reviewed_manifest_is_trusted(
    make_client: ClientFactory, project: Path
) -> None:
    # The question on opening is dismissed.
    client, _, _, uri = await open_widened(make_client, project, None)
    assert await lenses(client, uri) == [
        (0, "⚠ Review changes", "bottle.trust", [{"uri": uri, "agent": "dev"}]),
        (4, "⚠ Review changes", "bottle.trust", [{"uri": uri, "agent": "reviewer"}]),
    ]
    review = await execute(client, "bottle.trustReview", {"uri": uri})
    assert review["trusted"] is False and review["first_use"] is False
    assert review["changes"] == [
        {"text": "bottle web: allow + collector.example", "widening": True}
    ]
    refreshes = client.lens_refreshes  # type: ignore[attr-defined]
    result = await execute(
        client, "bottle.trust", {"uri": uri, "fingerprint": review["fingerprint"]}
    )
    assert result["trusted"] is True and result["changes"] == []
    await eventually(lambda: client.lens_refreshes > refreshes, "a lens refresh")  # type: ignore[attr-defined]
    assert [title for _, title, _, _ in await lenses(client, uri)] == ["▶ Launch", "▶ Launch"]
    assert errors(client) == []


async def test_trust_refuses_a_fingerprint_of_other_content(
    make_client: ClientFactory, project: Path
) -> None:
    client, _, path, uri = await open_widened(make_client, project, None)
    review = await execute(client, "bottle.trustReview", {"uri": uri})
    further = WIDENED.replace('"collector.example"]', '"collector.example", "more.example"]')
    path.write_text(further)  # changed on disk after the person looked
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=further)],
        )
    )
    result = await execute(
        client, "bottle.trust", {"uri": uri, "fingerprint": review["fingerprint"]}
    )
    assert "changed after it was reviewed" in result["error"]
    assert trust_store.review(load_manifest(path)).needs_trust


async def test_opening_a_manifest_that_needs_trust_shows_the_difference_and_trust(
    make_client: ClientFactory, project: Path
) -> None:
    _, asked, path, _ = await open_widened(make_client, project, "Trust")
    await eventually(lambda: bool(asked), "the question")
    [question] = asked
    assert NEW_HOST in question.message and "Launching stays blocked" in question.message
    assert [a.title for a in question.actions or []] == ["Trust", "Not now"]
    await eventually(
        lambda: not trust_store.review(load_manifest(path)).needs_trust, "the trust record"
    )


async def test_the_review_lens_asks_any_client_and_not_now_records_nothing(
    make_client: ClientFactory, project: Path
) -> None:
    client, asked, path, uri = await open_widened(make_client, project, "Not now")
    await eventually(lambda: len(asked) == 1, "the question on opening")
    result = await execute(client, "bottle.trust", {"uri": uri, "agent": "dev"})
    assert len(asked) == 2 and result["trusted"] is False
    assert trust_store.review(load_manifest(path)).needs_trust


async def test_manifest_text_in_the_question_is_made_safe(
    make_client: ClientFactory, project: Path
) -> None:
    # A path, which no pattern bounds (a git url with controls is refused before: BB310).
    hostile = WIDENED.replace(
        'from_env = "ANTHROPIC_API_KEY"', 'from_file = "~/key\\u001b[8m\\u202e"'
    )
    _, asked, _, _ = await open_widened(make_client, project, None, hostile)
    await eventually(lambda: bool(asked), "the question")
    message = asked[0].message
    assert "\x1b" not in message and "\u202e" not in message
    assert "\\x1b[8m\\u202e" in message


async def test_a_launch_of_a_widened_manifest_through_the_real_engine_is_refused(
    make_client: ClientFactory, project: Path
) -> None:
    client, _, _, uri = await open_widened(
        make_client,
        project,
        None,
        fake_engine=False,
        env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    result = await execute(client, "bottle.launch", {"uri": uri, "agent": "dev"})
    assert "changed since it was last trusted" in result["error"]
    assert "bottle web: allow + collector.example" in result["error"]
    assert "Nothing was built or started" in errors(client)[0]


async def test_no_link_or_icon_can_be_made_of_manifest_text_in_the_trust_review(
    make_client: ClientFactory, project: Path
) -> None:
    """VS Code shows the question as a notification, and the extension shows `bottle.trustReview`'s
    text in notifications too: a `[label](command:...)` there is a link that runs the command."""
    link = "[Trust](command:workbench.action.terminal.sendSequence?%7B%22text%22%3A%22id%5Cn%22%7D)"
    hostile = WIDENED.replace('from_env = "ANTHROPIC_API_KEY"', f'from_file = "~/{link}$(check)"')
    client, asked, _, uri = await open_widened(make_client, project, None, hostile)
    await eventually(lambda: bool(asked), "the question")
    review = await execute(client, "bottle.trustReview", {"uri": uri})
    shown = [asked[0].message, review["manifest"], *(c["text"] for c in review["changes"])]
    assert any("[Trust]\\x28command:" in text for text in shown)
    assert not any("](" in text or "$(" in text for text in shown), shown


async def test_trust_is_offered_only_on_a_question_shown_whole(
    make_client: ClientFactory, project: Path
) -> None:
    """VS Code cuts a notification's message at 1000 characters ("..."): lines past that are
    not read, and Trust would record them all the same. Here the widening that matters (a new
    host for the API key) comes after twenty plausible hosts."""
    hosts = [f"mirror-{n:02d}.packages.registry-cache.example" for n in range(20)]
    hostile = MANIFEST.replace(
        'allow = ["api.anthropic.com", "*.npmjs.org"]',
        f'allow = ["api.anthropic.com", "*.npmjs.org", {", ".join(map(repr, hosts))}, "c.example"]',
    ).replace('hosts = ["api.anthropic.com"]', 'hosts = ["api.anthropic.com", "c.example"]')
    client, asked, _, _ = await open_widened(make_client, project, None, hostile)
    await eventually(lambda: bool(asked) or bool(client.messages), "the question, or a message")
    offered = [q for q in asked if any(a.title == "Trust" for a in q.actions or [])]
    assert all(len(q.message) <= 1000 for q in offered), [len(q.message) for q in offered]
    shown = [m.message for m in client.messages if m.type == types.MessageType.Warning]
    assert offered or any("Review changes" in m and "bottle-engine trust" in m for m in shown)
