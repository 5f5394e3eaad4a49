"""Which requests may leave bytes on an upstream connection that a host reads as a request
(`egress_upstreams.leaves_bytes`); the attack itself runs against the real proxy in
tests/unit/test_egress_proxy_live.py."""

from __future__ import annotations

import pytest
from mitmproxy import http

from bottle_engine.bundle.egress_upstreams import leaves_bytes


def _request(*fields: tuple[bytes, bytes], body: bytes = b"") -> http.Request:
    request = http.Request.make("GET", "https://secret.test/", b"", [(b"Host", b"secret.test")])
    request.headers.fields += fields
    request.raw_content = body
    return request


@pytest.mark.parametrize(
    "fields",
    [(), ((b"Content-Length", b"0"),), ((b"Connection", b"keep-alive"),)],
)
def test_a_head_alone_leaves_nothing(fields: tuple[tuple[bytes, bytes], ...]) -> None:
    assert not leaves_bytes(_request(*fields))


@pytest.mark.parametrize(
    "field",
    [
        (b"Content-Length", b"6"),  # a body streamed later: only its head is there yet
        (b"Transfer-Encoding", b"chunked"),
        (b"content_length", b"6"),  # as a CGI-style server reads it
        (b"Upgrade", b"websocket"),  # some fronts relay raw bytes after it, whatever the answer
    ],
)
def test_a_field_that_frames_more_than_the_head_counts(field: tuple[bytes, bytes]) -> None:
    assert leaves_bytes(_request(field))


def test_a_body_counts() -> None:
    assert leaves_bytes(_request(body=b"GET /log HTTP/1.1\r\nHost: other.test\r\n"))
