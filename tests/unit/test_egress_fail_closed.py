"""The addons fail closed, and an upgraded connection is scrubbed and not kept (no sockets).

mitmproxy logs an exception raised by an addon hook and carries on as if the hook had passed;
tests/unit/test_egress_proxy_live.py shows the request that went through that way. Here each
kind of hook is made to raise and must close what it guards instead.
"""

from __future__ import annotations

import asyncio

import pytest
from mitmproxy import connection, http, tcp
from mitmproxy.flow import Error
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from bottle_engine.bundle.egress_addons import (
    DECISION_KEY,
    EgressState,
    Tunnel,
    make_addons,
)
from bottle_engine.bundle.egress_fail_closed import INTERNAL_ERROR
from bottle_engine.bundle.egress_policy import Decision
from tests.bundle_helpers import websocket_frame, websocket_messages
from tests.unit.test_egress_addons import (
    REAL,
    TOKEN,
    addons,
    audit_lines,
    request_flow,
    run_request,
)
from tests.unit.test_egress_addons import state as state  # the fixture


async def broken_resolver(host: str, port: int) -> list[str]:
    raise ValueError("a resolver that fails in a way nobody foresaw")


def test_a_check_that_raises_refuses_the_request(state: EgressState) -> None:
    allowlist, _, audit = make_addons(state, broken_resolver)
    flow = request_flow("GET", "http://api.example.com/x")
    with taddons.context():
        asyncio.run(allowlist.requestheaders(flow))  # type: ignore[attr-defined]
        audit.response(flow)  # type: ignore[attr-defined]
    assert flow.response is not None and flow.response.status_code == 500
    page = flow.response.get_text() or ""
    assert INTERNAL_ERROR in page and "ValueError" in page
    assert "nobody foresaw" not in page  # an exception's text may quote the agent
    (line,) = audit_lines(state)
    assert (line["decision"], line["rule"]) == ("deny", INTERNAL_ERROR)


def test_a_server_connect_that_raises_fails_the_connection(state: EgressState) -> None:
    allowlist, _, _ = make_addons(state, broken_resolver)
    server = connection.Server(address=("api.example.com", 443))
    data = server_hooks.ServerConnectionHookData(server, tflow.tclient_conn())
    asyncio.run(allowlist.server_connect(data))  # type: ignore[attr-defined]
    assert server.error is not None and INTERNAL_ERROR not in server.error
    assert "failed (ValueError)" in server.error


def test_a_response_check_that_raises_kills_the_flow(
    state: EgressState, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secrets, _ = addons(state)
    flow = request_flow("GET", "https://secret.example.com/x", {"authorization": TOKEN})
    run_request(state, flow)

    def explode(data: bytes) -> bytes:
        raise RuntimeError("scrubbing failed")

    monkeypatch.setattr(type(secrets.scrubber), "scrub", lambda self, data: explode(data))
    flow.response = http.Response.make(200, f"echo {REAL}".encode())
    flow.metadata.pop(DECISION_KEY, None)
    # As if intercepted: the scrubber runs (and fails) on this response.
    monkeypatch.setattr("bottle_engine.bundle.egress_addons._intercepted", lambda flow: True)
    with taddons.context():
        secrets.response(flow)
    assert flow.error is not None and flow.error.msg == Error.KILLED_MESSAGE
    assert flow.metadata[DECISION_KEY].rule == INTERNAL_ERROR


def _upgraded(state: EgressState, intercept: bool) -> tcp.TCPFlow:
    """A TCP flow as mitmproxy makes one after a 101 inside a tunnel to the bound host."""
    flow = tflow.ttcpflow(messages=False)
    flow.messages = []
    state.tunnels[flow.server_conn.id] = Tunnel(
        host="secret.example.com",
        port=443,
        address="93.184.216.35",
        decision=Decision(True, "secret.example.com", "listed"),
        intercept=intercept,
        bound=intercept,
        client_id=flow.client_conn.id,
    )
    return flow


def _relay(state: EgressState, flow: tcp.TCPFlow, pieces: list[tuple[bool, bytes]]) -> bytes:
    """What the agent receives from the upstream when `pieces` cross the upgraded connection."""
    _, secrets, audit = addons(state)
    received = b""
    with taddons.context():
        for from_client, data in pieces:
            flow.messages.append(tcp.TCPMessage(from_client, data))
            message = flow.messages[-1]
            secrets.tcp_message(flow)
            audit.tcp_message(flow)
            if not from_client:
                received += message.content
            assert len(flow.messages) <= 1  # relayed, not kept
        secrets.tcp_end(flow)
    return received


def test_an_upgraded_connection_from_the_bound_host_is_scrubbed(state: EgressState) -> None:
    flow = _upgraded(state, intercept=True)
    half = len(REAL) // 2
    received = _relay(
        state,
        flow,
        [
            (False, websocket_frame(b"seen: Bearer " + REAL[:half].encode(), fin=False)),
            (False, websocket_frame(REAL[half:].encode() + b"\n", opcode=0)),
            (True, b"agent says " + REAL.encode()),  # to the bound host: not ours to change
        ],
    )
    assert websocket_messages(received) == [f"seen: Bearer {TOKEN}\n".encode()]


def test_an_upgraded_connection_keeps_no_messages(state: EgressState) -> None:
    flow = _upgraded(state, intercept=False)
    received = _relay(state, flow, [(False, b"x" * 1000), (True, b"y" * 1000)] * 50)
    assert received == b"x" * 1000 * 50
