"""The real egress proxy against a bound host that quotes the real value as common web stacks
write it: in JSON escaping more than JSON requires (`bundle_helpers.JSON_FLAVOURS`), in a URL
encoding what another encoder keeps (`bundle_helpers.URL_FLAVOURS`).

The value here is as API keys and Basic credentials often are, base64 with '/', '+' and '=' in
it (and a '&', as a generated password may hold). An escape the scrubber does not know splits
the value into runs that no piece of it anchors: the agent's JSON or URL parser joins them
again.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.bundle_helpers import (
    JSON_FLAVOURS,
    URL_FLAVOURS,
    LiveLab,
    live_egress_lab,
    read_http_response,
)

PLACEHOLDER = "bb-encoded-placeholder-31c9"
REAL = "Zm9vYmFyYmF6/K7MDENG+bPxRfiCY~EXAMPLE&KEY/0a1b2c3d+4e5f6g7h8/i9j0kLmN=="


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLab]:
    with live_egress_lab(tmp_path_factory.mktemp("egress-encoders"), PLACEHOLDER, REAL) as running:
        yield running


def tunnel(lab: LiveLab) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", lab.proxy), timeout=10)
    authority = f"secret.test:{lab.https}"
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    status, _, _ = read_http_response(sock, head_only=True)
    assert status == 200
    context = ssl.create_default_context(cafile=str(lab.bottle_ca))
    return context.wrap_socket(sock, server_hostname="secret.test")


def reflect(lab: LiveLab, flavour: str, *fields: str) -> tuple[int, bytes, bytes]:
    """What the agent gets when the bound host quotes the Authorization it received (the
    request carrying `fields` too)."""
    lines = [
        f"GET /reflect/{flavour} HTTP/1.1",
        f"Host: secret.test:{lab.https}",
        f"Authorization: Bearer {PLACEHOLDER}",
        *fields,
        "Connection: close",
    ]
    with tunnel(lab) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return read_http_response(sock)


@pytest.mark.parametrize("flavour", sorted(JSON_FLAVOURS))
def test_a_value_quoted_in_json_as_web_stacks_write_it_reaches_the_agent_as_the_placeholder(
    lab: LiveLab, flavour: str
) -> None:
    """PHP writes '/' as '\\/', .NET '+' as '\\u002B': the runs between those escapes reached
    the agent in clear, and json.loads gave it most of the value."""
    status, _, body = reflect(lab, flavour)
    assert status == 401, body
    assert json.loads(body)["token"] == f"Bearer {PLACEHOLDER}", body


@pytest.mark.parametrize("flavour", sorted(URL_FLAVOURS))
def test_a_value_quoted_in_a_url_as_web_stacks_write_it_reaches_the_agent_as_the_placeholder(
    lab: LiveLab, flavour: str
) -> None:
    """Go's url.PathEscape keeps '+' and encodes '/': a run after a '+' reached the agent in
    the redirect's Location, which it unquoted."""
    status, head, _ = reflect(lab, flavour)
    assert status == 302, head
    location = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"location:")
    )
    quoted = location.removeprefix("https://secret.test/callback/")
    assert urllib.parse.unquote(quoted) == f"Bearer {PLACEHOLDER}", location


@pytest.mark.parametrize(
    ("field", "charset"),
    [
        ("Accept-Charset", "utf-16"),
        ("Accept-Charset", "ibm037"),
        ("Accept", "text/plain;charset=UTF-32LE"),
        ("Accept", "text/plain; CharSet = utf-16be"),
    ],
)
def test_a_value_quoted_in_a_charset_the_agent_asked_for_reaches_it_as_the_placeholder(
    lab: LiveLab, field: str, charset: str
) -> None:
    """Ktor and Pekko HTTP encode a text answer in the charset Accept-Charset asks for, Spring
    MVC in a charset parameter of Accept: the value in UTF-16 or EBCDIC has none of the bytes
    the scrubber looks for, and the agent decoded it. Toward a bound host the proxy takes the
    choice of charset out of the request, and the host answers in its default."""
    status, head, body = reflect(lab, "charset", f"{field}: {charset}")
    assert status == 401, head
    declared = head.lower().split(b"charset=")[1].split(b"\r\n")[0].decode()
    text = body.decode(declared)
    assert REAL not in text and PLACEHOLDER in text, (head, text)
