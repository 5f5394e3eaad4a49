"""The supervise server's tool, in process: what the agent is offered and what it gets back."""

from __future__ import annotations

import json
from typing import Any

import anyio
from mcp import Client

from bottle_engine import approvals, state
from bottle_engine.approvals import ApprovalRequest
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.supervise import MAX_ACTION_CHARS, answer_for, build_server


def config(timeout_seconds: float) -> BundleConfig:
    bottle_dir = state.bottle_dir("sup")
    bottle_dir.mkdir(parents=True)
    return BundleConfig(
        slug="sup",
        bundle_ip="10.9.0.2",
        agent_subnet="10.9.0.0/24",
        supervise=True,
        supervise_timeout_seconds=timeout_seconds,
        state_dir=str(bottle_dir),
    )


def request(status: str, note: str | None = None) -> ApprovalRequest:
    return ApprovalRequest(
        "0a1b2c3d",
        "sup",
        "deploy",
        "release",
        status,  # type: ignore[arg-type]
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:10:00+00:00",
        note=note,
    )


def test_the_agent_is_offered_request_approval_with_action_and_reason() -> None:
    async def tools() -> list[Any]:
        async with Client(build_server(config(60))) as client:
            return list((await client.list_tools()).tools)

    [tool] = anyio.run(tools)

    assert tool.name == "request_approval"
    assert set(tool.input_schema["required"]) == {"action", "reason"}


def test_answers_tell_the_agent_whether_to_proceed() -> None:
    assert answer_for(request("approved"))["message"].endswith("you may proceed")
    denied = answer_for(request("denied", note="use staging"))
    assert (denied["approved"], denied["note"]) == (False, "use staging")
    assert "do not proceed" in denied["message"] and "use staging" in denied["message"]
    assert "timed out" in answer_for(request("timed_out"))["message"]


def test_no_answer_in_time_returns_denied_and_the_delivered_request_leaves_the_store() -> None:
    async def ask() -> dict[str, Any]:
        async with Client(build_server(config(0.5))) as client:
            result = await client.call_tool("request_approval", {"action": "a", "reason": "b"})
            return dict(result.structured_content or {})

    outcome = anyio.run(ask)

    assert (outcome["approved"], outcome["status"]) == (False, "timed_out")
    assert approvals.list_requests("sup") == []
    log = (state.bottle_dir("sup") / approvals.AUDIT_LOG).read_text().splitlines()
    assert [json.loads(line)["event"] for line in log] == ["requested", "timed_out", "delivered"]


def test_overlong_text_from_the_agent_is_cut_with_a_marker_saying_how_much() -> None:
    async def ask() -> None:
        async with Client(build_server(config(0.2))) as client:
            await client.call_tool("request_approval", {"action": "x" * 50_000, "reason": "r"})

    anyio.run(ask)

    log = (state.bottle_dir("sup") / approvals.AUDIT_LOG).read_text().splitlines()
    action = json.loads(log[0])["action"]
    cut = 50_000 - MAX_ACTION_CHARS
    assert action == "x" * MAX_ACTION_CHARS + f" …[{cut} more characters cut by bot-bottle]"
