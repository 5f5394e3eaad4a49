"""Which first bytes of a relayed tunnel are read as TLS, as HTTP, or relayed as they are
(bottle_engine/bundle/egress_relay.py); the proxy's use of them: test_egress_proxy_live.py."""

from __future__ import annotations

import pytest

from bottle_engine.bundle.egress_relay import (
    HTTP,
    MAX_REQUEST_LINE,
    MORE,
    PROXY_HEADER,
    RAW,
    TLS,
    TOO_LONG,
    Carried,
    first_bytes,
)


@pytest.mark.parametrize(
    ("client", "carried"),
    [
        (b"\x16\x03\x01\x02\x00\x01", TLS),
        (b"\x16", MORE),
        (b"\x16\x03", MORE),
        (b"\x16\x04\x01", RAW),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP),
        (b"get / http/1.0\r\n", HTTP),  # a server may read the method and version in any case
        (b"GET http://stranger.test/ HTTP/1.1\r\n", HTTP),
        (b"POST\t/upload\tHTTP/1.1\r\n", HTTP),  # tabs: some servers split on any whitespace
        # Python's http.server splits on str whitespace (Latin-1), and skips it before the method.
        (b"GET\x0b/\x0cHTTP/1.1\r\n", HTTP),
        (b"GET\x1c/\x1fHTTP/1.1\r\n", HTTP),
        (b"GET\xa0/\x85HTTP/1.1\r\n", HTTP),
        (b" \x0bGET / HTTP/1.1\r\n", HTTP),
        (b"GET /\x0b\r\n", HTTP),
        (b"GET\x1c/path", MORE),
        # Servers skip empty lines before a request line (RFC 9112 2.2).
        (b"\r\nGET / HTTP/1.1\r\n", HTTP),
        (b"\n\r\n\nGET / HTTP/1.1\r\n", HTTP),
        # HTTP/0.9: no version, a path or an absolute URL as the target.
        (b"GET /\r\n", HTTP),
        (b"GET http://stranger.test/\n", HTTP),
        # Not yet telling: nothing is relayed until it does.
        (b"", MORE),
        (b"\r\n", MORE),
        (b"G", MORE),
        (b"GET /path", MORE),
        (b"GET /path HTT", MORE),
        (b"GET /path\r", MORE),
        (b"PING", MORE),
        # A PROXY protocol header: a front that accepts one reads the request after it.
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 80\r\nGET / HTTP/1.1\r\n", PROXY_HEADER),
        (b"PROXY UNKNOWN\r\n", PROXY_HEADER),
        (b"\r\nPROXY ", PROXY_HEADER),
        (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c", PROXY_HEADER),  # v2's signature
        (b"\r\n\r\n\x00\r\nQU", MORE),
        (b"PROXY", MORE),
        # Other protocols.
        (b"SSH-2.0-OpenSSH_9.2\r\n", RAW),
        (b"PING\r\n", RAW),
        (b"get some-key\r\n", RAW),
        (b"through the tunnel", RAW),
        (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", RAW),  # PostgreSQL's SSLRequest
    ],
)
def test_what_the_first_bytes_carry(client: bytes, carried: Carried) -> None:
    assert first_bytes(client, server_spoke=False) == carried


def test_a_server_that_speaks_first_is_no_http_or_tls_server() -> None:
    assert first_bytes(b"", server_spoke=True) == RAW
    assert first_bytes(b"GET", server_spoke=True) == RAW
    assert first_bytes(b"GET / HTTP/1.1\r\n", server_spoke=True) == HTTP


def test_a_line_that_never_tells_is_not_waited_for_without_end() -> None:
    assert first_bytes(b"GET /" + b"a" * MAX_REQUEST_LINE, server_spoke=False) == TOO_LONG
    assert first_bytes(b"\r\n" * MAX_REQUEST_LINE, server_spoke=False) == TOO_LONG
