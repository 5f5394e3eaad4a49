"""An egress ask answered in the editor: the real proxy holds a request to an unlisted host, the
real `bottle-lsp` polls the bottle's state dir and asks the editor with Approve once / Approve /
Deny, and the editor's answer reaches the store and the held request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types

from tests.ask_lab import AskLab, ask_lab
from tests.lsp.conftest import ClientFactory
from tests.lsp.test_commands import eventually

pytestmark = pytest.mark.asyncio


async def test_an_egress_ask_reaches_the_editor_and_its_answer_reaches_the_proxy(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    with ask_lab(tmp_path / "lab") as lab:
        client = await make_client(
            approvals={"poll": True, "interval": 0.05},
            env={"BOTTLE_STATE_DIR": str(lab.state_dir)},
        )
        asked: list[types.ShowMessageRequestParams] = []
        answers = iter(["Approve once", "Deny"])

        def ask(params: types.ShowMessageRequestParams) -> types.MessageActionItem:
            asked.append(params)
            return types.MessageActionItem(title=next(answers))

        client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(ask)

        first = await asyncio.to_thread(lab.get, "editor.test", lab.http, "/from-the-editor")
        second = await asyncio.to_thread(lab.get, "editor.test", lab.http, "/asked-again")

        await eventually(lambda: len(asked) == 2, "both asks shown")
        assert first[0] == 200 and len(lab.upstream_saw("/from-the-editor")) == 1
        assert second[0] == 403 and "ask-denied" in second[2]
        assert [[a.title for a in p.actions or []] for p in asked] == [
            ["Approve once", "Approve", "Deny"]
        ] * 2
        assert asked[0].message == (
            "Network access requested by bottle asking: egress: GET "
            f"http://editor.test:{lab.http}/from-the-editor — editor.test:{lab.http} is not on "
            "the bottle's egress allowlist; the proxy holds the request until a person answers "
            "(Approve once: for this request only; Approve: until the bottle stops)"
        )
        answered = [e for e in _asks(lab) if e["stage"] == "answered"]
        assert [e["decision"] for e in answered] == ["allow", "deny"]
        assert all(e["answered_by"].startswith("editor (") for e in answered)
        assert "for this request only" in answered[0]["reason"]


def _asks(lab: AskLab) -> list[dict[str, object]]:
    return [e for e in lab.audit("editor.test") if e["kind"] == "ask"]
