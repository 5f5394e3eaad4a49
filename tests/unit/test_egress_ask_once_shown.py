"""What a person is told an egress answer `--once` covers, against what the proxy lets through.

For a plain-HTTP request, `approve ID --once` lets that one held request go. For a CONNECT it
opens a tunnel: the proxy relays it unread (an approved host is never intercepted) for as long
as the agent keeps it open, every request and byte the agent sends through it included. The
CLI said "lets the bottle reach HOST:443, this held request only", the editor offered
"Approve once", and the answer logged (and shown in the Egress view) said "for this request
only": a person who meant one request gave the agent a lasting pipe to the host.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from typing import Any

import pytest
from lsprotocol import types

from bottle_engine import state
from bottle_engine.approvals import ApprovalRequest, ApprovalStore
from bottle_engine.bundle.egress_ask import answer_of
from bottle_engine.cli import main
from bottle_lsp import approvals as lsp_approvals
from bottle_lsp.engine import Engine

SLUG = "asking"


def _held(method: str, path: str | None, host: str = "held.example") -> ApprovalRequest:
    store = ApprovalStore(state.bottle_dir(SLUG), SLUG)
    return store.open_egress_request(host, 443, method, path, 3600)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _shown_by_approve(
    request: ApprovalRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """What `approve ID --once` shows before its y/N (the person answers no)."""
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    assert main(["approve", request.id, "--once"]) == 1
    return capsys.readouterr().err


def test_approve_once_of_a_connect_says_it_opens_a_tunnel_for_as_long_as_it_stays_open(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = _shown_by_approve(_held("CONNECT", None), capsys, monkeypatch)
    (scope,) = [line for line in shown.splitlines() if "approving:" in line]
    assert "this request only" not in scope, scope
    assert "tunnel" in scope and "as long as" in scope, scope


def test_approve_once_of_a_plain_request_is_that_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = _shown_by_approve(_held("GET", "/status"), capsys, monkeypatch)
    (scope,) = [line for line in shown.splitlines() if "approving:" in line]
    assert "for this request only" in scope and "tunnel" not in scope, scope


def test_the_answer_once_to_a_connect_is_logged_as_a_tunnel_not_one_request() -> None:
    """The answer's reason goes to the audit log, which the Egress view shows the person."""
    approved = replace(_held("CONNECT", None), status="approved", once=True, answered_by="cli")
    reason = answer_of(approved, 1.0).reason
    assert "this request only" not in reason and "tunnel" in reason, reason
    plain = replace(
        _held("GET", "/x", "plain.example"), status="approved", once=True, answered_by="cli"
    )
    assert "this request only" in answer_of(plain, 1.0).reason


class _Editor:
    """The language server as `ask_approval` uses it: the person dismisses the message."""

    def __init__(self) -> None:
        self.asked: list[types.ShowMessageRequestParams] = []
        self.shown_approvals: set[str] = set()

    async def window_show_message_request_async(
        self, params: types.ShowMessageRequestParams
    ) -> Any:
        self.asked.append(params)
        return None

    def show_message(self, kind: types.MessageType, message: str) -> None:
        raise AssertionError(f"not asked in a notification: {message}")


def _notification(request: ApprovalRequest) -> types.ShowMessageRequestParams:
    [pending] = [p for p in Engine().pending_approvals() if p.request_id == request.id]
    editor = _Editor()
    asyncio.run(lsp_approvals.ask_approval(editor, pending))  # type: ignore[arg-type]
    [asked] = editor.asked
    return asked


def test_the_editor_says_what_approve_once_of_a_connect_lets_through() -> None:
    asked = _notification(_held("CONNECT", None))
    assert "Approve once" in [action.title for action in asked.actions or []]
    assert "tunnel" in asked.message and "as long as" in asked.message, asked.message
