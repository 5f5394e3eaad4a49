"""A real value goes upstream only on a connection no earlier bytes of the agent's can frame.

mitmproxy sends the requests of one client connection on one kept-alive upstream connection,
one after another. Where the host leaves a request's body unread (a handler that expects none
answers without reading it: "CL.0"), it reads that body as the next request on the connection:
a head the agent wrote, for another host on the same front, that takes in the request which
follows as its body or header fields. When that request carries a real value, the other host
gets it (tests/unit/test_egress_proxy_live.py). The proxy cannot know which bytes a host reads;
it knows which requests sent any beyond their head.

So every upstream connection given a request that may leave bytes behind its head (a body,
a Content-Length or Transfer-Encoding, an Upgrade offer after which some fronts relay raw
bytes) is remembered, and a request with a real value in it (`CARRIES_VALUE_KEY`, set by
`SecretSubstitution`) never goes on one: mitmproxy's HTTP layer closes it and opens another,
to the same checked address (`EgressState.tunnel_of`), the agent's connection left open. The
cost, a new connection and TLS handshake, falls on a request with a value that follows one
with a body; nothing else changes. Upstreams speak HTTP/1 only (`proxy_options`: no HTTP/2),
and mitmproxy refuses heads whose framing is ambiguous (both Content-Length and
Transfer-Encoding, several of either, or an invalid one) before any hook.

mitmproxy's HTTP layer keeps every upstream connection it opened for a client connection until
that one ends, closed ones with their TLS state (57 kB), and looks through all of them for each
request. The agent gets them closed at will (a request line claiming HTTP/2.0 has its upstream
connection used for it alone; so has a request with a value after a body, above): one tunnel
carrying 6000 such requests grew the bundle by 6 MiB and slowed each of its requests by half.
So an upstream connection is dropped from the layer once it is closed both ways and mitmproxy
has handled its end (`events.ConnectionClosed`: no event names it after that, and nothing is
sent on a closed one), unless it failed: its error answers the next request for its address.

This patches mitmproxy's HTTP layer and stream (`egress_guards` checks the version).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import commands, events

CARRIES_VALUE_KEY = "bot-bottle.carries-value"  # flow.metadata: a real value is in its head
# Fields after which a host may read bytes beyond the head (in any spelling a CGI-style
# server takes for them: '_' for '-').
_FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding", "upgrade"})

CommandGenerator = Generator[Any, Any, Any]

# Upstream connections that carried a request with bytes beyond its head.
_framed: weakref.WeakSet[connection.Server] = weakref.WeakSet()
# Upstream connections mitmproxy has been told have ended (no event names them after that).
_ended: weakref.WeakSet[connection.Server] = weakref.WeakSet()
_installed = False


def leaves_bytes(request: http.Request) -> bool:
    """May a host read bytes after this request's head as (part of) another request?"""
    if request.raw_content:
        return True
    for name, value in request.headers.fields:
        field = name.decode("latin-1").lower().replace("_", "-")
        if field in _FRAMING_FIELDS and not (field == "content-length" and value.strip() == b"0"):
            return True
    return False


def install() -> None:
    """Patch mitmproxy's HTTP layer and stream (once per process)."""
    global _installed
    if _installed:
        return
    from mitmproxy.proxy.layers.http import HttpLayer, HttpStream

    _remember_framed(HttpStream)
    _fresh_for_values(HttpLayer)
    _let_go_of_closed(HttpLayer)
    _installed = True


def _remember_framed(stream_class: Any) -> None:
    original: Callable[[Any], CommandGenerator] = stream_class.make_server_connection

    def make_server_connection(self: Any) -> CommandGenerator:
        ok = yield from original(self)
        # Marked as it is handed the request, before anything of it is sent.
        if ok and leaves_bytes(self.flow.request):
            _framed.add(self.context.server)
        return ok

    stream_class.make_server_connection = make_server_connection


def _fresh_for_values(layer_class: Any) -> None:
    original: Callable[..., CommandGenerator] = layer_class.get_connection

    def get_connection(self: Any, event: Any, *, reuse: bool = True) -> CommandGenerator:
        flow = getattr(self.command_sources.get(event), "flow", None)
        if reuse and flow is not None and flow.metadata.get(CARRIES_VALUE_KEY):
            for server in list(self.connections):
                if server in _framed and server.connected and event.connection_spec_matches(server):
                    # Closed at once (its state too), so mitmproxy passes over it and opens another.
                    yield commands.CloseConnection(server)
        return (yield from original(self, event, reuse=reuse))

    layer_class.get_connection = get_connection


def _let_go_of_closed(layer_class: Any) -> None:
    original: Callable[[Any, Any], CommandGenerator] = layer_class._handle_event

    def _handle_event(self: Any, event: Any) -> CommandGenerator:
        # Marked before any layer handles it: the outermost HTTP layer sees it first.
        if isinstance(event, events.ConnectionClosed) and isinstance(
            event.connection, connection.Server
        ):
            _ended.add(event.connection)
        result = yield from original(self, event)
        # Ended and closed: its end handled (also when mitmproxy closed it on a later event, after
        # the host had closed its side). One closed by mitmproxy that has not ended yet stays
        # until it has, or its end would reach a layer that no longer knows it.
        done = [
            server
            for server in self.connections
            if server in _ended
            and server.state is connection.ConnectionState.CLOSED
            and not server.error
            and server not in self.waiting_for_establishment
        ]
        for server in done:
            del self.connections[server]
        return result

    layer_class._handle_event = _handle_event
