"""What the language server sends an editor when the agent's text is hostile.

A real agent side (the MCP SDK's client against the supervise server in its own process) asks
for approvals with hostile texts; the real `bottle-lsp` polls the bottle's state dir and asks the
editor. Each `window/showMessageRequest` is checked character by character: one line, every
control, escape and bidi character as a visible escape, and no `[label](command:...)` link
syntax left for VS Code to turn into a link that runs a command.
"""

from __future__ import annotations

import asyncio
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from mcp import Client
from pytest_lsp import LanguageClient

from bottle_engine.approvals import ApprovalLimits, ApprovalStore
from bottle_engine.display import safe_editor_text
from tests.hostile_text import HOSTILE
from tests.integration.test_supervise import SLUG, make_supervise
from tests.lsp.conftest import ClientFactory
from tests.lsp.test_commands import errors, eventually, execute

pytestmark = pytest.mark.asyncio


def looks_safe(message: str) -> bool:
    """No control, format or separator character, and no link or icon syntax."""
    hidden = [c for c in message if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]
    return not hidden and "](" not in message and "$(" not in message


async def asking_client(
    make_client: ClientFactory,
) -> tuple[LanguageClient, list[types.ShowMessageRequestParams]]:
    """A client whose server polls the approvals every 0.05 s, and the questions it is asked,
    each dismissed (the request stays pending)."""
    client = await make_client(approvals={"poll": True, "interval": 0.05})
    asked: list[types.ShowMessageRequestParams] = []

    def ask(params: types.ShowMessageRequestParams) -> None:
        asked.append(params)

    client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(ask)
    return client, asked


async def test_hostile_approval_texts_reach_the_editor_as_one_line_of_visible_escapes(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    supervise = make_supervise(tmp_path, timeout_seconds=300)
    _, asked = await asking_client(make_client)

    with supervise.run():
        async with Client(supervise.url) as agent:
            calls = [
                asyncio.ensure_future(
                    agent.call_tool(
                        "request_approval",
                        {"action": hostile.text, "reason": f"because {hostile.text}"},
                    )
                )
                for hostile in HOSTILE
            ]
            try:
                await eventually(lambda: len(asked) >= len(HOSTILE), "every request asked")
            finally:
                for call in calls:
                    call.cancel()
                await asyncio.gather(*calls, return_exceptions=True)

    expected = sorted(
        f"Approval requested by bottle {SLUG}: "
        f"{safe_editor_text(hostile.text)} — {safe_editor_text('because ' + hostile.text)}"
        for hostile in HOSTILE
    )
    assert sorted(params.message for params in asked) == expected
    assert all(looks_safe(params.message) for params in asked)
    link = next(h for h in HOSTILE if h.name == "command-link")
    assert any(
        "[git status]\\x28command:workbench.action.terminal.sendSequence" in params.message
        for params in asked
    ), link


async def test_error_messages_quoting_hostile_names_carry_no_link_or_escape(
    client: LanguageClient,
) -> None:
    hostile: dict[str, Any] = {
        "slug": "[Stop](command:workbench.action.terminal.sendSequence?%7B%7D)\x1b]52;c;eA==\x07"
    }

    result = await execute(client, "bottle.stop", hostile)

    assert "error" in result
    await eventually(lambda: len(errors(client)) == 1, "the error shown")
    [shown] = errors(client)
    assert all(looks_safe(line) for line in shown.split("\n")), shown
    assert "[Stop]\\x28command:" in shown


def editor_length(message: str) -> int:
    """A message's length as VS Code counts it: UTF-16 code units."""
    return len(message.encode("utf-16-le")) // 2


# An action whose tail, past VS Code's cut at 1000 ("..."), would be approved unread.
TOO_LONG_TO_SHOW = {
    "characters": "run the formatter over "
    + " ".join(f"src/module_{n:03d}.py" for n in range(60))
    + ", then force-push main",
    # VS Code counts UTF-16 code units, and PACKAGE (U+1F4E6) is two of them: 550 fit the
    # server's count of 1000 characters and pushed the tail past the editor's cut.
    "utf-16": "update the lock files " + "\U0001f4e6" * 550 + ", then force-push main",
}


@pytest.mark.parametrize("case", sorted(TOO_LONG_TO_SHOW))
async def test_approve_is_offered_only_on_a_request_shown_whole(
    make_client: ClientFactory, tmp_path: Path, case: str
) -> None:
    """A request VS Code would not show whole gets no Approve in a notification; the person is
    told where to read it whole and answer it."""
    supervise = make_supervise(tmp_path, timeout_seconds=300)
    client, asked = await asking_client(make_client)
    action = TOO_LONG_TO_SHOW[case]

    def told() -> bool:
        return any("bottle-engine approvals" in m.message for m in client.messages)

    with supervise.run():
        async with Client(supervise.url) as agent:
            call = asyncio.ensure_future(
                agent.call_tool("request_approval", {"action": action, "reason": "tidy"})
            )
            try:
                await eventually(lambda: bool(asked) or told(), "the request asked or told")
            finally:
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)

    offered = [q for q in asked if any(a.title == "Approve" for a in q.actions or [])]
    assert not offered and told(), [editor_length(q.message) for q in offered]


async def test_a_bundle_writing_requests_past_its_rate_does_not_flood_the_editor(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A bundle the agent's traffic took over writes request files itself, past the caps the
    store's own code keeps (ten at once, then one every 30 s), and a new one whenever one is
    shown: the editor got a notification for each (and the server kept a request open per
    notification the person never clicked). It gets them no faster than that bundle's own
    store would have opened them."""
    flood = ApprovalStore(
        tmp_path / "state" / "bottles" / "taken-over",
        "taken-over",
        ApprovalLimits(max_pending=1000, burst=1000),
    )
    for number in range(60):
        flood.open_request(f"action {number}", "flood", timeout_seconds=300)
    _, asked = await asking_client(make_client)
    burst = ApprovalLimits().burst
    await eventually(lambda: len(asked) >= burst, "the first requests asked")
    await asyncio.sleep(1.0)  # twenty polls more
    assert len(asked) == burst, f"{len(asked)} notifications from one bottle at once"
