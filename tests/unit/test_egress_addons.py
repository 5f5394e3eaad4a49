"""The proxy addons, fed with mitmproxy's test flows (no sockets)."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import pytest
from mitmproxy import connection, http
from mitmproxy.proxy import context, events, layer, server_hooks
from mitmproxy.proxy.commands import SendData
from mitmproxy.test import taddons, tflow

from bottle_engine.bundle.audit import read_audit
from bottle_engine.bundle.config import BundleConfig, SecretBinding
from bottle_engine.bundle.egress_addons import (
    DECISION_KEY,
    Allowlist,
    Audit,
    EgressState,
    MeteredTunnel,
    SecretSubstitution,
    make_addons,
    make_state,
)
from tests.bundle_helpers import secret_in_file

TOKEN = "bb-placeholder-5e1f"
REAL = "real-token-value"
DNS = {
    "api.example.com": ["93.184.216.34"],
    "secret.example.com": ["93.184.216.35"],
    "rebind.example.com": ["127.0.0.1"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    return DNS.get(host, [])


@pytest.fixture
def state(tmp_path: Path) -> EgressState:
    config = BundleConfig(
        slug="s",
        bundle_ip="10.99.0.2",
        agent_subnet="10.99.0.0/24",
        egress_allow=("api.example.com", "secret.example.com", "rebind.example.com"),
        secrets=(
            secret_in_file(
                tmp_path / "secret",
                "tok",
                TOKEN,
                ("secret.example.com",),
                REAL,
                extra_headers=("X-Key", "Cookie"),
            ),
        ),
        state_dir=str(tmp_path / "state"),
        bottle_name="dev",
    )
    return make_state(config)


def addons(state: EgressState) -> tuple[Allowlist, SecretSubstitution, Audit]:
    allowlist, secrets, audit = make_addons(state, fake_resolver)
    assert isinstance(allowlist, Allowlist)
    assert isinstance(secrets, SecretSubstitution)
    assert isinstance(audit, Audit)
    return allowlist, secrets, audit


def request_flow(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> http.HTTPFlow:
    flow = tflow.tflow(req=http.Request.make(method, url, body, headers or {}))
    return flow


def run_request(state: EgressState, flow: http.HTTPFlow) -> None:
    allowlist, secrets, audit = addons(state)
    with taddons.context():
        asyncio.run(allowlist.requestheaders(flow))
        secrets.requestheaders(flow)
        secrets.request(flow)
        if flow.response is None:
            flow.response = http.Response.make(200, b"upstream says hi")
        audit.response(flow)


def connect_flow(host: str, port: int = 443) -> http.HTTPFlow:
    flow = tflow.tflow(req=http.Request.make("CONNECT", f"http://{host}:{port}/"))
    flow.request.host, flow.request.port = host, port
    return flow


def audit_lines(state: EgressState) -> list[dict[str, object]]:
    assert state.audit is not None
    return [json.loads(line) for line in state.audit.path.read_text().splitlines()]


def test_denied_host_gets_403_naming_rule_and_bottle_toml(state: EgressState) -> None:
    flow = request_flow("GET", "http://not-listed.example.com/x")
    run_request(state, flow)
    assert flow.response is not None and flow.response.status_code == 403
    body = flow.response.get_text()
    assert "default-deny" in body
    assert 'add "not-listed.example.com" to [bottles.dev.egress] allow' in body
    assert flow.response.headers["X-Bot-Bottle-Rule"] == "default-deny"


def test_allowed_plain_request_is_pinned_to_the_checked_address(state: EgressState) -> None:
    flow = request_flow("GET", "http://api.example.com/x")
    allowlist, _, _ = addons(state)
    asyncio.run(allowlist.requestheaders(flow))
    assert flow.response is None
    server = connection.Server(address=("api.example.com", 80))
    asyncio.run(
        allowlist.server_connect(server_hooks.ServerConnectionHookData(server, flow.client_conn))
    )
    assert server.address == ("93.184.216.34", 80)
    assert server.error is None


def test_a_connect_that_never_completes_leaves_nothing_behind(state: EgressState) -> None:
    """mitmproxy holds a connect while five connections to its address are open for the client,
    and cancels it when the client hangs up: neither `server_connected` nor
    `server_connect_error` follows. The name kept for each such connect stayed for good, one per
    client connection the agent opened and dropped."""
    flow = request_flow("GET", "http://api.example.com/x")
    allowlist, _, _ = addons(state)
    for _ in range(50):
        asyncio.run(allowlist.requestheaders(flow))
        server = connection.Server(address=("api.example.com", 80))
        data = server_hooks.ServerConnectionHookData(server, flow.client_conn)
        asyncio.run(allowlist.server_connect(data))
        assert server.address == ("93.184.216.34", 80)
        del server, data  # the cancelled connect's connection, gone with its client
    gc.collect()
    assert len(allowlist.named) == 0


def test_server_connect_refuses_a_name_that_rebinds_to_loopback(state: EgressState) -> None:
    allowlist, _, _ = addons(state)
    server = connection.Server(address=("rebind.example.com", 443))
    client = tflow.tclient_conn()
    asyncio.run(allowlist.server_connect(server_hooks.ServerConnectionHookData(server, client)))
    assert server.error is not None and "special-address" in server.error
    assert server.address == ("rebind.example.com", 443)


def test_request_to_name_resolving_to_loopback_is_refused(state: EgressState) -> None:
    flow = request_flow("GET", "http://rebind.example.com/")
    run_request(state, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "127.0.0.1" in flow.response.get_text()


def test_connect_to_unlisted_host_is_refused_and_audited(state: EgressState) -> None:
    allowlist, _, audit = addons(state)
    flow = connect_flow("nope.example.com")
    asyncio.run(allowlist.http_connect(flow))
    assert flow.response is not None and flow.response.status_code == 403
    audit.http_connect_error(flow)
    (entry,) = audit_lines(state)
    assert entry["decision"] == "deny" and entry["method"] == "CONNECT"
    assert entry["kind"] == "connect" and entry["rule"] == "default-deny"


def test_tunnel_to_host_without_secret_is_raw_tcp_and_audited_with_bytes(
    state: EgressState,
) -> None:
    allowlist, _, audit = addons(state)
    flow = connect_flow("api.example.com")
    asyncio.run(allowlist.http_connect(flow))
    assert flow.response is None
    tunnel = state.tunnels[flow.server_conn.id]
    assert not tunnel.intercept and tunnel.address == "93.184.216.34"
    audit.http_connected(flow)

    ctx = context.Context(flow.client_conn, _options())
    ctx.server = flow.server_conn
    nextlayer = layer.NextLayer(ctx)
    allowlist.next_layer(nextlayer)
    assert nextlayer.layer is None  # nothing relayed before the first bytes say what they carry
    nextlayer.events.append(events.DataReceived(ctx.client, b"SSH-2.0-client\r\n"))
    allowlist.next_layer(nextlayer)
    relay = nextlayer.layer
    assert isinstance(relay, MeteredTunnel) and relay.flow is None  # no per-chunk hooks

    for sender, size in ((ctx.client, 100), (ctx.server, 2000)):
        commands = list(relay.relay_messages(events.DataReceived(sender, b"x" * size)))
        assert [len(c.data) for c in commands if isinstance(c, SendData)] == [size]
    audit.client_disconnected(flow.client_conn)
    opened, entry = audit_lines(state)
    assert (opened["stage"], opened["bytes"]) == ("open", 0)
    assert (entry["kind"], entry["decision"], entry["method"]) == ("tunnel", "allow", "CONNECT")
    assert (entry["bytes_sent"], entry["bytes_received"], entry["bytes"]) == (100, 2000, 2100)
    assert entry["stage"] == "close"
    assert flow.server_conn.id not in state.tunnels


def test_tunnel_to_secret_host_is_intercepted(state: EgressState) -> None:
    allowlist, _, _ = addons(state)
    flow = connect_flow("secret.example.com")
    asyncio.run(allowlist.http_connect(flow))
    assert state.tunnels[flow.server_conn.id].intercept
    ctx = context.Context(flow.client_conn, _options())
    ctx.server = flow.server_conn
    nextlayer = layer.NextLayer(ctx)
    allowlist.next_layer(nextlayer)
    assert nextlayer.layer is None  # left to mitmproxy: TLS, then HTTP


def intercepted_flow(
    state: EgressState, headers: dict[str, str], url: str = "/", body: bytes = b""
) -> http.HTTPFlow:
    allowlist, _, _ = addons(state)
    tunnel = connect_flow("secret.example.com")
    asyncio.run(allowlist.http_connect(tunnel))
    flow = request_flow("POST" if body else "GET", f"https://93.184.216.35{url}", headers, body)
    flow.request.headers["Host"] = "secret.example.com"
    flow.request.authority = ""
    # As mitmproxy builds a request inside the tunnel: the CONNECT's client and server
    # connections, the request pointed at the server's (checked) address.
    flow.client_conn = tunnel.client_conn
    flow.client_conn.sni = "secret.example.com"
    flow.server_conn = tunnel.server_conn
    return flow


def test_placeholder_in_header_to_bound_host_is_replaced(state: EgressState) -> None:
    flow = intercepted_flow(state, {"Authorization": f"Bearer {TOKEN}"})
    run_request(state, flow)
    assert flow.request.headers["Authorization"] == f"Bearer {REAL}"
    assert flow.metadata[DECISION_KEY].allowed
    (entry,) = audit_lines(state)
    assert (entry["kind"], entry["host"], entry["decision"]) == (
        "intercepted",
        "secret.example.com",
        "allow",
    )


@pytest.mark.parametrize(
    ("accept", "sent"),
    [
        ("application/vnd.github+json; charset=utf-16", "application/vnd.github+json"),
        ("text/plain;\tChArSeT = utf-16;q=0.9, */*;q=0.1", "text/plain;q=0.9, */*;q=0.1"),
        ('text/plain;x="a;charset=utf-16",application/json', 'text/plain;x="a,application/json'),
        ("charset=utf-16", None),
    ],
)
def test_a_request_to_a_bound_host_leaves_the_charset_to_the_host(
    state: EgressState, accept: str, sent: str | None
) -> None:
    """A host that answers in the charset asked for would send an echo of the value in bytes
    the scrubber does not look for; the media types asked for stay."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": accept, "Accept-Charset": "utf-16"}
    flow = intercepted_flow(state, headers)
    run_request(state, flow)
    assert flow.metadata[DECISION_KEY].allowed
    assert "accept-charset" not in flow.request.headers
    assert flow.request.headers.get("accept") == sent


def test_placeholder_in_body_is_refused(state: EgressState) -> None:
    flow = intercepted_flow(state, {}, body=f"token={TOKEN}".encode())
    run_request(state, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "secret-in-body" in flow.response.get_text()
    assert REAL not in flow.request.get_text()
    (entry,) = audit_lines(state)
    assert (entry["decision"], entry["rule"]) == ("deny", "secret-in-body")


def test_placeholder_in_query_is_refused(state: EgressState) -> None:
    flow = intercepted_flow(state, {}, url=f"/?key={TOKEN}")
    run_request(state, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "secret-in-url" in flow.response.get_text()


def test_placeholder_to_other_host_is_refused(state: EgressState) -> None:
    flow = request_flow("GET", "http://api.example.com/", {"Authorization": f"Bearer {TOKEN}"})
    run_request(state, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "secret-wrong-host" in flow.response.get_text()
    assert flow.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_missing_secret_file_stops_the_proxy_at_start(tmp_path: Path) -> None:
    config = BundleConfig(
        slug="s",
        bundle_ip="10.99.0.2",
        agent_subnet="10.99.0.0/24",
        secrets=(SecretBinding("tok", TOKEN, ("a.example.com",), str(tmp_path / "missing")),),
        state_dir=str(tmp_path / "state"),
    )
    with pytest.raises(RuntimeError, match="secret 'tok'"):
        make_addons(make_state(config, audit=False))


def test_audit_reader_sees_what_the_addons_wrote(state: EgressState) -> None:
    run_request(state, request_flow("GET", "http://api.example.com/"))
    run_request(state, request_flow("GET", "http://nope.example.com/"))
    assert state.audit is not None
    entries = list(read_audit(state.audit.path))
    assert [(e.host, e.decision, e.status) for e in entries] == [
        ("api.example.com", "allow", 200),
        ("nope.example.com", "deny", 403),
    ]


def _options() -> object:
    with taddons.context() as tctx:
        return tctx.options


@pytest.mark.parametrize("url", ["https://secret.example.com/x", "http://api.example.com/x"])
def test_placeholder_in_trailers_is_refused(state: EgressState, url: str) -> None:
    flow = request_flow("POST", url, body=b"abc")
    flow.request.trailers = http.Headers(x_signature=TOKEN)
    run_request(state, flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "secret-in-trailers" in (flow.response.get_text() or "")


def test_placeholder_in_trailers_of_a_streamed_body_is_not_sent(state: EgressState) -> None:
    flow = request_flow("POST", "https://secret.example.com/x")
    flow.request.stream = True  # the body went upstream unbuffered; the trailers are still here
    flow.request.trailers = http.Headers(x_signature=TOKEN)
    _, secrets, audit = addons(state)
    with taddons.context():
        secrets.request(flow)
        flow.response = http.Response.make(200, b"upstream says hi")
        audit.response(flow)
    assert flow.request.trailers is None
    assert "trailers were not sent" in str(audit_lines(state)[-1]["reason"])


@pytest.mark.parametrize(
    ("status", "header"),
    [(200, "content-encoding"), (101, "upgrade"), (101, "sec-websocket-extensions")],
)
def test_a_refused_response_does_not_quote_the_real_value_it_echoed(
    state: EgressState, status: int, header: str
) -> None:
    # A bound host echoes the Authorization into a head the proxy refuses to relay (a coding it
    # cannot search, an upgrade it cannot scrub): the 502 page names that head, scrubbed.
    allowlist, secrets, _ = addons(state)
    flow = intercepted_flow(state, {"Authorization": f"Bearer {TOKEN}"})
    with taddons.context():
        asyncio.run(allowlist.requestheaders(flow))
        secrets.requestheaders(flow)
        secrets.request(flow)
        assert flow.request.headers["Authorization"] == f"Bearer {REAL}"
        flow.response = http.Response.make(status)
        flow.response.headers.pop("content-length", None)  # streamed: its size is unknown
        if status == 101:
            flow.response.headers["upgrade"] = "websocket"
        flow.response.headers[header] = f"x-{REAL}"
        secrets.responseheaders(flow)
    assert flow.response is not None and flow.response.status_code == 502
    assert callable(flow.response.stream)
    page = flow.response.stream(b"")
    assert b"x-" in page and REAL.encode() not in page, page
    assert REAL not in flow.metadata[DECISION_KEY].reason


def test_every_header_value_with_the_placeholder_is_replaced_and_nothing_else(
    state: EgressState,
) -> None:
    flow = intercepted_flow(state, {})
    flow.request.headers.fields = (
        (b"X-Key", TOKEN.encode()),
        (b"X-Key", b"plain"),
        (b"Cookie", f"a=1; k={TOKEN}; z={TOKEN}".encode()),
    )
    run_request(state, flow)
    assert flow.request.headers.fields[:3] == (
        (b"X-Key", REAL.encode()),
        (b"X-Key", b"plain"),
        (b"Cookie", f"a=1; k={REAL}; z={REAL}".encode()),
    )


@pytest.mark.parametrize(
    "field",
    [(b"X-Amz-Meta-Note", TOKEN.encode()), (TOKEN.encode(), b"the placeholder as a name")],
)
def test_a_placeholder_in_a_header_the_secret_does_not_list_is_refused_naming_the_fix(
    state: EgressState, field: tuple[bytes, bytes]
) -> None:
    """A server may keep such a header as data and hand the real value back unscrubbed."""
    flow = intercepted_flow(state, {})
    flow.request.headers.fields = ((b"Authorization", f"Bearer {TOKEN}".encode()), field)
    run_request(state, flow)
    assert flow.response is not None and flow.response.status_code == 403
    page = flow.response.get_text()
    assert page is not None and "secret-header-not-allowed" in page
    assert REAL not in page and REAL.encode() not in b"".join(flow.request.headers.fields[0])
    if field[0] == b"X-Amz-Meta-Note":
        assert "To allow it: add 'X-Amz-Meta-Note' to headers in [bottles.dev.secrets.tok]" in page


def test_address_pins_do_not_outlive_their_requests(tmp_path: Path) -> None:
    """One keep-alive client, 5 000 plain-HTTP requests to names a wildcard entry allows: each
    decision pins an address for `server_connect`, which a refused request (here its Host names
    another host) or one sent on a reused server connection never comes to take."""
    config = BundleConfig(
        slug="s",
        bundle_ip="10.99.0.2",
        agent_subnet="10.99.0.0/24",
        egress_allow=("*.example.com",),
        state_dir=str(tmp_path / "state"),
    )
    state = make_state(config, audit=False)

    async def any_name(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    allowlist, _, audit = make_addons(state, any_name)
    assert isinstance(allowlist, Allowlist) and isinstance(audit, Audit)
    client = tflow.tclient_conn()
    with taddons.context():
        for n in range(5000):
            host = f"n{n}.example.com"
            # Even: refused (the Host header names another host); odd: allowed, and sent on
            # the server connection already open, so no server_connect takes the pin.
            named = "elsewhere.example.com" if n % 2 == 0 else host
            flow = request_flow("GET", f"http://{host}/", {"Host": named})
            flow.client_conn = client
            asyncio.run(allowlist.requestheaders(flow))
            if flow.response is None:
                flow.response = http.Response.make(200, b"ok")
            audit.response(flow)
    assert len(state.pins) <= 1, len(state.pins)


@pytest.mark.parametrize(("echoes", "kept"), [(True, False), (False, True)])
def test_hashes_of_a_body_are_dropped_only_when_it_held_the_real_value(
    state: EgressState, echoes: bool, kept: bool
) -> None:
    """The agent gets the scrubbed body; a hash of the body as sent would let it test guesses
    of the value offline. A body without the value keeps its ETag (caching still works)."""
    allowlist, secrets, _ = addons(state)
    flow = intercepted_flow(state, {"Authorization": f"Bearer {TOKEN}"})
    body = b"token: " + (REAL.encode() if echoes else b"none")
    digests = {"ETag": '"abc"', "Content-MD5": "x", "X-Amz-Checksum-Sha256": "y"}
    with taddons.context():
        asyncio.run(allowlist.requestheaders(flow))
        secrets.requestheaders(flow)
        flow.response = http.Response.make(200, body, {**digests, "X-Other": "z"})
        secrets.responseheaders(flow)
        secrets.response(flow)
    assert flow.response is not None and REAL.encode() not in (flow.response.content or b"")
    assert all((name in flow.response.headers) == kept for name in digests)
    assert flow.response.headers["X-Other"] == "z"
