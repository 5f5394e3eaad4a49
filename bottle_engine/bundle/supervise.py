"""The supervise MCP server: lets the agent ask a person before doing something.

``python -m bottle_engine.bundle.supervise`` serves streamable HTTP at
``http://<bundle_ip>:9100/mcp`` (``MCP_SUPERVISE_URL``). Its one tool, ``request_approval``,
writes a request into the bottle's state dir and blocks until a person answers on the host
(`bottle-engine approve|deny ID`) or the bottle's timeout passes, which counts as denied.
Requests live in files, not in this process, so a restarted bundle picks up where it was.

A connection from any peer but the agent is closed before a byte of it is read (`door`).
The agent is hostile: its texts are cut to `MAX_ACTION_CHARS` / `MAX_REASON_CHARS` with a marker
saying how much was cut, a request body over `MAX_BODY_BYTES` is refused before the MCP SDK
parses it, at most `MAX_CONNECTIONS` connections and `MAX_SESSIONS` MCP sessions are open at
once, at most `MAX_WAITING_CALLS` tool calls wait for a person at once (one whose client went
away included), and a request beyond the bottle's pending cap or rate (`ApprovalLimits`) is
answered at once with ``status: "refused"`` and the seconds to wait, and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from bottle_engine.approvals import ApprovalRefused, ApprovalRequest, ApprovalStore
from bottle_engine.bundle.clients import client_allowed, refusal
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.service_cli import SUPERVISE

MCP_PATH = "/mcp"
POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
SHUTDOWN_GRACE_SECONDS = 2
BUSY_RETRY_SECONDS = 30.0
MAX_ACTION_CHARS = 2000  # characters of the action kept; what a person reads in one screen
MAX_REASON_CHARS = 2000
# Both texts at their caps, every character a JSON \uXXXX escape pair, fit with room to spare;
# anything larger is not an approval request.
MAX_BODY_BYTES = 256 * 1024
# Open MCP sessions at once. Each costs the server about 40 KiB until the client ends it or it
# is idle for 30 minutes; the SDK's own cap, 10,000, let an agent that opened sessions without
# closing them hold 400 MiB of a bundle that has 768 MiB. One client needs one or a few.
MAX_SESSIONS = 64
# Tool calls waiting for a person at once. A call goes on waiting after its client closed the
# connection, until its request times out (600 s by default), so closing connections does not
# bound them: an agent that opened calls and hung up at once left 2,000 in seconds (57 MiB and
# 0.38 of a CPU polling the store). One client waits on a few; a call beyond is refused at once.
MAX_WAITING_CALLS = 32
# Connections open at once. uvicorn times out only an idle kept-alive connection: one whose
# request is sent slowly, or never finished, holds its head and the body read so far (up to
# `MAX_BODY_BYTES`) for as long as the client likes, before any cap above sees it; 500 held
# 108 MiB. At the cap, at most about 35 MiB. A client needs a few (one per waiting call).
MAX_CONNECTIONS = 128

INSTRUCTIONS = (
    "Call request_approval before any action your instructions say needs a person's approval. "
    "It blocks until a person answers; only proceed when the result says approved."
)


class ApprovalAnswer(TypedDict):
    """What the tool returns to the agent."""

    approved: bool
    status: str  # approved | denied | timed_out | refused
    request_id: str  # "" when refused: nothing was recorded
    note: str | None
    message: str
    retry_after_seconds: float  # when refused: how long to wait before asking again; else 0


def busy() -> ApprovalAnswer:
    """The answer to a call beyond `MAX_WAITING_CALLS`: nothing was recorded."""
    return refusal_for(
        ApprovalRefused(
            f"{MAX_WAITING_CALLS} calls are already waiting for a person's answer (at most "
            f"{MAX_WAITING_CALLS}; a call whose client went away waits until its request times "
            "out); this one was not recorded",
            retry_after_seconds=BUSY_RETRY_SECONDS,
        )
    )


def answer_for(request: ApprovalRequest) -> ApprovalAnswer:
    if request.approved:
        message = f"approved by a person (request {request.id}); you may proceed"
    elif request.status == "timed_out":
        message = (
            f"denied: nobody answered request {request.id} before it timed out; do not proceed"
        )
    else:
        message = f"denied by a person (request {request.id}); do not proceed"
    if request.note:
        message += f". Note from the person: {request.note}"
    return ApprovalAnswer(
        approved=request.approved,
        status=request.status,
        request_id=request.id,
        note=request.note,
        message=message,
        retry_after_seconds=0.0,
    )


def refusal_for(refused: ApprovalRefused) -> ApprovalAnswer:
    wait = max(1, round(refused.retry_after_seconds))
    return ApprovalAnswer(
        approved=False,
        status="refused",
        request_id="",
        note=None,
        message=f"refused: {refused.message}. Do not proceed; wait at least {wait} s before "
        "asking again, and ask only for what needs a person.",
        retry_after_seconds=float(wait),
    )


async def wait_for_answer(
    store: ApprovalStore, request: ApprovalRequest, ctx: Context | None = None
) -> ApprovalRequest:
    """Poll the request's file until it is answered or expires; marks the answer delivered."""
    last_keepalive = time.monotonic()
    while request.pending and not request.expired():
        await anyio.sleep(POLL_SECONDS)
        request = store.get(request.id) or store.delivered(request.id) or request
        if ctx is not None and time.monotonic() - last_keepalive >= KEEPALIVE_SECONDS:
            # Progress notifications keep clients with idle timeouts from giving up on us.
            last_keepalive = time.monotonic()
            await ctx.report_progress(0, None, f"waiting for a person to answer {request.id}")
    if request.pending:
        request = store.expire(request.id)
    return store.mark_delivered(request.id)


def build_server(config: BundleConfig) -> MCPServer:
    store = ApprovalStore(Path(config.state_dir), config.slug)
    server = MCPServer("bot-bottle-supervise", instructions=INSTRUCTIONS)
    waiting = anyio.CapacityLimiter(MAX_WAITING_CALLS)  # each call runs in a task of its own

    @server.tool()
    async def request_approval(action: str, reason: str, ctx: Context) -> ApprovalAnswer:
        """Ask a person to approve an action, and wait for the answer.

        `action` says exactly what you want to do (a command, a URL, a change); `reason` says
        why. Returns approved=true only if a person approved; a denial or no answer before the
        timeout returns approved=false.
        """
        try:
            waiting.acquire_nowait()
        except anyio.WouldBlock:
            return busy()
        try:
            return await ask(store, config, action, reason, ctx)
        finally:
            waiting.release()

    return server


async def ask(
    store: ApprovalStore, config: BundleConfig, action: str, reason: str, ctx: Context
) -> ApprovalAnswer:
    """Open the request (or find the same question asked before) and wait for its answer."""
    try:
        request = store.open_request(
            bounded(action, MAX_ACTION_CHARS),
            bounded(reason, MAX_REASON_CHARS),
            config.supervise_timeout_seconds,
        )
    except ApprovalRefused as refused:
        return refusal_for(refused)
    return answer_for(await wait_for_answer(store, request, ctx))


def bounded(text: str, limit: int) -> str:
    """The agent's text, cut to a size a person can read (and a disk can hold), saying so."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} …[{len(text) - limit} more characters cut by bot-bottle]"


class BodyLimit:
    """ASGI middleware: refuse an HTTP request whose body is over `max_bytes` with 413, before
    the app (the MCP SDK, which would read and parse all of it) sees a byte of it."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        await _plain_response(
            send,
            413,
            f"request body over {self.max_bytes} bytes: an approval request is an action "
            "and a reason, not a document",
        )


def door(allowed_client: str | None) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing a connection before a byte of it is read when its
    peer is not `allowed_client` (when given: the agent), or when `MAX_CONNECTIONS` of the
    agent's are open already (a refused one never counts, so no other peer takes the agent's)."""
    admitted: set[H11Protocol] = set()
    refusing = False  # one log line per burst at the cap, not one per connection

    class Door(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            nonlocal refusing
            super().connection_made(transport)
            peer = str(self.client[0]) if self.client else None
            if allowed_client is not None and not client_allowed(peer, allowed_client):
                sys.stderr.write(refusal("supervise", peer) + "\n")
                transport.close()
            elif len(admitted) >= MAX_CONNECTIONS:
                if not refusing:
                    sys.stderr.write(
                        f"supervise: {MAX_CONNECTIONS} connections from the agent are open "
                        "already (MAX_CONNECTIONS); closing new ones until some end\n"
                    )
                refusing = True
                transport.close()
            else:
                refusing = False
                admitted.add(self)

        def connection_lost(self, exc: Exception | None) -> None:
            admitted.discard(self)
            super().connection_lost(exc)

    return Door


def transport_security(config: BundleConfig, port: int) -> TransportSecuritySettings:
    """Accept only Host headers naming the bundle (DNS-rebinding protection)."""
    hosts = [config.bundle_ip, "127.0.0.1", "localhost"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{host}:{port}" for host in hosts] + hosts,
        allowed_origins=[f"http://{host}:{port}" for host in hosts],
    )


async def _plain_response(send: Send, status: int, message: str) -> None:
    """A one-line text answer that closes the connection (the request is not read further)."""
    body = (message + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str] | None = None) -> int:
    parser = SUPERVISE.parser(
        description="Serve the request_approval MCP tool over streamable HTTP at "
        f"http://LISTEN:PORT{MCP_PATH}.",
    )
    args = SUPERVISE.parse_and_wait(parser, argv)
    try:
        config = BundleConfig.load(args.config)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"supervise: error: cannot read the bundle config {args.config}: {exc}\n")
        return 1
    if args.wait_for_config and not config.supervise:
        return 0  # not this bottle's: never listen
    app: ASGIApp = build_server(config).streamable_http_app(
        streamable_http_path=MCP_PATH,
        max_sessions=MAX_SESSIONS,
        transport_security=transport_security(config, args.port),
        host=args.listen,
    )
    # Waiting tool calls hold their streams open; on SIGTERM they are cut after a moment
    # instead of holding up a bundle stop (the requests themselves are kept in files).
    server = uvicorn.Server(
        uvicorn.Config(
            BodyLimit(app, MAX_BODY_BYTES),
            host=args.listen,
            port=args.port,
            log_level="info",
            http=door(args.allowed_client),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
    )
    server.run()  # handles SIGINT/SIGTERM itself
    return 0


if __name__ == "__main__":
    sys.exit(main())
