"""A hostile agent against the person answering its approval requests.

Real parts: the supervise MCP server in its own process on loopback, the MCP SDK's client as the
agent, and the `bottle-engine` CLI in another process on a pseudo-terminal, as a person runs it.
What the terminal receives is checked byte by byte: the agent's texts arrive as visible escapes
on one line each, and no byte of them can move the cursor, erase, write the clipboard, hide text
or forge a row. Then the flood: the pending cap and the rate refuse at once (nothing recorded),
and answered requests leave the approvals dir while the audit log keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from bottle_engine import approvals, state
from bottle_engine.approvals import AUDIT_LOG, ApprovalLimits
from bottle_engine.bundle.supervise import (
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    MAX_SESSIONS,
    MAX_WAITING_CALLS,
)
from tests.hostile_text import HOSTILE, plain, run_in_terminal, shown, unexpected_controls
from tests.integration.test_supervise import (
    SLUG,
    Supervise,
    initialize_body,
    make_supervise,
    post_mcp,
    wait_for_pending,
)
from tests.polling import wait_for

DEFAULTS = ApprovalLimits()


@pytest.fixture
def supervise(tmp_path: Path) -> Any:
    server = make_supervise(tmp_path, timeout_seconds=300)
    with server.run():
        yield server


def cli(*args: str) -> tuple[int, bytes]:
    return run_in_terminal([sys.executable, "-m", "bottle_engine.cli", *args], dict(os.environ))


async def ask_all(
    url: str, texts: list[tuple[str, str]], then: Any, answers_expected: int = 0
) -> list[dict[str, Any]]:
    """Call request_approval once per (action, reason), all at once; run `then` in a thread
    while they wait, then wait for `answers_expected` answers (30 s at most); cancel whatever
    still waits. The answers that came back."""
    answers: list[dict[str, Any]] = []
    async with Client(url) as client, anyio.create_task_group() as tasks:

        async def call(action: str, reason: str) -> None:
            result = await client.call_tool(
                "request_approval", {"action": action, "reason": reason}
            )
            answers.append(dict(result.structured_content or {}))

        for action, reason in texts:
            tasks.start_soon(call, action, reason)
        await anyio.to_thread.run_sync(then)
        with anyio.move_on_after(30):
            while len(answers) < answers_expected:
                await anyio.sleep(0.1)
        tasks.cancel_scope.cancel()
    return answers


def test_the_approvals_listing_shows_hostile_texts_as_visible_escapes_on_their_own_rows(
    supervise: Supervise,
) -> None:
    texts = [(hostile.text, f"reason: {hostile.text}") for hostile in HOSTILE]
    listed: dict[str, Any] = {}

    def list_in_a_terminal() -> None:
        wait_for_pending(len(texts))
        listed["result"] = cli("approvals")

    anyio.run(ask_all, supervise.url, texts, list_in_a_terminal)
    code, output = listed["result"]

    assert code == 0, output
    assert unexpected_controls(output) == []
    rows = plain(output).split("\n")
    assert rows[-1] == "" and len(rows) == 1 + len(texts) + 1, rows  # header, one row each
    assert re.fullmatch(r"ID +BOTTLE +KIND +STATUS +ASKED +TIMES OUT +ACTION +REASON *", rows[0])
    pending = {r.id: r for r in approvals.list_requests(SLUG, pending_only=True)}
    for row in rows[1:-1]:
        request = pending[row[:8]]
        # Each request on its own row; the action and the reason exactly as escaped.
        expected = (
            rf"{request.id}  {SLUG}  action  pending  \d+s ago  in \d+[sm] +"
            rf"{re.escape(shown(request.action))} +{re.escape(shown(request.reason))} *"
        )
        assert re.fullmatch(expected, row), row
    assert {pending[row[:8]].action for row in rows[1:-1]} == {h.text for h in HOSTILE}


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_approve_and_deny_print_the_action_as_visible_escapes(
    supervise: Supervise, verb: str
) -> None:
    texts = [(hostile.text, "why") for hostile in HOSTILE]
    printed: dict[str, tuple[int, bytes]] = {}

    def answer_each_in_a_terminal() -> None:
        for request in wait_for_pending(len(texts)):
            if verb == "approve":  # shows the request and asks first
                argv = [sys.executable, "-m", "bottle_engine.cli", verb, request.id]
                printed[request.id] = run_in_terminal(
                    argv, dict(os.environ), interactive=True, type_in=b"y\n"
                )
            else:
                printed[request.id] = cli(verb, request.id)

    answers = anyio.run(ask_all, supervise.url, texts, answer_each_in_a_terminal, len(texts))

    status = "approved" if verb == "approve" else "denied"
    assert sorted(answer["status"] for answer in answers) == [status] * len(texts)
    actions = {answer["request_id"]: answer for answer in answers}
    log = state.bottle_dir(SLUG) / AUDIT_LOG
    asked = {
        entry["id"]: entry["action"]
        for entry in map(json.loads, log.read_text().splitlines())
        if entry["event"] == "requested"
    }
    assert set(printed) == set(actions) == set(asked)
    for request_id, (code, output) in printed.items():
        assert code == 0, output
        assert unexpected_controls(output) == []
        if verb == "approve":  # what the person read before the yes (typed, and echoed)
            read, answered = plain(output).split("Approve this request? [y/N] ", 1)
            assert f"\n  action:      {shown(asked[request_id])}\n" in read
            assert answered.lstrip("y\n").startswith(
                f"{request_id} {status}: {shown(asked[request_id])}\n"
            )
        else:
            assert output == f"{request_id} {status}: {shown(asked[request_id])}\n".encode()


def test_more_requests_than_the_pending_cap_are_refused_at_once_and_not_recorded(
    supervise: Supervise,
) -> None:
    extra = 3
    texts = [(f"request {n}", "flood") for n in range(DEFAULTS.max_pending + extra)]
    # The requests over the cap are answered at once; the others wait until cancelled.
    refusals = anyio.run(ask_all, supervise.url, texts, lambda: None, extra)

    assert len(refusals) == extra, "the requests beyond the cap were not refused"
    for refusal in refusals:
        assert (refusal["approved"], refusal["status"], refusal["request_id"]) == (
            False,
            "refused",
            "",
        )
        assert "already waiting for a person" in refusal["message"]
        assert refusal["retry_after_seconds"] > 0
    assert len(approvals.list_requests(SLUG, pending_only=True)) == DEFAULTS.max_pending
    on_disk = list((state.bottle_dir(SLUG) / "approvals").glob("[0-9a-f]*.json"))
    assert len(on_disk) == DEFAULTS.max_pending


def test_requests_beyond_the_rate_are_refused_with_the_time_to_wait(tmp_path: Path) -> None:
    # Each request times out at once, so the pending cap never binds: only the rate does.
    server = make_supervise(tmp_path, timeout_seconds=0.1)
    sent = DEFAULTS.burst + 3

    async def ask_in_turn() -> tuple[list[dict[str, Any]], float]:
        answers = []
        started = time.monotonic()
        async with Client(server.url) as client:
            for n in range(sent):
                result = await client.call_tool(
                    "request_approval", {"action": f"step {n}", "reason": "go"}
                )
                answers.append(dict(result.structured_content or {}))
        return answers, time.monotonic() - started

    with server.run():
        answers, elapsed = anyio.run(ask_in_turn)

    statuses = [answer["status"] for answer in answers]
    assert statuses[: DEFAULTS.burst] == ["timed_out"] * DEFAULTS.burst
    # The bucket refills one request per refill_seconds while the test runs.
    refilled = int(elapsed // DEFAULTS.refill_seconds)
    assert statuses.count("refused") >= sent - DEFAULTS.burst - refilled > 0
    refusal = next(answer for answer in answers if answer["status"] == "refused")
    assert "too often" in refusal["message"]
    assert 0 < refusal["retry_after_seconds"] <= DEFAULTS.refill_seconds


def test_answered_requests_leave_the_approvals_dir_and_stay_in_the_audit_log(
    supervise: Supervise,
) -> None:
    texts = [(f"deploy {n}", "release") for n in range(3)]

    def answer_them_all() -> None:
        for request in wait_for_pending(len(texts)):
            approvals.answer(request.id, approved=True)

    answers = anyio.run(ask_all, supervise.url, texts, answer_them_all, len(texts))

    assert sorted(answer["status"] for answer in answers) == ["approved"] * 3
    assert approvals.list_requests(SLUG) == []
    directory = state.bottle_dir(SLUG) / "approvals"
    assert list(directory.glob("[0-9a-f]*.json")) == [] and list(directory.glob(".q-*")) == []
    log = [
        json.loads(line) for line in (state.bottle_dir(SLUG) / AUDIT_LOG).read_text().splitlines()
    ]
    delivered = {entry["action"]: entry for entry in log if entry["event"] == "delivered"}
    assert set(delivered) == {action for action, _ in texts}
    assert all(entry["status"] == "approved" for entry in delivered.values())


def test_a_request_body_over_the_cap_is_refused_before_it_is_parsed(supervise: Supervise) -> None:
    filler = b"a" * (MAX_BODY_BYTES + 1)
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"x": "%s"}}' % filler
    status, text = post_mcp(supervise.port, body)

    assert status == 413
    assert "not a document" in text


def test_sessions_opened_and_never_closed_stop_at_the_cap(supervise: Supervise) -> None:
    """Each open session holds memory in the bundle until it is closed or idle for 30 minutes;
    an agent that only ever initializes is refused new ones at the cap."""
    initialize = initialize_body("flood")

    statuses = [post_mcp(supervise.port, initialize)[0] for _ in range(MAX_SESSIONS + 1)]

    assert statuses[:MAX_SESSIONS] == [200] * MAX_SESSIONS
    assert statuses[MAX_SESSIONS] != 200


def _half_sent_requests(port: int, count: int) -> list[socket.socket]:
    """`count` connections, each holding a request whose body stops short of what its head
    declares (a slow client, or one that never finishes)."""
    held: list[socket.socket] = []
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {MAX_BODY_BYTES}\r\n"
        "\r\n"
    ).encode()
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        held.append(connection)
        with contextlib.suppress(OSError):  # a connection the server closed at once
            connection.sendall(head + b"a" * (MAX_BODY_BYTES - 1024))
    return held


def _closed_by_server(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_connections_holding_half_sent_requests_stop_at_the_cap(supervise: Supervise) -> None:
    """uvicorn times out only an idle kept-alive connection: a request sent slowly, or never
    finished, holds its connection, its head and the body read so far (up to `MAX_BODY_BYTES`)
    for as long as the client likes, before any session or call cap sees it. 500 such held
    108 MiB of the server, without bound. Past `MAX_CONNECTIONS` a connection is closed at
    once; once the agent lets go, the server answers again."""
    extra = 20
    held = _half_sent_requests(supervise.port, MAX_CONNECTIONS + extra)
    try:
        wait_for(
            lambda: sum(map(_closed_by_server, held)) >= extra,
            f"the server to close the {extra} connections past its cap",
            timeout=30,
        )
    finally:
        for connection in held:
            connection.close()

    assert wait_for(
        lambda: post_mcp(supervise.port, initialize_body("after"))[0] == 200,
        "the server to answer once the agent let go",
        timeout=30,
    )


async def _post_and_hold(
    port: int, body: dict[str, Any], session_id: str | None = None
) -> tuple[bytes, asyncio.StreamWriter]:
    """POST `body` on a connection of its own; the response head, and the connection still
    open (a tool call waiting for a person streams its answer on it later)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode()
    session = (
        f"Mcp-Session-Id: {session_id}\r\nMcp-Protocol-Version: 2025-06-18\r\n"
        if session_id
        else ""
    )
    writer.write(
        (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\n{session}"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
    )
    await writer.drain()
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30), writer


async def _leave_waiting_calls(port: int, count: int) -> dict[str, Any]:
    """`count` request_approval calls on one question, each on a connection the agent closes
    once the server answered its head; then one more call through the MCP client: its answer
    (or {} if it still waited after 30 s)."""
    head, writer = await _post_and_hold(port, json.loads(initialize_body("orphans")))
    writer.close()
    session_id = re.search(rb"(?im)^mcp-session-id: *(\S+)", head)
    assert session_id is not None, head
    sid = session_id.group(1).decode()
    _, writer = await _post_and_hold(
        port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid
    )
    writer.close()
    arguments = {"action": "git push origin feature", "reason": "orphans"}
    for number in range(count):
        call = {
            "jsonrpc": "2.0",
            "id": number + 2,
            "method": "tools/call",
            "params": {"name": "request_approval", "arguments": arguments},
        }
        _, writer = await _post_and_hold(port, call, sid)
        writer.close()
        await writer.wait_closed()
    with anyio.move_on_after(30):
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("request_approval", arguments)
            return dict(result.structured_content or {})
    return {}


def test_tool_calls_left_waiting_by_gone_clients_stop_at_the_cap(supervise: Supervise) -> None:
    """A call keeps waiting for a person after its client closed the connection, until its
    request times out (600 s by default), so the agent need hold nothing open: it left 2,000
    of them in seconds, which held 57 MiB of the bundle and 0.38 of a CPU polling the store,
    without bound. Past `MAX_WAITING_CALLS` a call is refused at once, and nothing recorded."""
    answer = asyncio.run(_leave_waiting_calls(supervise.port, MAX_WAITING_CALLS + 20))

    assert answer["status"] == "refused"
    assert answer["request_id"] == ""
    assert f"at most {MAX_WAITING_CALLS}" in answer["message"]
