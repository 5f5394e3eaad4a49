"""mitmproxy addons that police the bottle's egress: one small class per concern.

* `Allowlist`: decides every CONNECT and plain-HTTP request with `egress_policy.decide`,
  resolves names once and pins the checked address the proxy then connects to (DNS rebinding),
  and passes tunnels to hosts without secrets through as raw TCP (no TLS interception).
* `SecretSubstitution`: in intercepted tunnels, swaps placeholders for real values in request
  headers, and refuses placeholders anywhere else (`secret_policy`).
* `Audit`: one JSON line per decision in the bottle's audit log.

They share an `EgressState`; `make_addons` builds them in the order mitmproxy must call them.
This module imports mitmproxy and runs in the bundle's proxy venv only.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import connection, http
from mitmproxy.proxy import events, layer, layers, server_hooks
from mitmproxy.proxy.context import Context

from bottle_engine.bundle import secret_policy
from bottle_engine.bundle.audit import AuditEntry, AuditLog, Kind, timestamp
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.egress_policy import Decision, EgressPolicy, decide
from bottle_engine.bundle.secret_policy import BoundSecret, bind_secrets, intercepts

Resolver = Callable[[str, int], Awaitable[list[str]]]
DECISION_KEY = "bot-bottle.decision"  # flow.metadata: the Decision that let the flow through
RECEIVED_KEY = "bot-bottle.received"  # flow.metadata: bytes of a streamed response so far
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
    """A CONNECT tunnel the allowlist let through, per client connection."""

    host: str
    port: int
    address: str  # the checked address the tunnel's server connection goes to
    decision: Decision
    intercept: bool
    started: float = field(default_factory=time.time)
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass
class EgressState:
    """What the addons share: the policy, the secrets, the open tunnels and pinned addresses."""

    policy: EgressPolicy
    secrets: tuple[BoundSecret, ...]
    audit: AuditLog | None
    tunnels: dict[str, Tunnel] = field(default_factory=dict)  # by client connection id
    # (client id, host, port) -> (checked address, expiry); read once by server_connect
    pins: dict[tuple[str, str, int], tuple[str, float]] = field(default_factory=dict)

    def record(self, entry: AuditEntry) -> None:
        if self.audit is not None:
            self.audit.write(entry)


def denial_response(decision: Decision) -> http.Response:
    """The 403 a refused request gets: which rule refused it and how to allow it."""
    lines = [f"bot-bottle refused this request (rule: {decision.rule})", decision.reason]
    if decision.fix:
        lines.append(f"To allow it: {decision.fix}")
    return http.Response.make(
        403,
        ("\n".join(lines) + "\n").encode(),
        {"Content-Type": "text/plain; charset=utf-8", "X-Bot-Bottle-Rule": decision.rule},
    )


class Allowlist:
    """Deny by default; resolve once, check, and connect to the checked address."""

    def __init__(self, state: EgressState, resolver: Resolver = resolve) -> None:
        self.state = state
        self.resolver = resolver

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        host, port = flow.request.host, flow.request.port
        decision = await self._decide(flow.client_conn.id, host, port, "CONNECT")
        flow.metadata[DECISION_KEY] = decision
        if not decision.allowed or decision.address is None:
            flow.response = denial_response(decision)
            return
        self.state.tunnels[flow.client_conn.id] = Tunnel(
            host=host,
            port=port,
            address=decision.address,
            decision=decision,
            intercept=intercepts(self.state.secrets, host, port),
        )

    async def request(self, flow: http.HTTPFlow) -> None:
        tunnel = self.state.tunnels.get(flow.client_conn.id)
        if tunnel is not None:
            # Inside an intercepted tunnel: the destination is the tunnel's checked address,
            # whatever the Host header says, and was decided at CONNECT.
            flow.metadata[DECISION_KEY] = tunnel.decision
            return
        request = flow.request
        decision = await self._decide(
            flow.client_conn.id, request.host, request.port, request.method
        )
        flow.metadata[DECISION_KEY] = decision
        if not decision.allowed:
            flow.response = denial_response(decision)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None or server.error:
            return
        host, port = str(server.address[0]), int(server.address[1])
        tunnel = self.state.tunnels.get(data.client.id)
        if tunnel is not None and (host, port) == (tunnel.address, tunnel.port):
            return  # a reconnect inside an intercepted tunnel, to its checked address
        pinned = self._take_pin(data.client.id, host, port)
        if pinned is None:
            decision = await self._decide(data.client.id, host, port, "CONNECT")
            pinned = self._take_pin(data.client.id, host, port)
            if not decision.allowed or pinned is None:
                server.error = f"refused by the egress policy ({decision.rule}): {decision.reason}"
                return
        server.address = (pinned, port)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        tunnel = self.state.tunnels.get(nextlayer.context.client.id)
        if tunnel is None or tunnel.intercept:
            return
        if any(isinstance(existing, layers.TCPLayer) for existing in nextlayer.context.layers):
            return
        nextlayer.layer = MeteredTunnel(nextlayer.context, tunnel)

    async def _decide(self, client_id: str, host: str, port: int, method: str) -> Decision:
        decision = decide(self.state.policy, host, port, method)
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


class SecretSubstitution:
    """Real secret values go only into request headers to the secret's hosts, over TLS."""

    def __init__(self, state: EgressState, values: dict[str, str]) -> None:
        self.state = state
        self.values = values  # secret name -> real value

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

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or not self.state.secrets:
            return
        tunnel = self.state.tunnels.get(flow.client_conn.id)
        request = flow.request
        host, port = (tunnel.host, tunnel.port) if tunnel else (request.host, request.port)
        bodies = [request.raw_content or b""]
        decoded = request.get_content(strict=False)
        if decoded and decoded != bodies[0]:
            bodies.append(decoded)
        verdict = secret_policy.check_request(
            self.state.secrets,
            host,
            port,
            https=tunnel is not None and flow.client_conn.tls_established,
            url=request.path,
            headers=request.headers.items(multi=True),  # type: ignore[no-untyped-call]
            bodies=bodies,
        )
        if not verdict.allowed:
            refusal = Decision(False, verdict.rule, verdict.reason)
            flow.metadata[DECISION_KEY] = refusal
            flow.response = denial_response(refusal)
            return
        for secret in verdict.substitute:
            self._substitute(request.headers, secret)

    def _substitute(self, headers: http.Headers, secret: BoundSecret) -> None:
        value = self.values[secret.name]
        for name in list(dict.fromkeys(headers.keys())):
            current = headers.get_all(name)
            if any(secret.placeholder in v for v in current):
                headers.set_all(name, [v.replace(secret.placeholder, value) for v in current])


class Audit:
    """Writes one entry per decision: per HTTP request, per relayed tunnel, per refused CONNECT.

    Runs last, so it also forgets a client's tunnel and pins when the client disconnects.
    """

    def __init__(self, state: EgressState) -> None:
        self.state = state

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """A CONNECT that got no tunnel: refused by us, or the upstream could not be reached."""
        self.state.tunnels.pop(flow.client_conn.id, None)  # no tunnel to record at disconnect
        status = flow.response.status_code if flow.response else None
        decision = flow.metadata.get(DECISION_KEY)
        if decision is not None and decision.allowed and flow.response is not None:
            failure = flow.response.get_text(strict=False) or f"status {status}"
            decision = Decision(True, decision.rule, f"{decision.reason}; failed: {failure}")
        self._record(flow, decision, "connect", flow.request.host, flow.request.port, status)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Stream large responses through (nothing inspects them), counting their bytes."""
        if flow.response is None:
            return
        length = flow.response.headers.get("content-length", "")
        if length.isdigit() and int(length) <= _STREAM_ABOVE:
            return  # small: one buffered write is quicker than a chunked relay
        received = [0]

        def count(data: bytes) -> bytes:
            received[0] += len(data)
            return data

        flow.metadata[RECEIVED_KEY] = received
        flow.response.stream = count

    def response(self, flow: http.HTTPFlow) -> None:
        self._record_http(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            self._record_http(flow)

    def client_disconnected(self, client: connection.Client) -> None:
        """A relayed tunnel ends with its client: record it, then forget the client."""
        tunnel = self.state.tunnels.pop(client.id, None)
        for key in [key for key in self.state.pins if key[0] == client.id]:
            del self.state.pins[key]
        if tunnel is None or tunnel.intercept:
            return  # intercepted tunnels were recorded request by request
        self.state.record(
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
                bytes_sent=tunnel.bytes_sent,
                bytes_received=tunnel.bytes_received,
                duration_ms=_ms(time.time() - tunnel.started),
            )
        )

    def _record_http(self, flow: http.HTTPFlow) -> None:
        decision = flow.metadata.get(DECISION_KEY)
        tunnel = self.state.tunnels.get(flow.client_conn.id)
        host, port = (
            (tunnel.host, tunnel.port) if tunnel else (flow.request.host, flow.request.port)
        )
        kind: Kind = "intercepted" if tunnel else "http"
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
        if decision is None:
            decision = Decision(False, "internal", "no egress decision was recorded")
        reason = decision.reason
        if decision.allowed and flow.error is not None:
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
                bytes_sent=len(flow.request.raw_content or b"") if decision.allowed else 0,
                bytes_received=_received(flow) if decision.allowed else 0,
                duration_ms=_ms(end - flow.request.timestamp_start),
            )
        )


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
    return EgressState(
        policy=EgressPolicy.from_config(config, own_addresses),
        secrets=bind_secrets(config.secrets),
        audit=AuditLog(config.audit_log) if audit else None,
    )


def make_addons(state: EgressState, resolver: Resolver = resolve) -> list[object]:
    """The addons in calling order: decide, then check secrets, then record."""
    return [Allowlist(state, resolver), SecretSubstitution.from_files(state), Audit(state)]
