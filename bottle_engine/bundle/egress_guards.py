"""Two bounds mitmproxy 11.0.2 does not have, installed on its HTTP/1 layers at proxy start.

* **Request head size.** mitmproxy buffers an HTTP/1 request head until its blank line, with no
  limit (``FIXME: protect against header size DoS`` in ``_http1.py``): a 500 MB head that never
  ends is held whole. `install` makes the agent-facing HTTP/1 layer answer 431 once more than
  `MAX_REQUEST_HEAD` bytes are waiting unparsed, and close the connection.
* **Refusals no hook sees are audited.** That 431, and mitmproxy's own 400 for a request head it
  cannot parse, come before any flow exists: no addon hook ran and no audit line was written.
  Both now raise `ProtocolRefusedHook`, which the audit addon records.
* **A request naming no destination is audited.** mitmproxy answers a plain-HTTP request that
  names no host (neither its target nor a Host field) with 400 before any hook: HTTP/2 with
  prior knowledge (h2c) on the proxy port, whose preface reads as such a request, was refused
  with no audit line. It now raises `ProtocolRefusedHook` too.
* **A refused client reads its answer.** mitmproxy closes the agent's connection right after
  an error page, often with the client's further bytes unread: the kernel then answers with a
  reset, and a client still sending (a large head or body) sees "connection reset" and drops
  the page. The agent-facing HTTP/1 layer now closes as HTTP servers should (RFC 9112, 9.6): it
  stops writing, reads and drops what still comes, and closes when the client does or after
  `LINGER_SECONDS`.
* **Response head size.** The same holds for the upstream's response head (``FIXME`` there
  too): an upstream the agent controls (an allowed host, or one a person approved) could grow
  the bundle without bound with one request. Past `MAX_RESPONSE_HEAD` bytes the upstream
  connection is closed and the agent gets a 502 naming the limit.
* **Error pages say what the addons let them say.** When an upstream's answer cannot be parsed,
  mitmproxy sends the agent a 502 quoting the offending bytes, straight from its parser, after
  the ``error`` hook: a bound host's malformed answer quoting the real value reached the agent.
  The same holds for a head that parses but fails mitmproxy's smuggling checks
  (``check_invalid``: a header name with a space, a 204's Content-Length), which quote the field.
  Both pages now carry ``flow.error.msg`` as the hooks left it (`SecretSubstitution` scrubs it).
* **What comes after an answer is done is dropped, not quoted.** An upstream's 101 makes
  mitmproxy's HTTP/1 client relay what follows before any hook has seen the 101; when the
  addons refuse the switch (a 502 to the agent), those bytes reached a stream that had
  finished, which raised with them in its message: mitmproxy logged the traceback, and a bound
  host's bytes, the real value in them, were in the proxy's log. They are now dropped and the
  upstream connection closed.
* **A body held behind a hook is bounded.** While a hook runs on a request's head (a name
  resolved; a person asked about its host, with `[egress] ask = true`, which may take minutes),
  mitmproxy goes on reading its body and queues every piece for when the hook is done, without
  limit: 200 MiB sent behind one held request took the proxy from 73 to 274 MiB, and 30
  connections sending 2-byte chunks while their hooks waited their turn took 166 MiB. Past
  `MAX_HELD_PIECES` pieces, or `MAX_HELD_BODY` bytes while a person is asked, the agent gets a
  413 and its connection is closed.
* **Body buffers hold bytes, not pieces.** mitmproxy buffers a body as a list of the pieces it
  was handed, and a chunked body hands it one per chunk: a 1 MB request body sent as 2-byte
  chunks held 27 MiB of the proxy's memory (a bytes object and a list slot per chunk), so a few
  tens of connections, each below the streaming bound, took the proxy past the bundle's
  memory limit. `CompactBuffer` keeps a body in one bytearray.
* **Bodies of refused requests.** A request refused on its headers (policy, names, secrets)
  still has its body read, and mitmproxy buffers it whole before answering. Once more than
  `MAX_REFUSED_BODY` bytes of such a body have arrived, the client gets the 403 at once and the
  rest is dropped unbuffered.

Bodies of allowed requests and of responses are bounded by streaming (`proxy_options`), not
here. These patches reach into mitmproxy's internals, so `install` refuses any other version.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from mitmproxy import connection
from mitmproxy.proxy import commands

MITMPROXY_VERSION = "11.0.2"
MAX_REQUEST_HEAD = 64 * 1024  # bytes: request line and headers
MAX_RESPONSE_HEAD = 256 * 1024  # bytes: status line and headers from an upstream
MAX_REFUSED_BODY = 64 * 1024  # bytes of a refused request's body read before answering
# Pieces of a request's body that may wait behind a hook on its head (a name resolved, a person
# asked): a body in tiny chunks otherwise queued an event per chunk. Uploads arrive in reads of
# up to 64 KiB.
MAX_HELD_PIECES = 1024
# Bytes of its body that may wait while a person is asked about its host (as much as the proxy
# buffers of one before streaming it); a name is resolved in moments, an answer may take minutes.
MAX_HELD_BODY = 1024 * 1024
ASKING_KEY = "bot-bottle.asking"  # flow.metadata: a person is asked about its destination
HELD_BODY_LIMIT = "held-body-limit"
REFUSED_KEY = "bot-bottle.refused"  # flow.metadata: the Decision that refused on headers
# How long a refused client may go on sending (its bytes dropped) before its connection is cut.
LINGER_SECONDS = 5.0
REQUEST_HEAD_LIMIT = "request-head-limit"
REQUEST_UNPARSEABLE = "request-unparseable"
REQUEST_NO_DESTINATION = "request-no-destination"

_installed = False


@dataclass(frozen=True)
class ProtocolRefusal:
    """A request the agent-facing HTTP/1 layer refused before any flow (or hook) existed."""

    client: connection.Client
    server: connection.Server  # a tunnel's server when the request came inside one
    rule: str
    reason: str
    status: int
    # What the request named, when no tunnel says where it went (plain HTTP with a flow).
    host: str = ""
    port: int = 0


@dataclass
class ProtocolRefusedHook(commands.StartHook):  # type: ignore[no-untyped-call]
    """Calls the addons' ``protocol_refused(refusal)``; the connection is closing, so nothing
    waits for them (not blocking)."""

    refusal: ProtocolRefusal
    blocking = False


def head_too_large_reason(size: int) -> str:
    return (
        f"its request line and headers exceed {MAX_REQUEST_HEAD} bytes ({size} bytes "
        "buffered without an end)"
    )


def head_too_large_message(size: int) -> str:
    return f"bot-bottle refused this request (rule: {REQUEST_HEAD_LIMIT}): " + (
        head_too_large_reason(size)
    )


UNPARSEABLE_REASON = "the request line or headers could not be read as HTTP/1"


def install() -> None:
    """Patch mitmproxy's HTTP/1 server and client layers and HTTP stream (once per process)."""
    global _installed
    if _installed:
        return
    from mitmproxy.version import VERSION

    if VERSION != MITMPROXY_VERSION:
        raise RuntimeError(
            f"the egress guards are written for mitmproxy {MITMPROXY_VERSION}, found {VERSION}; "
            "update bottle_engine/bundle/egress_guards.py with the pin"
        )
    from mitmproxy.proxy.layers.http import HttpStream, _http1

    _guard_request_head(_http1.Http1Server)
    _linger_and_audit(_http1.Http1Server)
    _guard_response_head(_http1.Http1Client)
    _guard_error_message(HttpStream)
    _audit_no_destination(HttpStream)
    _drop_after_done(HttpStream)
    _guard_refused_body(HttpStream)
    _compact_body_buffers(HttpStream)
    _bound_held_body(HttpStream)
    _installed = True


CommandGenerator = Generator[Any, Any, Any]


def _guard_request_head(server_class: Any) -> None:
    from mitmproxy.proxy.layers.http import _http1

    original: Callable[[Any, Any], CommandGenerator] = server_class._handle_event

    def _handle_event(self: Any, event: Any) -> CommandGenerator:
        result = yield from original(self, event)
        # Unparsed bytes only pile up while a head is awaited (or pipelined behind a request);
        # a body is consumed as it arrives and a tunnel bypasses the buffer.
        waiting = self.state in (self.read_headers, self.wait)
        if waiting and len(self.buf) > MAX_REQUEST_HEAD:
            size = len(self.buf)
            self.buf.maybe_extract_at_most(size)
            yield commands.SendData(
                self.conn, _http1.make_error_response(431, head_too_large_message(size))
            )
            yield commands.CloseConnection(self.conn)
            reason = head_too_large_reason(size)
            yield _refused(self, REQUEST_HEAD_LIMIT, reason, 431)
            self.state = self.done
        return result

    server_class._handle_event = _handle_event


def _each_rewritten(
    original: CommandGenerator, rewrite: Callable[[commands.Command], commands.Command]
) -> CommandGenerator:
    """`original`'s commands one by one, each as `rewrite` makes it, with the answers to them
    sent back (a hook's reply); its return value."""
    reply = None
    while True:
        try:
            command = original.send(reply)
        except StopIteration as done:
            return done.value
        reply = yield rewrite(command)


def _refused(layer: Any, rule: str, reason: str, status: int) -> ProtocolRefusedHook:
    return ProtocolRefusedHook(
        ProtocolRefusal(layer.conn, layer.context.server, rule, reason, status)
    )


def _linger_and_audit(server_class: Any) -> None:
    from mitmproxy.proxy import events

    original: Callable[[Any, Any], CommandGenerator] = server_class._handle_event

    def _handle_event(self: Any, event: Any) -> CommandGenerator:
        if getattr(self, "_bot_bottle_lingering", False):
            # Written out and refused: drop what the client still sends (never buffered); close
            # when it closes, or when it has had LINGER_SECONDS to read its answer.
            if isinstance(event, events.Wakeup) or (
                isinstance(event, events.ConnectionClosed)
                and self.conn.state is not connection.ConnectionState.CLOSED
            ):
                yield commands.CloseConnection(self.conn)
            return None
        awaiting_head = (
            isinstance(event, events.DataReceived)
            and self.state == self.read_headers
            and self.request is None
        )
        reported = False
        lingering = False

        def rewrite(command: commands.Command) -> commands.Command:
            nonlocal reported, lingering
            reported = reported or isinstance(command, ProtocolRefusedHook)
            if (
                type(command) is commands.CloseConnection
                and command.connection is self.conn
                and self.conn.state & connection.ConnectionState.CAN_READ
            ):
                lingering = True
                return commands.CloseTcpConnection(self.conn, half_close=True)
            return command

        result = yield from _each_rewritten(original(self, event), rewrite)
        # mitmproxy answered a head it could not parse with 400 (and a log line only).
        if awaiting_head and self.state == self.done and self.request is None and not reported:
            yield _refused(self, REQUEST_UNPARSEABLE, UNPARSEABLE_REASON, 400)
        if lingering:
            self._bot_bottle_lingering = True
            yield commands.RequestWakeup(LINGER_SECONDS)
        return result

    server_class._handle_event = _handle_event


NO_DESTINATION_REASON = (
    "the request names no host (no Host field, a path for its target): HTTP/2 with prior "
    "knowledge (h2c) begins so; the proxy speaks HTTP/1 to the agent"
)


def _audit_no_destination(stream_class: Any) -> None:
    """A request head answered with an error before any hook saw it (mitmproxy's 400 for one
    naming no host) is reported as every refusal no hook sees is."""
    from mitmproxy.proxy.layers.http import SendHttp
    from mitmproxy.proxy.layers.http._events import ResponseProtocolError

    original: Callable[[Any, Any], CommandGenerator] = stream_class.state_wait_for_request_headers

    def state_wait_for_request_headers(self: Any, event: Any) -> CommandGenerator:
        hooked = False
        refused: list[int] = []  # the status of an error answer sent before any hook

        def rewrite(command: commands.Command) -> commands.Command:
            nonlocal hooked
            hooked = hooked or isinstance(command, commands.StartHook)
            if (
                not hooked
                and isinstance(command, SendHttp)
                and isinstance(command.event, ResponseProtocolError)
                and command.connection is self.context.client
            ):
                refused.append(command.event.code)
            return command

        result = yield from _each_rewritten(original(self, event), rewrite)
        if refused:
            client, server = self.context.client, self.context.server
            reason = NO_DESTINATION_REASON
            yield ProtocolRefusedHook(
                ProtocolRefusal(client, server, REQUEST_NO_DESTINATION, reason, refused[0])
            )
        return result

    stream_class.state_wait_for_request_headers = state_wait_for_request_headers


def _drop_after_done(stream_class: Any) -> None:
    from mitmproxy.proxy.layers.http._events import (
        ResponseData,
        ResponseEndOfMessage,
        ResponseTrailers,
    )

    original: Callable[[Any, Any], CommandGenerator] = stream_class._handle_event
    late = (ResponseData, ResponseTrailers, ResponseEndOfMessage)

    def _handle_event(self: Any, event: Any) -> CommandGenerator:
        # mitmproxy's own handling of these here is an AssertionError quoting them.
        if isinstance(event, late) and self.server_state == self.state_done:
            if not getattr(self, "_bot_bottle_dropping", False):
                self._bot_bottle_dropping = True
                yield commands.CloseConnection(self.context.server)
            return None
        return (yield from original(self, event))

    stream_class._handle_event = _handle_event


def response_head_too_large_message(size: int) -> str:
    return (
        f"bot-bottle refused the upstream's response (rule: response-head-limit): its status "
        f"line and headers exceed {MAX_RESPONSE_HEAD} bytes ({size} bytes buffered without an end)"
    )


def _guard_response_head(client_class: Any) -> None:
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import ResponseProtocolError

    original: Callable[[Any, Any], CommandGenerator] = client_class._handle_event

    def _handle_event(self: Any, event: Any) -> CommandGenerator:
        result = yield from original(self, event)
        # As for a head mitmproxy cannot parse: close the upstream, fail the stream (a 502).
        if self.state == self.read_headers and len(self.buf) > MAX_RESPONSE_HEAD:
            size = len(self.buf)
            self.buf.maybe_extract_at_most(size)
            yield commands.CloseConnection(self.conn)
            if self.stream_id is not None:
                message = response_head_too_large_message(size)
                yield ReceiveHttp(ResponseProtocolError(self.stream_id, message))
            self.state = self.done
        return result

    client_class._handle_event = _handle_event


def _guard_error_message(stream_class: Any) -> None:
    from mitmproxy.proxy.layers.http import SendHttp
    from mitmproxy.proxy.layers.http._events import ResponseProtocolError

    def guarded(
        original: Callable[[Any, Any], CommandGenerator],
    ) -> Callable[[Any, Any], CommandGenerator]:
        def method(self: Any, argument: Any) -> CommandGenerator:
            # An error page for the agent gets the error's message as the error hook left it.
            def rewrite(command: commands.Command) -> commands.Command:
                if (
                    isinstance(command, SendHttp)
                    and isinstance(command.event, ResponseProtocolError)
                    and command.connection is self.context.client
                    and self.flow.error is not None
                ):
                    command.event.message = self.flow.error.msg
                return command

            return (yield from _each_rewritten(original(self, argument), rewrite))

        return method

    # An upstream's answer mitmproxy could not parse, and one it parsed but refused.
    stream_class.handle_protocol_error = guarded(stream_class.handle_protocol_error)
    stream_class.check_invalid = guarded(stream_class.check_invalid)


def _guard_refused_body(stream_class: Any) -> None:
    from mitmproxy import flow as mitm_flow
    from mitmproxy.proxy.layers.http import SendHttp
    from mitmproxy.proxy.layers.http._events import ResponseProtocolError
    from mitmproxy.proxy.layers.http._hooks import HttpErrorHook

    original: Callable[[Any, bool], CommandGenerator] = stream_class.check_body_size

    def check_body_size(self: Any, request: bool) -> CommandGenerator:
        refused = self.flow.metadata.get(REFUSED_KEY) if request else None
        if refused is None:
            return (yield from original(self, request))
        # Never stream a refused request anywhere; read at most MAX_REFUSED_BODY of it.
        self.flow.request.stream = False
        if len(self.request_body_buf) <= MAX_REFUSED_BODY:
            return False
        self.request_body_buf.clear()
        message = (
            f"bot-bottle refused this request (rule: {refused.rule}): {refused.reason}; "
            f"its body was not read past {MAX_REFUSED_BODY} bytes"
        )
        self.flow.error = mitm_flow.Error(message)
        yield HttpErrorHook(self.flow)
        yield SendHttp(ResponseProtocolError(self.stream_id, message, 403), self.context.client)
        self.client_state = self.state_errored
        self.flow.live = False
        return True

    stream_class.check_body_size = check_body_size


class CompactBuffer:
    """A body as mitmproxy's HTTP stream buffers it (the interface of its `ReceiveBuffer`), in
    one bytearray: memory in step with the body's bytes, however many pieces carried them."""

    def __init__(self) -> None:
        self._data = bytearray()

    def __iadd__(self, other: bytes) -> CompactBuffer:
        self._data += other
        return self

    def __len__(self) -> int:
        return len(self._data)

    def __bytes__(self) -> bytes:
        return bytes(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def clear(self) -> None:
        self._data = bytearray()  # a new one: clear() would keep the old one's allocation


def _compact_body_buffers(stream_class: Any) -> None:
    original: Callable[..., None] = stream_class.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.request_body_buf = CompactBuffer()
        self.response_body_buf = CompactBuffer()

    stream_class.__init__ = __init__


def held_body_message() -> str:
    return (
        f"bot-bottle refused this request (rule: {HELD_BODY_LIMIT}): too much of its body came "
        f"while the proxy was still deciding on its head (more than {MAX_HELD_PIECES} chunks, or "
        f"{MAX_HELD_BODY} bytes while a person is asked about its host); send the body once "
        "the host is approved, or with 'Expect: 100-continue'"
    )


def _bound_held_body(stream_class: Any) -> None:
    from mitmproxy.proxy.layers.http import _http1
    from mitmproxy.proxy.layers.http._events import RequestData

    original: Callable[[Any, Any], CommandGenerator] = stream_class.handle_event

    def handle_event(self: Any, event: Any) -> CommandGenerator:
        paused = self._paused
        if paused is None or not isinstance(event, RequestData):
            return (yield from original(self, event))
        # Counted per pause: what waits is what came since this hook began.
        since, pieces, size = getattr(self, "_bot_bottle_held", (None, 0, 0))
        if since is not paused:
            pieces, size = 0, 0
        pieces, size = pieces + 1, size + len(event.data)
        self._bot_bottle_held = (paused, pieces, size)
        asking = self.flow.metadata.get(ASKING_KEY, False)
        if pieces <= MAX_HELD_PIECES and not (asking and size > MAX_HELD_BODY):
            return (yield from original(self, event))
        if not getattr(self, "_bot_bottle_cut", False):
            self._bot_bottle_cut = True
            client = self.context.client
            yield commands.SendData(client, _http1.make_error_response(413, held_body_message()))
            yield commands.CloseConnection(client)
            reason = (
                f"{size} bytes of its body in {pieces} pieces came before its head was decided "
                f"(at most {MAX_HELD_PIECES} pieces, or {MAX_HELD_BODY} bytes while a person is "
                "asked)"
            )
            named = self.flow.request
            refusal = ProtocolRefusal(
                client, self.context.server, HELD_BODY_LIMIT, reason, 413, named.host, named.port
            )
            yield ProtocolRefusedHook(refusal)
        return None  # dropped, never queued

    stream_class.handle_event = handle_event
