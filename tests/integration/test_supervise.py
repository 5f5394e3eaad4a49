"""The supervise MCP server, end to end: a real MCP client (the SDK's streamable HTTP client)
calls request_approval on the server running on loopback, and a person answers with the real
`bottle-engine approve|deny` command in a second process."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from bottle_engine import approvals, state
from bottle_engine.approvals import AUDIT_LOG
from bottle_engine.bundle.config import BundleConfig
from tests.integration.test_gitgate_support import free_port, service, write_config

SLUG = "supervised-bottle"


@dataclass
class Supervise:
    config_path: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def run(self) -> Any:
        return service(
            "bottle_engine.bundle.supervise",
            [
                *("--config", str(self.config_path), "--listen", "127.0.0.1"),
                *("--port", str(self.port), "--allowed-client", "127.0.0.1"),
            ],
            self.port,
            self.log,
        )


def make_supervise(tmp_path: Path, timeout_seconds: float) -> Supervise:
    bottle_dir = state.bottle_dir(SLUG)
    bottle_dir.mkdir(parents=True)
    config = BundleConfig(
        slug=SLUG,
        bundle_ip="127.0.0.1",
        agent_subnet="127.0.0.0/8",
        supervise=True,
        supervise_timeout_seconds=timeout_seconds,
        state_dir=str(bottle_dir),
    )
    return Supervise(write_config(tmp_path / "bundle.json", config), free_port(), tmp_path / "log")


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Supervise]:
    server = make_supervise(tmp_path, timeout_seconds=120)
    with server.run():
        yield server


def bottle_engine(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, as the person at the host runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bottle_engine.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
        check=False,
    )


def post_mcp(
    port: int, body: bytes, *, source: str | None = None, host: str | None = None
) -> tuple[int, str]:
    """POST `body` to the approval server's /mcp as a streamable-HTTP client would, from
    `source` (an address of this machine); the status and the text of the answer. A server
    refusing a body too large answers from the head and closes with the rest unread: sending
    the rest may meet the reset, and the answer that came before it is read all the same."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0) if source else None
    )
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if host:
        headers["Host"] = host
    try:
        with contextlib.suppress(ConnectionError):
            connection.request("POST", "/mcp", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def initialize_body(client_name: str) -> bytes:
    """An MCP `initialize` request, as a client opens a session with it."""
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": client_name, "version": "1"},
            },
        }
    ).encode()


def wait_for_pending(count: int = 1) -> list[approvals.ApprovalRequest]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = approvals.list_requests(SLUG, pending_only=True)
        if len(pending) >= count:
            return pending
        time.sleep(0.1)
    raise AssertionError("the request never reached the bottle's state dir")


def wait_for_event(log: Path, request_id: str, event: str) -> None:
    """Wait for `event` about the request in a bottle's approval audit log."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if (entry["id"], entry["event"]) == (request_id, event):
                return
        time.sleep(0.2)
    raise AssertionError(f"no {event!r} for {request_id} in {log}")


async def ask_and_answer(url: str, answer_args: list[str]) -> tuple[dict[str, Any], str]:
    """Call the tool; once the request is pending, run the CLI with `answer_args` + its id."""
    outcome: dict[str, Any] = {}
    async with Client(url) as client, anyio.create_task_group() as tasks:

        async def call() -> None:
            result = await client.call_tool(
                "request_approval", {"action": "git push --force origin main", "reason": "fix"}
            )
            outcome.update(result.structured_content or {})

        tasks.start_soon(call)
        [request] = await anyio.to_thread.run_sync(wait_for_pending)
        cli = await anyio.to_thread.run_sync(
            lambda: bottle_engine(*answer_args, request.id, "--fingerprint", request.fingerprint)
        )
        assert cli.returncode == 0, cli.stderr
    return outcome, request.id


async def ask_until_pending_then_disconnect(url: str, arguments: dict[str, str]) -> None:
    """The agent asks, and its connection is gone once the request is on file."""
    async with Client(url) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.call_tool, "request_approval", arguments)
        await anyio.to_thread.run_sync(wait_for_pending)
        tasks.cancel_scope.cancel()


def test_approve_from_the_cli_returns_approved_to_the_waiting_tool(supervise: Supervise) -> None:
    outcome, request_id = anyio.run(ask_and_answer, supervise.url, ["approve"])

    assert outcome["approved"] is True
    assert outcome["status"] == "approved"
    assert outcome["request_id"] == request_id


def test_deny_with_a_note_returns_denied_and_the_note(supervise: Supervise) -> None:
    outcome, _ = anyio.run(
        ask_and_answer, supervise.url, ["deny", "--note", "use a pull request instead"]
    )

    assert outcome["approved"] is False
    assert outcome["status"] == "denied"
    assert "use a pull request instead" in outcome["message"]


def test_the_cli_lists_the_pending_request_with_action_and_reason(supervise: Supervise) -> None:
    async def ask_then_list() -> list[dict[str, Any]]:
        async with Client(supervise.url) as client, anyio.create_task_group() as tasks:
            tasks.start_soon(
                client.call_tool,
                "request_approval",
                {"action": "drop table users", "reason": "the migration needs it"},
            )
            await anyio.to_thread.run_sync(wait_for_pending)
            listed = await anyio.to_thread.run_sync(lambda: bottle_engine("approvals", "--json"))
            tasks.cancel_scope.cancel()
        return list(json.loads(listed.stdout))

    [listed] = anyio.run(ask_then_list)

    assert (listed["slug"], listed["action"], listed["reason"], listed["status"]) == (
        SLUG,
        "drop table users",
        "the migration needs it",
        "pending",
    )


def test_no_answer_before_the_timeout_is_denied(tmp_path: Path) -> None:
    server = make_supervise(tmp_path, timeout_seconds=1)

    async def ask() -> dict[str, Any]:
        async with Client(server.url) as client:
            result = await client.call_tool(
                "request_approval", {"action": "rm -rf /", "reason": "x"}
            )
            return dict(result.structured_content or {})

    with server.run():
        outcome = anyio.run(ask)

    assert outcome["approved"] is False
    assert outcome["status"] == "timed_out"
    assert approvals.list_requests(SLUG) == []  # delivered: only the audit log keeps it
    late = bottle_engine("approve", outcome["request_id"])
    assert late.returncode == 1
    assert "has ended: timed_out, and the agent has the answer" in late.stderr


def test_a_pending_request_survives_a_restart_and_its_answer_reaches_the_agent(
    tmp_path: Path,
) -> None:
    server = make_supervise(tmp_path, timeout_seconds=120)
    arguments = {"action": "deploy to production", "reason": "release 1.2"}

    with server.run():
        anyio.run(ask_until_pending_then_disconnect, server.url, arguments)
    [before] = approvals.list_requests(SLUG, pending_only=True)  # the bundle is down now

    async def ask_again_and_approve() -> dict[str, Any]:
        async with Client(server.url) as client, anyio.create_task_group() as tasks:
            outcome: dict[str, Any] = {}

            async def call() -> None:
                result = await client.call_tool("request_approval", arguments)
                outcome.update(result.structured_content or {})

            tasks.start_soon(call)
            log = state.bottle_dir(SLUG) / AUDIT_LOG
            await anyio.to_thread.run_sync(wait_for_event, log, before.id, "asked-again")
            assert [r.id for r in approvals.list_requests(SLUG)] == [before.id]
            approved = await anyio.to_thread.run_sync(
                lambda: bottle_engine("approve", before.id, "--fingerprint", before.fingerprint)
            )
            assert approved.returncode == 0, approved.stderr
        return outcome

    with server.run():
        outcome = anyio.run(ask_again_and_approve)

    assert outcome["approved"] is True
    assert outcome["request_id"] == before.id


def test_an_answer_given_while_the_bundle_is_down_is_returned_after_the_restart(
    tmp_path: Path,
) -> None:
    server = make_supervise(tmp_path, timeout_seconds=120)
    arguments = {"action": "rotate the API key", "reason": "it leaked"}

    async def ask() -> dict[str, Any]:
        async with Client(server.url) as client:
            result = await client.call_tool("request_approval", arguments)
            return dict(result.structured_content or {})

    with server.run():
        anyio.run(ask_until_pending_then_disconnect, server.url, arguments)
    [request] = approvals.list_requests(SLUG, pending_only=True)
    assert bottle_engine("deny", request.id, "--note", "not now").returncode == 0
    with server.run():
        outcome = anyio.run(ask)

    assert (outcome["approved"], outcome["request_id"], outcome["note"]) == (
        False,
        request.id,
        "not now",
    )
