"""The bounds `egress_guards` installs on mitmproxy's HTTP layers, checked on the layers
themselves (the live labs in test_egress_proxy_live.py and test_egress_ask_live.py attack them
through the real proxy)."""

from __future__ import annotations

import tracemalloc

from mitmproxy import options
from mitmproxy.proxy import context
from mitmproxy.test import tflow

from bottle_engine.bundle import egress_guards


def test_a_body_in_tiny_pieces_takes_the_memory_of_its_bytes() -> None:
    """A chunked body hands mitmproxy one piece per chunk, and it kept each as a bytes object
    in a list: a 1 MB body sent as 2-byte chunks held 27 MiB of the proxy's memory, so a few
    tens of connections below the streaming bound took it past the bundle's limit."""
    egress_guards.install()
    from mitmproxy.proxy.layers.http import HttpStream

    stream = HttpStream(context.Context(tflow.tclient_conn(), options.Options()), 1)
    size = 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            stream.request_body_buf += bytes((i % 251, i % 241))
            size += 2
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(stream.request_body_buf) == size
    assert held < 2 * size, f"{held} bytes held for a body of {size}"
