"""mitmproxy addons that police the bottle's egress: one small class per concern.

* `Allowlist`: decides every CONNECT and plain-HTTP request with `egress_policy.decide`,
  resolves names once and pins the checked address the proxy then connects to (DNS rebinding),
  and passes tunnels to hosts without secrets through as raw TCP (no TLS interception), once
  their first bytes show that they name no other host to a front that routes by name (a
  ClientHello's SNI; plain HTTP is judged request by request: `egress_relay`). With
  `[egress] ask = true` it holds a request to an unlisted host name until a person answers
  (`egress_ask`); an approved destination still gets every address check, and is never
  intercepted, so an approval never binds a secret.
* `SecretSubstitution`: in intercepted tunnels, swaps placeholders for real values in request
  headers, and refuses placeholders anywhere else (`secret_policy`); puts placeholders back
  wherever a real value comes back in a response (`secret_echo`).
* `Audit`: one JSON line per decision in the bottle's audit log.

One flow, one destination: every request is judged against where the proxy itself sends it,
worked out from that flow alone. Inside a CONNECT tunnel that is the tunnel's (recorded by the
id of the server connection the CONNECT opened, which mitmproxy hands to every request in it;
a connection it opens again to the tunnel's checked address, after the host closed that one,
belongs to the same tunnel: `EgressState.tunnel_of`); elsewhere it is the request's own URL. A
request is never judged by its client connection, which one client may use for many
destinations. The client's TLS name, Host header and absolute-form URL
must agree with that destination (`egress_policy.check_names`), and the upstream's TLS name is
always the destination's, never the client's.

They share an `EgressState`; `make_addons` builds them in the order mitmproxy must call them.
This module imports mitmproxy and runs in the bundle's proxy venv only.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from mitmproxy import connection, http, tcp
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, layer, layers, server_hooks
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.tls import parse_client_hello

from bottle_engine.approvals import ApprovalStore
from bottle_engine.bundle import egress_relay, secret_policy
from bottle_engine.bundle.audit import AuditEntry, AuditLog, Kind, Stage, timestamp
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.egress_ask import EgressAsker
from bottle_engine.bundle.egress_fail_closed import INTERNAL_ERROR, fails_closed
from bottle_engine.bundle.egress_guards import ASKING_KEY, REFUSED_KEY, ProtocolRefusal
from bottle_engine.bundle.egress_policy import (
    NAME_MISMATCH,
    Decision,
    EgressPolicy,
    check_fields,
    check_names,
    check_request_line,
    check_routing,
    decide,
    decide_approved,
    host_header,
    needs_ask,
)
from bottle_engine.bundle.egress_upstreams import CARRIES_VALUE_KEY
from bottle_engine.bundle.secret_echo import Scrubber, WebSocketScrubber, is_body_digest
from bottle_engine.bundle.secret_policy import (
    MAX_DECODED_BODY,
    BodyRefused,
    BoundSecret,
    bind_secrets,
    decode_body,
    intercepts,
)

Resolver = Callable[[str, int], Awaitable[list[str]]]
DECISION_KEY = "bot-bottle.decision"  # flow.metadata: the Decision that let the flow through
RECEIVED_KEY = "bot-bottle.received"  # flow.metadata: bytes of a streamed response so far
SENT_KEY = "bot-bottle.sent"  # flow.metadata: bytes of a streamed request so far
DESTINATION_KEY = "bot-bottle.destination"  # flow.metadata: the Destination it was judged for
RECORDED_KEY = "bot-bottle.recorded"  # flow.metadata: its audit line is written
REFUSED_TRAILERS_KEY = "bot-bottle.refused-trailers"  # flow.metadata: why they were dropped
SENT_CODING_KEY = "bot-bottle.sent-coding"  # flow.metadata: Content-Encoding as the agent sent it
REFUSED_PAGE_KEY = "bot-bottle.refused-page"  # flow.metadata: a bodiless answer's 502 page
TLS_TO_PROXY = "tls-to-proxy"
RESPONSE_NOT_INSPECTABLE = "response-not-inspectable"
NESTED_CONNECT = "nested-connect"
_PIN_SECONDS = 30.0
_STREAM_ABOVE = 256 * 1024  # bytes; larger (or unsized) responses are streamed, not buffered


async def resolve(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to (empty when it does not resolve)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass
class Tunnel:
    """A CONNECT tunnel the allowlist let through."""

    host: str
    port: int
    address: str  # the checked address the tunnel's server connection goes to
    decision: Decision
    # TLS is terminated (with the bottle's CA) and every request inside judged on its own.
    intercept: bool
    # A secret's host: its value may be substituted.
    bound: bool
    client_id: str
    # An opened tunnel that carries another protocol than HTTP, relayed as bytes: recorded as
    # it opens and closes, like a tunnel that is not opened.
    metered: bool = False
    started: float = field(default_factory=time.time)
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(frozen=True)
class Destination:
    """Where one request goes, as the proxy connects: the name every check is made against."""

    host: str
    port: int
    https: bool
    tunnel: Tunnel | None = None


@dataclass
class EgressState:
    """What the addons share: the policy, the secrets, the open tunnels and pinned addresses."""

    policy: EgressPolicy
    secrets: tuple[BoundSecret, ...]
    audit: AuditLog | None
    # by the id of the server connection a CONNECT opened (the one every request inside uses)
    tunnels: dict[str, Tunnel] = field(default_factory=dict)
    # (client id, host, port) -> (checked address, expiry); read once by server_connect, and
    # dropped when its request is answered (Audit)
    pins: dict[tuple[str, str, int], tuple[str, float]] = field(default_factory=dict)
    asker: EgressAsker | None = None  # with [egress] ask = true

    def record(self, entry: AuditEntry) -> None:
        if self.audit is not None:
            self.audit.write(entry)

    def record_tunnel(self, tunnel: Tunnel, stage: Stage) -> None:
        """A relayed tunnel's line: when it opens, and when it closes with its bytes."""
        closing = stage == "close"
        self.record(
            AuditEntry(
                time=timestamp(tunnel.started),
                method="CONNECT",
                host=tunnel.host,
                port=tunnel.port,
                decision="allow",
                rule=tunnel.decision.rule,
                reason=tunnel.decision.reason,
                kind="tunnel",
                status=200,
                bytes_sent=tunnel.bytes_sent if closing else 0,
                bytes_received=tunnel.bytes_received if closing else 0,
                duration_ms=_ms(time.time() - tunnel.started) if closing else 0.0,
                stage=stage,
            )
        )

    def tunnel_of(self, server: connection.Server, client: connection.Client) -> Tunnel | None:
        """The tunnel `server` was opened for: the connection its CONNECT opened, or one
        mitmproxy opened again to the tunnel's checked address after the host closed that one
        (it carries the next request of the same tunnel, under an id of its own)."""
        tunnel = self.tunnels.get(server.id)
        if tunnel is not None or server.address is None:
            return tunnel
        address = (str(server.address[0]), int(server.address[1]))
        return next(
            (
                t
                for t in self.tunnels.values()
                if t.client_id == client.id and (t.address, t.port) == address
            ),
            None,
        )


def denial_response(decision: Decision, status: int = 403) -> http.Response:
    """The refusal a request gets: which rule refused it and how to allow it."""
    lines = [f"bot-bottle refused this request (rule: {decision.rule})", decision.reason]
    if decision.fix:
        lines.append(f"To allow it: {decision.fix}")
    return http.Response.make(
        status,
        ("\n".join(lines) + "\n").encode(),
        {"Content-Type": "text/plain; charset=utf-8", "X-Bot-Bottle-Rule": decision.rule},
    )


def refuse(flow: http.HTTPFlow, decision: Decision, status: int = 403) -> None:
    """Answer `flow` with its refusal; its body is then read only up to a bound (egress_guards)."""
    flow.metadata[DECISION_KEY] = decision
    flow.metadata[REFUSED_KEY] = decision
    flow.response = denial_response(decision, status)
    flow.request.stream = False  # mitmproxy may have chosen to stream it: it goes nowhere


# What a hook that raised does instead of letting its flow through (`egress_fail_closed`).


def _refuse_request(flow: http.HTTPFlow, reason: str) -> None:
    """Before anything is sent upstream: the agent gets a 500 naming the failure."""
    refuse(flow, Decision(False, INTERNAL_ERROR, reason), 500)


def _kill_response(flow: http.HTTPFlow, reason: str) -> None:
    """A response not yet sent to the agent (it may be unscrubbed): dropped with its flow."""
    flow.metadata[DECISION_KEY] = Decision(False, INTERNAL_ERROR, reason)
    if flow.killable:
        flow.kill()  # type: ignore[no-untyped-call]


def _fail_server(data: server_hooks.ServerConnectionHookData, reason: str) -> None:
    data.server.error = reason


def _refuse_layer(nextlayer: layer.NextLayer, reason: str) -> None:
    nextlayer.layer = RefuseConnection(nextlayer.context)


def _drop_message(flow: tcp.TCPFlow, reason: str) -> None:
    """Raw bytes of an upgraded connection that could not be scrubbed: not relayed."""
    if flow.messages:
        flow.messages[-1].content = b""


def _replace_error(flow: http.HTTPFlow, reason: str) -> None:
    """An error message that could not be scrubbed is not passed on at all."""
    if flow.error is not None:
        flow.error.msg = reason


def _log_only(subject: object, reason: str) -> None:
    """Bookkeeping after the fact (audit, forgetting): nothing left to close."""


class RefuseConnection(layer.Layer):
    """Closes the client connection at once (TLS spoken to the proxy port itself)."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.CloseConnection(self.context.client)


class Allowlist:
    """Deny by default; resolve once, check, and connect to the checked address."""

    def __init__(self, state: EgressState, resolver: Resolver = resolve) -> None:
        self.state = state
        self.resolver = resolver
        # The (name, port) a plain-HTTP connection being opened was checked for. Weakly held:
        # a connect cancelled while it waits for a free slot (its client hung up) gets neither
        # `server_connected` nor `server_connect_error`, and its name goes with its connection.
        self.named: weakref.WeakKeyDictionary[connection.Server, tuple[str, int]] = (
            weakref.WeakKeyDictionary()
        )

    @fails_closed(_refuse_request)
    async def http_connect(self, flow: http.HTTPFlow) -> None:
        host, port = flow.request.host, flow.request.port
        if flow.server_conn.id in self.state.tunnels:
            # A CONNECT sent inside a tunnel would be relayed to the tunnel's host as a proxy
            # request; nothing legitimate does that.
            refuse(
                flow,
                Decision(False, NESTED_CONNECT, f"CONNECT {host}:{port} inside another tunnel"),
            )
            return
        decision = await self._decide(flow.client_conn.id, host, port, "CONNECT", ask=True)
        flow.metadata[DECISION_KEY] = decision
        if not decision.allowed or decision.address is None:
            flow.response = denial_response(decision)
            return
        # A person's approval lets a host past the allowlist, never to a secret's value.
        bound = not decision.asked and intercepts(self.state.secrets, host, port)
        # mitmproxy hands this server connection to every request inside the tunnel.
        self.state.tunnels[flow.server_conn.id] = Tunnel(
            host=host.lower().rstrip("."),
            port=port,
            address=decision.address,
            decision=decision,
            intercept=bound or self.state.policy.intercept_all,
            bound=bound,
            client_id=flow.client_conn.id,
        )

    @fails_closed(_refuse_request)
    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Judge a request on its head, before its body is read."""
        request = flow.request
        _withdraw_upgrade_offer(request)
        tunnel = self.state.tunnels.get(flow.server_conn.id)
        if tunnel is not None:
            destination = Destination(
                tunnel.host,
                tunnel.port,
                https=request.scheme == "https" and flow.client_conn.tls_established,
                tunnel=tunnel,
            )
            flow.metadata[DESTINATION_KEY] = destination
            flow.metadata[DECISION_KEY] = tunnel.decision
            if (request.host, request.port) != (tunnel.address, tunnel.port):
                # mitmproxy points every request in a tunnel at its server; anything else is
                # not this tunnel's request and must not be judged as one.
                refuse(
                    flow,
                    Decision(
                        False,
                        NAME_MISMATCH,
                        f"a request for {request.host}:{request.port} claimed the tunnel to "
                        f"{tunnel.host}:{tunnel.port}",
                    ),
                )
                return
            mismatch = check_fields(request.headers.fields) or check_names(
                tunnel.host,
                tunnel.port,
                443 if destination.https else 80,
                sni=flow.client_conn.sni if destination.https else None,
                host_header=_host_field(request),
                authority=request.authority or None,
            )
            if mismatch is None and tunnel.intercept:
                # On every request to a bound host, with a real value or not: a front that
                # routes a connection by its first request sends the later ones, and their
                # real values, where that one went.
                mismatch = check_routing(tunnel.host, tunnel.port, request.headers.fields)
            if mismatch is not None:
                refuse(flow, mismatch)
                return
            request.authority = ""  # origin-form upstream: the Host header is the only name
            default_port = 443 if destination.https else 80
            _name_the_destination(request, tunnel.host, tunnel.port, default_port)
            return
        destination = Destination(request.host, request.port, https=False)
        flow.metadata[DESTINATION_KEY] = destination
        malformed = check_request_line(request.data.method, request.data.path) or check_fields(
            request.headers.fields
        )
        if malformed is not None:  # before a person is asked about its host
            refuse(flow, malformed)
            return
        decision = await self._decide(
            flow.client_conn.id,
            request.host,
            request.port,
            request.method,
            request.path,
            waiting=flow,
        )
        flow.metadata[DECISION_KEY] = decision
        if not decision.allowed:
            refuse(flow, decision)
            return
        mismatch = check_names(
            request.host,
            request.port,
            443 if request.scheme == "https" else 80,
            host_header=_host_field(request),
        )
        if mismatch is not None:
            refuse(flow, mismatch)
            return
        _name_the_destination(request, request.host, request.port, 80)

    @fails_closed(_fail_server)
    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None or server.error:
            return
        host, port = str(server.address[0]), int(server.address[1])
        tunnel = self.state.tunnel_of(server, data.client)
        if tunnel is not None:
            server.address = (tunnel.address, tunnel.port)
            server.sni = tunnel.host  # the upstream's TLS name is the CONNECT host, never the SNI
            return
        pinned = self._take_pin(data.client.id, host, port)
        if pinned is None:
            decision = await self._decide(data.client.id, host, port, "CONNECT", ask=False)
            pinned = self._take_pin(data.client.id, host, port)
            if not decision.allowed or pinned is None:
                server.error = f"refused by the egress policy ({decision.rule}): {decision.reason}"
                return
        server.sni = host
        server.address = (pinned, port)
        self.named[server] = (host, port)

    @fails_closed(_log_only)
    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        """A plain-HTTP connection, once open to its checked address, is named again by the
        name it was checked for. mitmproxy looks for a connection to reuse by the name of the
        next request: with the address left in place it found none, opened one per request,
        kept them all idle, and held the sixth request to that address until the host closed
        one (it opens at most five to one address per client connection). Reused, it carries
        only requests for that name, each judged on its own first. (mitmproxy refuses to
        change an open connection's address, which it reads nowhere else once connected.)"""
        named = self.named.pop(data.server, None)
        if named is not None:
            vars(data.server)["address"] = named

    @fails_closed(_log_only)
    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.named.pop(data.server, None)

    @fails_closed(_refuse_layer)
    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if isinstance(nextlayer.layer, layers.ClientTLSLayer) and not _inside_http(
            context, nextlayer.layer
        ):
            # TLS to the proxy port itself ("secure web proxy"): it would let the client
            # negotiate HTTP/2 with the proxy; the agent's proxy URL is plain http.
            self._refuse_connection(
                nextlayer,
                "TLS",
                str(context.client.sockname[0]) if context.client.sockname else "",
                int(context.client.sockname[1]) if context.client.sockname else 0,
                Decision(
                    False,
                    TLS_TO_PROXY,
                    "TLS spoken to the proxy port itself; use the proxy as http://",
                ),
            )
            return
        tunnel = self.state.tunnels.get(context.server.id)
        if tunnel is None:
            return
        above = _above(context, nextlayer.layer)
        if any(isinstance(e, layers.TCPLayer) for e in above):
            return  # relayed as bytes already
        opened = [i for i, e in enumerate(above) if isinstance(e, layers.ClientTLSLayer)]
        if opened and any(isinstance(e, layers.HttpLayer) for e in above[opened[-1] :]):
            return  # what an HTTP layer inside the opened TLS hands on (after a 101)
        self._relay(nextlayer, tunnel)

    def _relay(self, nextlayer: layer.NextLayer, tunnel: Tunnel) -> None:
        """What a tunnel carries, from its first bytes (and, in TLS the proxy opened, from the
        first bytes inside), so that nothing reaches a front that routes by name with another
        host's name in it (`egress_relay`): HTTP goes through mitmproxy's HTTP layer, each
        request judged on its own; TLS is opened (mitmproxy's TLS layer, chosen already) where
        the tunnel is intercepted, else relayed once its server name checks out; anything
        else is relayed as bytes. mitmproxy's own choice read bytes that do not start with a
        method (an empty line first, which servers skip) as another protocol and relayed them
        raw inside opened TLS, unjudged."""
        context = nextlayer.context
        data: bytes = nextlayer.data_client()  # type: ignore[no-untyped-call]
        spoke = bool(nextlayer.data_server())  # type: ignore[no-untyped-call]
        carried = egress_relay.first_bytes(data, server_spoke=spoke)
        refusal: Decision | None = None
        if carried == egress_relay.TLS:
            if context.client.tls_established:
                carried = egress_relay.RAW  # TLS inside TLS: no front reads a name in it
            elif tunnel.intercept:
                return  # opened: the server name is judged with each request inside
            else:
                carried, refusal = _judge_client_hello(data, tunnel)
        if carried == egress_relay.MORE:
            nextlayer.layer = None
            return
        if carried == egress_relay.PROXY_HEADER:
            refusal = Decision(
                False,
                NAME_MISMATCH,
                "the tunnel begins with a PROXY protocol header, after which a front routes "
                "the request that follows by whatever name it carries",
            )
        if carried == egress_relay.TOO_LONG:
            refusal = Decision(
                False,
                NAME_MISMATCH,
                f"the tunnel's first {len(data)} bytes name no destination (a TLS ClientHello or "
                "a request line longer than the proxy reads before relaying)",
            )
        if refusal is not None:
            self._refuse_connection(nextlayer, "CONNECT", tunnel.host, tunnel.port, refusal)
        elif carried == egress_relay.HTTP:
            _drop_leading_empty_lines(nextlayer)
            nextlayer.layer = layers.HttpLayer(context, HTTPMode.transparent)
        else:
            nextlayer.layer = MeteredTunnel(context, tunnel)
            if tunnel.intercept and not tunnel.metered:
                tunnel.metered = True
                self.state.record_tunnel(tunnel, "open")

    def _refuse_connection(
        self, nextlayer: layer.NextLayer, method: str, host: str, port: int, refusal: Decision
    ) -> None:
        """Close the client's connection, nothing relayed, and log why (kind "connect")."""
        nextlayer.layer = RefuseConnection(nextlayer.context)
        self.state.record(
            AuditEntry(
                time=timestamp(time.time()),
                method=method,
                host=host,
                port=port,
                decision="deny",
                rule=refusal.rule,
                reason=refusal.reason,
                kind="connect",
            )
        )

    async def _decide(
        self,
        client_id: str,
        host: str,
        port: int,
        method: str,
        path: str | None = None,
        *,
        ask: bool = True,
        waiting: http.HTTPFlow | None = None,
    ) -> Decision:
        """The decision for one destination, with the address to connect to pinned; an
        unlisted name is held for a person when the bottle asks (`ask=False`: only an answer
        that already stands counts). The request `waiting` on a person is marked so (its body
        may wait only so long: `egress_guards.MAX_HELD_BODY`)."""
        decision = decide(self.state.policy, host, port, method)
        asker = self.state.asker
        if asker is not None and needs_ask(self.state.policy, decision):
            answer = asker.standing_answer(host, port)
            if answer is None and ask:
                if waiting is not None:
                    waiting.metadata[ASKING_KEY] = True
                answer = await asker.ask(host, port, method, path)
            if answer is None or not answer.allowed:
                return answer.denial(self.state.policy, host, port) if answer else decision
            addresses = await self.resolver(host, port)
            decision = decide_approved(
                self.state.policy, host, port, method, addresses, answer.rule
            )
            if decision.allowed and decision.address is not None:
                self._pin(client_id, host, port, decision.address)
            return decision
        if not decision.allowed or decision.address is not None:
            if decision.address is not None:
                self._pin(client_id, host, port, decision.address)
            return decision
        addresses = await self.resolver(host, port)
        decision = decide(self.state.policy, host, port, method, addresses)
        if decision.allowed and decision.address is not None:
            self._pin(client_id, host, port, decision.address)
        return decision

    def _pin(self, client_id: str, host: str, port: int, address: str) -> None:
        self.state.pins[(client_id, host, port)] = (address, time.monotonic() + _PIN_SECONDS)

    def _take_pin(self, client_id: str, host: str, port: int) -> str | None:
        pinned = self.state.pins.pop((client_id, host, port), None)
        if pinned is None or pinned[1] < time.monotonic():
            return None
        return pinned[0]


def _judge_client_hello(
    data: bytes, tunnel: Tunnel
) -> tuple[egress_relay.Carried, Decision | None]:
    """A relayed tunnel's ClientHello: MORE until it is whole (within its bound), then refused
    when it is malformed or its SNI names another host than the tunnel's."""
    try:
        hello = parse_client_hello(data)
    except ValueError:
        return egress_relay.TLS, Decision(
            False, NAME_MISMATCH, "the tunnel's ClientHello is malformed"
        )
    if hello is None:
        whole = len(data) <= egress_relay.MAX_CLIENT_HELLO
        return (egress_relay.MORE if whole else egress_relay.TOO_LONG), None
    return egress_relay.TLS, check_names(tunnel.host, tunnel.port, 443, sni=hello.sni)


def _drop_leading_empty_lines(nextlayer: layer.NextLayer) -> None:
    """Servers skip empty lines before a request line (RFC 9112, 2.2), and so does mitmproxy's
    HTTP/1 reader, but it then waits for more bytes before it reads the request that came with
    them: a request sent in one piece after an empty line hung until the agent gave up. The
    lines go before the HTTP layer reads what the client sent."""
    client = nextlayer.context.client
    kept: list[events.Event] = []
    leading = True
    for event in nextlayer.events:
        if leading and isinstance(event, events.DataReceived) and event.connection == client:
            data = event.data.lstrip(b"\r\n")
            if not data:
                continue
            leading = False
            event = events.DataReceived(client, data)
        kept.append(event)
    nextlayer.events = kept


def _host_field(request: http.Request) -> str | None:
    """The Host field the request goes on with. Not mitmproxy's `host_header`: for a request
    that claims HTTP/2.0, which an HTTP/1 request line may, that is the URL's authority, and
    the Host field sent upstream (to a front that routes by it) went unjudged."""
    return request.headers.get("host")


def _name_the_destination(request: http.Request, host: str, port: int, default_port: int) -> None:
    """A request without a Host header (HTTP/1.0, or a blank one) would reach the upstream's
    default virtual host, which on a shared front may be another tenant's: it is given the
    name of the host the proxy connects to."""
    if not request.headers.get("host", ""):
        request.headers["Host"] = host_header(host.lower().rstrip("."), port, default_port)


def _above(context: Context, chosen: layer.Layer | None) -> list[layer.Layer]:
    """The layers above `chosen` (`context.layers` also lists those mitmproxy has just stacked
    under it)."""
    stack = context.layers
    return stack[: stack.index(chosen)] if chosen in stack else list(stack)


def streams_response(response: http.Response) -> bool:
    """Is this response relayed as it arrives (large or of unknown size), not buffered whole?"""
    length = response.headers.get("content-length", "")
    return not (length.isdigit() and int(length) <= _STREAM_ABOVE)


def plain_upgrade(response: http.Response) -> bool:
    """Is this 101 to a protocol whose bytes show a real value as sent: a WebSocket without
    extensions (h2c's HPACK and permessage-deflate would hide it from the scrubber)?"""
    return (
        _upgrade(response.headers) == "websocket"
        and "sec-websocket-extensions" not in response.headers
    )


def _approved(destination: Destination) -> bool:
    """Let through by a person's answer (an egress ask), never bound to a secret: with
    `intercept = "all"` its tunnel is opened all the same."""
    return destination.tunnel is not None and destination.tunnel.decision.asked


def _intercepted(flow: http.HTTPFlow) -> bool:
    """A request that went to a secret's host inside a TLS-terminated tunnel (not refused)."""
    destination = flow.metadata.get(DESTINATION_KEY)
    return bool(
        destination is not None
        and destination.tunnel is not None
        and destination.tunnel.intercept
        and REFUSED_KEY not in flow.metadata
    )


def _inside_http(context: Context, chosen: layer.Layer) -> bool:
    """Is `chosen` below an HTTP layer (inside a CONNECT), not on the proxy port itself?"""
    return any(isinstance(existing, layers.HttpLayer) for existing in _above(context, chosen))


class MeteredTunnel(layers.TCPLayer):
    """A raw TCP relay (no TLS, no per-chunk hooks) that counts the bytes for the audit log."""

    def __init__(self, context: Context, tunnel: Tunnel) -> None:
        super().__init__(context, ignore=True)
        self.tunnel = tunnel

    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            if event.connection == self.context.client:
                self.tunnel.bytes_sent += len(event.data)
            else:
                self.tunnel.bytes_received += len(event.data)
        yield from super().relay_messages(event)


def _drop_digests(response: http.Response) -> None:
    """Remove the hashes of a body that held a real value (`secret_echo.BODY_DIGEST_FIELDS`):
    they would let the agent test guesses of it offline (and no longer match the body it
    gets)."""
    response.headers.fields = tuple(f for f in response.headers.fields if not is_body_digest(f[0]))
    if response.trailers:
        response.trailers.fields = tuple(
            f for f in response.trailers.fields if not is_body_digest(f[0])
        )


def _switched_past_judging(response: http.Response) -> str | None:
    """Why the proxy refuses this 101, or None. After a 101 mitmproxy relays raw bytes past
    every hook, so no request in them is judged: h2c there is HTTP/2, whose requests a shared
    front routes by the names they carry. Only a WebSocket follows, whose messages go to the
    application that accepted the handshake (`requestheaders` withdraws other offers first)."""
    if response.status_code != 101 or _upgrade(response.headers) == "websocket":
        return None
    return (
        f"the upstream switched to {response.headers.get('upgrade', '')!r}; after a 101 the "
        "proxy judges no request, so only a WebSocket may follow one"
    )


def _upgrade(headers: http.Headers) -> str:
    return str(headers.get("upgrade", "")).strip().lower()


def _withdraw_upgrade_offer(request: http.Request) -> None:
    """An offer to switch to anything but a WebSocket (curl's `--http2` on an http:// URL
    sends `Upgrade: h2c`) is taken out: a server that honoured it would get a 502
    (`_switched_past_judging`); one that never saw it answers over HTTP/1.1."""
    if "upgrade" in request.headers and _upgrade(request.headers) != "websocket":
        request.headers.pop("upgrade")
        request.headers.pop("http2-settings", None)


def _ask_for_default_charset(request: http.Request) -> None:
    """Take the choice of charset out of a request to a bound host, so that its answer comes
    in its default one. Ktor, Pekko HTTP and ASP.NET encode a text answer in the charset
    Accept-Charset asks for; Spring MVC and ASP.NET in a ``charset`` parameter of Accept
    (which stays, with every such parameter gone: its media types choose the API's format).
    A piece of Accept between two separators that names a charset goes whole, so no server
    reading that field finds one, however it splits, quotes or trims it."""
    request.headers.pop("accept-charset", None)
    kept = []
    for value in request.headers.get_all("accept"):
        pieces = _FIELD_SEPARATOR.split(value)
        kept.append("".join(piece for piece in pieces if "charset" not in piece.lower()))
    if kept:
        request.headers.set_all("accept", [value for value in kept if value.strip(" ,;")])


_FIELD_SEPARATOR = re.compile(r"(?=[;,])")  # before each ';' or ',' (each piece keeps its own)


def _unscrubbable(response: http.Response, *, streamed: bool) -> str | None:
    """Why the scrubber cannot see the real values in this response as relayed, or None: what
    it passes on must be bytes it searched, whole and undecoded."""
    if response.status_code == 101 and not plain_upgrade(response):
        return (
            f"the upstream switched to {response.headers.get('upgrade', '')!r} "
            f"(extensions {response.headers.get('sec-websocket-extensions', '')!r}); after "
            "a 101 the proxy scrubs raw bytes, so only an uncompressed WebSocket is relayed"
        )
    if response.status_code == 206:
        return (
            "the upstream sent partial content (206) though the proxy asked for whole "
            "bodies: a piece of a real value cannot be recognised to be replaced"
        )
    if not streamed:
        return None  # a buffered body is decoded (within its bound) before it is scrubbed
    # Quoted as sent: the reason is scrubbed, and a real value lower-cased would not be found.
    codings = response.headers.get("transfer-encoding", "").replace(" ", "")
    if codings.lower() not in ("", "chunked"):
        return (
            f"the upstream sent a response with Transfer-Encoding {codings!r}: mitmproxy "
            "relays a transfer coding other than chunked undecoded, and compressed bytes "
            "cannot be searched for real secret values"
        )
    encoding = response.headers.get("content-encoding", "").strip()
    if encoding.lower() not in ("", "identity"):
        return (
            f"the upstream sent a {encoding}-encoded response too large to buffer "
            "(the proxy asked for identity encoding), and a compressed stream cannot be "
            "searched for real secret values"
        )
    return None


class SecretSubstitution:
    """Real secret values go only into request headers to the secret's hosts, over TLS."""

    def __init__(self, state: EgressState, values: dict[str, str]) -> None:
        self.state = state
        self.values = values  # secret name -> real value
        self.scrubber = Scrubber.for_values(
            (values[secret.name], secret.placeholder)
            for secret in state.secrets
            if secret.name in values
        )
        self.upgraded: dict[str, WebSocketScrubber] = {}  # by TCP flow id: upgraded connections

    @classmethod
    def from_files(cls, state: EgressState) -> SecretSubstitution:
        values = {}
        for secret in state.secrets:
            path = Path(secret.binding.value_file)
            try:
                values[secret.name] = path.read_text().rstrip("\r\n")
            except OSError as exc:
                raise RuntimeError(
                    f"secret '{secret.name}': cannot read its value from {path}: {exc}"
                ) from exc
        return cls(state, values)

    @fails_closed(_refuse_request)
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Judge the head (URL, headers) and substitute, before anything is sent upstream."""
        destination = flow.metadata.get(DESTINATION_KEY)
        if flow.response is not None or not self.state.secrets or destination is None:
            return
        request = flow.request
        verdict = secret_policy.check_request(
            self.state.secrets,
            destination.host,
            destination.port,
            https=destination.https,
            url=request.path,
            headers=request.headers.items(multi=True),  # type: ignore[no-untyped-call]
            bodies=(),
            bottle=self.state.policy.bottle_name,
            approved=_approved(destination),
        )
        if not verdict.allowed:
            refuse(flow, Decision(False, verdict.rule, verdict.reason, verdict.fix))
            return
        # The body is judged on the coding the agent sent: a placeholder there becomes the real
        # value, which the refusal of an unknown coding would quote back to the agent.
        flow.metadata[SENT_CODING_KEY] = request.headers.get("content-encoding", "")
        for secret in verdict.substitute:
            self._substitute(request.headers, secret)
        if verdict.substitute:
            # Never framed by what the agent sent before it (`egress_upstreams`).
            flow.metadata[CARRIES_VALUE_KEY] = True
        if _intercepted(flow):
            # A bound host may echo the real value; the proxy puts the placeholder back, which
            # it can do in a compressed body only by inflating it. Asking for no compression
            # keeps that off the common path (a compressed answer is still handled below).
            request.headers["accept-encoding"] = "identity"
            # Nor compressed as a transfer coding ("TE: gzip"), which mitmproxy does not undo,
            # nor a WebSocket's messages (permessage-deflate): after a 101 the proxy scrubs
            # the raw bytes it relays.
            request.headers.pop("te", None)
            request.headers.pop("sec-websocket-extensions", None)
            # Nor in pieces: with Range the agent picks which bytes of an echo come back, and
            # a piece of a real value is not a form the scrubber can recognise.
            request.headers.pop("range", None)
            request.headers.pop("if-range", None)
            # Nor in a charset of the agent's choosing: a value in UTF-16 or EBCDIC has none of
            # the bytes the scrubber looks for.
            _ask_for_default_charset(request)

    @fails_closed(_kill_response)
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Scrub the head before it is sent; a streamed body is scrubbed chunk by chunk."""
        response = flow.response
        if response is None or REFUSED_KEY in flow.metadata:
            return
        switched = _switched_past_judging(response)
        if switched is not None:  # on every request, bound or not: it is the egress policy's
            self._refuse_streamed(flow, switched)
            return
        if not _intercepted(flow) or not self.scrubber.replacements:
            return
        bodiless = http1.expected_http_body_size(flow.request, response) == 0
        streamed = streams_response(response) and not bodiless
        refusal = _unscrubbable(response, streamed=streamed)
        if refusal is not None:
            self._refuse_streamed(flow, refusal)
            return
        scrub = self.scrubber.scrub
        response.reason = self.scrubber.scrub_text(response.reason)
        response.headers.fields = tuple(
            (scrub(name), scrub(value)) for name, value in response.headers.fields
        )
        if bodiless:
            # A HEAD, 204 or 304 hashes a body the proxy never sees, and cannot tell whether it
            # held a real value (a GET of it shows the placeholder where it was).
            _drop_digests(response)
        if not streamed:
            return  # buffered (or bodiless): scrubbed whole in `response`
        # Placeholders and values differ in length: the body is re-framed as it goes. Whether
        # it holds a value is known only once sent: its hashes go before (`_drop_digests`).
        _drop_digests(response)
        response.headers.pop("content-length", None)
        if flow.request.http_version == "HTTP/1.1":
            response.headers["transfer-encoding"] = "chunked"
        response.stream = self.scrubber.stream()

    @fails_closed(_kill_response)
    def response(self, flow: http.HTTPFlow) -> None:
        """Scrub a buffered body (inflated within the bound first) and the trailers."""
        response = flow.response
        page = flow.metadata.pop(REFUSED_PAGE_KEY, None)
        if response is not None and page is not None:
            response.stream = False
            response.content = page  # what its Content-Length promised
            return
        if response is None or not _intercepted(flow) or not self.scrubber.replacements:
            return
        if response.trailers:
            response.trailers.fields = tuple(
                (self.scrubber.scrub(k), self.scrubber.scrub(v))
                for k, v in response.trailers.fields
            )
        raw = response.raw_content
        if response.stream:
            _drop_digests(response)  # its trailers, now they have come
            return
        if not raw:
            return
        encoding = response.headers.get("content-encoding", "")
        try:
            body = decode_body(raw, encoding, MAX_DECODED_BODY)
        except BodyRefused as refused:
            flow.response = denial_response(
                Decision(
                    False,
                    RESPONSE_NOT_INSPECTABLE,
                    f"the upstream's response cannot be searched for real secret values: "
                    f"Content-Encoding {encoding!r} ({refused.rule}); the proxy asked for "
                    "identity encoding",
                ),
                502,
            )
            flow.metadata[DECISION_KEY] = Decision(False, RESPONSE_NOT_INSPECTABLE, refused.reason)
            return
        scrubbed = self.scrubber.scrub(body)
        if body is raw and scrubbed == raw:
            return
        if scrubbed != body:
            _drop_digests(response)
        response.headers.pop("content-encoding", None)
        response.content = scrubbed  # sets Content-Length unless the body is chunked

    def _refuse_streamed(self, flow: http.HTTPFlow, reason: str) -> None:
        """Turn a response whose head has not been sent into a 502; its body is dropped. The
        reason quotes the upstream's head, which may echo a real value: it is scrubbed too."""
        decision = Decision(False, RESPONSE_NOT_INSPECTABLE, self.scrubber.scrub_text(reason))
        flow.metadata[DECISION_KEY] = decision
        page = denial_response(decision, 502)
        assert flow.response is not None
        if http1.expected_http_body_size(flow.request, flow.response) == 0:
            # A 101 ends at its head: mitmproxy streams nothing, and sends the body the
            # response holds once it is done (`response`).
            flow.metadata[REFUSED_PAGE_KEY] = page.raw_content or b""
        flow.response.status_code = 502
        flow.response.reason = "Bad Gateway"
        flow.response.headers = page.headers
        flow.response.headers["content-length"] = str(len(page.raw_content or b""))
        body = page.raw_content or b""

        def drop(data: bytes) -> bytes:
            return b"" if data else body

        flow.response.stream = drop

    @fails_closed(_refuse_request)
    def request(self, flow: http.HTTPFlow) -> None:
        """Judge the trailers, and a buffered body (a streamed one has gone on unread: see the
        README)."""
        if flow.response is not None or not self.state.secrets:
            return
        request = flow.request
        if request.trailers:
            # mitmproxy sends trailers after this hook, for a streamed body too.
            trailers = request.trailers.items(multi=True)  # type: ignore[no-untyped-call]
            verdict = secret_policy.check_trailers(self.state.secrets, trailers)
            if not verdict.allowed:
                if request.stream:  # the body has gone: the request ends without them
                    request.trailers = None
                    flow.metadata[REFUSED_TRAILERS_KEY] = verdict.reason
                    return
                refuse(flow, Decision(False, verdict.rule, verdict.reason))
                return
        if request.stream:
            return
        destination = flow.metadata.get(DESTINATION_KEY)
        raw = request.raw_content or b""
        coding = flow.metadata.get(SENT_CODING_KEY, request.headers.get("content-encoding", ""))
        try:
            bodies = secret_policy.body_forms(raw, coding)
        except BodyRefused as refused:
            status = 413 if refused.rule == secret_policy.DECODED_BODY_LIMIT else 403
            reason = self.scrubber.scrub_text(refused.reason)  # it quotes what it could not read
            refuse(flow, Decision(False, refused.rule, reason), status)
            return
        verdict = secret_policy.check_request(
            self.state.secrets,
            destination.host if destination else request.host,
            destination.port if destination else request.port,
            https=bool(destination and destination.https),
            url=request.path,
            headers=(),
            bodies=bodies,
        )
        if not verdict.allowed:
            refuse(flow, Decision(False, verdict.rule, verdict.reason))

    @fails_closed(_replace_error)
    def error(self, flow: http.HTTPFlow) -> None:
        """Scrub the error of a flow to a bound host: mitmproxy's parser errors quote what the
        host sent, and the message goes to the agent (a 502 page) and to the audit log."""
        destination = flow.metadata.get(DESTINATION_KEY)
        if flow.error is None or destination is None or destination.tunnel is None:
            return
        if destination.tunnel.intercept and self.scrubber.replacements:
            flow.error.msg = self.scrubber.scrub_text(flow.error.msg)

    @fails_closed(_drop_message)
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        """Scrub what the bound host sends on a connection that switched protocols (101).

        mitmproxy relays such a connection as raw bytes, past every HTTP hook; the host may
        quote the handshake it was sent (and so the real value) in them, as a WebSocket
        endpoint echoing its request does. Only an unextended WebSocket is let through the
        upgrade (`plain_upgrade`): its frames are read, and each message scrubbed as one
        stream, so a value cut between two reads or two fragments is still found.
        """
        message = flow.messages[-1]
        tunnel = self.state.tunnel_of(flow.server_conn, flow.client_conn)
        if message.from_client or tunnel is None or not tunnel.intercept:
            return
        if not self.scrubber.replacements:
            return
        stream = self.upgraded.setdefault(flow.id, WebSocketScrubber(self.scrubber))
        message.content = stream(message.content)

    @fails_closed(_log_only)
    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.upgraded.pop(flow.id, None)

    @fails_closed(_log_only)
    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self.upgraded.pop(flow.id, None)

    def _substitute(self, headers: http.Headers, secret: BoundSecret) -> None:
        """Every header value carrying the placeholder gets the real value, in one pass over
        the fields (looking the values up name by name scanned them all once per name: a head
        of 10 000 distinct names held the proxy's only thread for half a minute)."""
        placeholder = secret.placeholder.encode("utf-8", "surrogateescape")
        value = self.values[secret.name].encode("utf-8", "surrogateescape")
        headers.fields = tuple(
            (name, raw.replace(placeholder, value) if placeholder in raw else raw)
            for name, raw in headers.fields
        )


class Audit:
    """Writes one entry per decision: per HTTP request, per refused CONNECT, and for a relayed
    tunnel one when it opens and one when it closes.

    Runs last, so it also forgets a client's tunnels and pins when the client disconnects.
    """

    def __init__(self, state: EgressState) -> None:
        self.state = state

    @fails_closed(_log_only)
    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """A CONNECT that got no tunnel: refused by us, or the upstream could not be reached."""
        self.state.tunnels.pop(flow.server_conn.id, None)  # no tunnel to record at disconnect
        status = flow.response.status_code if flow.response else None
        decision = flow.metadata.get(DECISION_KEY)
        if decision is not None and decision.allowed and flow.response is not None:
            failure = flow.response.get_text(strict=False) or f"status {status}"
            decision = Decision(True, decision.rule, f"{decision.reason}; failed: {failure}")
        self._record(flow, decision, "connect", flow.request.host, flow.request.port, status)

    @fails_closed(_log_only)
    def http_connected(self, flow: http.HTTPFlow) -> None:
        """A relayed tunnel is recorded as it opens: a proxy killed later still leaves this."""
        tunnel = self.state.tunnels.get(flow.server_conn.id)
        if tunnel is None or tunnel.intercept:
            return  # intercepted tunnels are recorded request by request
        self.state.record_tunnel(tunnel, "open")

    @fails_closed(_refuse_request)
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Count a request's bytes as it streams (mitmproxy streams large bodies unbuffered)."""
        if flow.response is None and flow.request.stream is True:
            sent = [0]

            def count(data: bytes) -> bytes:
                sent[0] += len(data)
                return data

            flow.metadata[SENT_KEY] = sent
            flow.request.stream = count

    @fails_closed(_kill_response)
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Stream large responses through (nothing inspects them), counting their bytes."""
        if flow.response is None:
            return
        stream = flow.response.stream  # a function when SecretSubstitution scrubs a stream
        inner: Callable[[bytes], bytes] | None = None
        if callable(stream):
            inner = cast(Callable[[bytes], bytes], stream)
        elif not streams_response(flow.response):
            return  # small: one buffered write is quicker than a chunked relay
        received = [0]

        def count(data: bytes) -> bytes:
            received[0] += len(data)
            return inner(data) if inner is not None else data

        flow.metadata[RECEIVED_KEY] = received
        flow.response.stream = count

    @fails_closed(_kill_response)
    def response(self, flow: http.HTTPFlow) -> None:
        self._record_http(flow)
        self._forget_pin(flow)

    @fails_closed(_log_only)
    def error(self, flow: http.HTTPFlow) -> None:
        self._record_http(flow)
        self._forget_pin(flow)

    def _forget_pin(self, flow: http.HTTPFlow) -> None:
        """A plain-HTTP request's pin is for the connection it may open; once it is answered,
        the pin is spent (a refused request, or one sent on a reused server connection, never
        opens one to take it: kept until the client left, one per name a wildcard allows)."""
        self.state.pins.pop((flow.client_conn.id, flow.request.host, flow.request.port), None)

    @fails_closed(_log_only)
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        """An upgraded connection's bytes are relayed, not kept: mitmproxy appends every
        message to its flow for the connection's whole life, so one long WebSocket would
        hold all it ever carried in the bundle's memory."""
        del flow.messages[:-1]

    @fails_closed(_log_only)
    def client_disconnected(self, client: connection.Client) -> None:
        """A relayed tunnel ends with its client: record it, then forget the client."""
        for key in [k for k, t in self.state.tunnels.items() if t.client_id == client.id]:
            tunnel = self.state.tunnels.pop(key)
            if not tunnel.intercept or tunnel.metered:
                self.state.record_tunnel(tunnel, "close")
        for pin in [pin for pin in self.state.pins if pin[0] == client.id]:
            del self.state.pins[pin]

    @fails_closed(_log_only)
    def protocol_refused(self, refusal: ProtocolRefusal) -> None:
        """A request refused by the HTTP layer's bounds (egress_guards): a head too large or not
        HTTP/1 (no flow existed, the head was never read), or a body too large to wait behind
        its head's hook. Its destination is the tunnel it came in, else what it named."""
        tunnel = self.state.tunnel_of(refusal.server, refusal.client)
        host, port = (
            (tunnel.host, tunnel.port) if tunnel is not None else (refusal.host, refusal.port)
        )
        self.state.record(
            AuditEntry(
                time=timestamp(time.time()),
                method="",
                host=host,
                port=port,
                decision="deny",
                rule=refusal.rule,
                reason=refusal.reason,
                kind="intercepted" if tunnel is not None and tunnel.intercept else "http",
                status=refusal.status,
            )
        )

    def _record_http(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(RECORDED_KEY):
            return
        decision = flow.metadata.get(DECISION_KEY)
        destination = flow.metadata.get(DESTINATION_KEY)
        if destination is not None:
            host, port = destination.host, destination.port
        else:
            host, port = flow.request.host, flow.request.port
        # A plain request in a relayed tunnel (egress_relay) is judged, not intercepted.
        intercepted = bool(destination and destination.tunnel and destination.tunnel.intercept)
        kind: Kind = "intercepted" if intercepted else "http"
        status = flow.response.status_code if flow.response else None
        self._record(flow, decision, kind, host, port, status)

    def _record(
        self,
        flow: http.HTTPFlow,
        decision: Decision | None,
        kind: Kind,
        host: str,
        port: int,
        status: int | None,
    ) -> None:
        flow.metadata[RECORDED_KEY] = True
        if decision is None:
            decision = Decision(False, "internal", "no egress decision was recorded")
        reason = decision.reason
        if dropped := flow.metadata.get(REFUSED_TRAILERS_KEY):
            reason = f"{reason}; its trailers were not sent: {dropped}"
        if flow.error is not None and (decision.allowed or REFUSED_KEY not in flow.metadata):
            reason = f"{reason}; failed: {flow.error.msg}"
        response = flow.response
        end = (response.timestamp_end if response else None) or time.time()
        self.state.record(
            AuditEntry(
                time=timestamp(flow.request.timestamp_start),
                method=flow.request.method,
                host=host,
                port=port,
                decision="allow" if decision.allowed else "deny",
                rule=decision.rule,
                reason=reason,
                kind=kind,
                status=status,
                # A refused request sent nothing upstream; the 403 page is not traffic.
                bytes_sent=_sent(flow) if decision.allowed else 0,
                bytes_received=_received(flow) if decision.allowed else 0,
                duration_ms=_ms(end - flow.request.timestamp_start),
            )
        )


def _sent(flow: http.HTTPFlow) -> int:
    streamed = flow.metadata.get(SENT_KEY)
    if streamed is not None:
        return int(streamed[0])
    return len(flow.request.raw_content or b"")


def _received(flow: http.HTTPFlow) -> int:
    streamed = flow.metadata.get(RECEIVED_KEY)
    if streamed is not None:
        return int(streamed[0])
    return len(flow.response.raw_content or b"") if flow.response else 0


def _ms(seconds: float) -> float:
    return round(max(seconds, 0.0) * 1000.0, 3)


def make_state(
    config: BundleConfig, own_addresses: Sequence[str] = (), audit: bool = True
) -> EgressState:
    state = EgressState(
        policy=EgressPolicy.from_config(config, own_addresses),
        secrets=bind_secrets(config.secrets),
        audit=AuditLog(config.audit_log) if audit else None,
    )
    if config.egress_ask:
        store = ApprovalStore(Path(config.state_dir), config.slug)
        state.asker = EgressAsker(store, config.ask_timeout_seconds, state.record)
    return state


def make_addons(state: EgressState, resolver: Resolver = resolve) -> list[object]:
    """The addons in calling order: decide, then check secrets, then record."""
    return [Allowlist(state, resolver), SecretSubstitution.from_files(state), Audit(state)]
