"""The real egress proxy against a bound host whose answers are written byte by byte.

The echo upstream of test_egress_proxy_live.py is an http.server: it can only answer as that
library frames a response. Here the bound host is a raw TLS socket that answers each request
path with a fixed byte string (`SCRIPTS`), VALUE in it replaced by the X-Auth-Token header the
proxy sent (the real value): trailers, informational answers, framing that disagrees with
itself. Whatever the answer, the real value must reach neither the agent, nor the audit log,
nor the proxy's own output.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bottle_engine.bundle.config import CA_CERT_NAME, BundleConfig
from tests.bundle_helpers import (
    free_port,
    loopback_egress_lab,
    make_test_ca,
    read_http_response,
    secret_in_file,
    websocket_frame,
)
from tests.conftest import REPO_ROOT

PLACEHOLDER = "bb-corner-placeholder-5c2a"
REAL = "real-corner-value-9e31b7"
TOKEN = f"X-Auth-Token: {PLACEHOLDER}"
FILLER = b"f" * (300 * 1024)  # past the proxy's buffering bound: the body is streamed

# What the bound host answers to each path; VALUE becomes the X-Auth-Token it received.
SCRIPTS: dict[str, bytes] = {
    # mitmproxy 11 raises on HTTP/1 trailers ("not implemented"): the answer never ends.
    "trailer": b"HTTP/1.1 200 OK\r\nTrailer: X-Echo\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nok\r\n0\r\nX-Echo: VALUE\r\n\r\n",
    # mitmproxy reads a 1xx as the final answer (and drops the rest as unexpected data).
    "early-hints": b"HTTP/1.1 103 Early Hints\r\n"
    b"Link: <https://cdn.test/a?t=VALUE>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "continue": b"HTTP/1.1 100 Continue\r\nX-Echo: VALUE\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nX-Echo: VALUE\r\nContent-Length: 12\r\n\r\nerror: VALUE",
    "processing": b"HTTP/1.1 102 Processing VALUE\r\nX-Echo: VALUE\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    # A switch to a WebSocket the request never offered, its frames in the same write as the
    # head (so in the same read at the proxy): the value in a fragmented message and a ping.
    "switch-unasked": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nX-Echo: VALUE\r\n\r\n"
    + websocket_frame(b"seen: " + REAL.encode()[:9], fin=False)
    + websocket_frame(b"ping " + REAL.encode(), opcode=9)
    + websocket_frame(REAL.encode()[9:], opcode=0)
    + websocket_frame(b"", opcode=8),
    # A switch the proxy refuses (a 502 to the agent), bytes quoting the value after it.
    "switch-refused": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
    b"Connection: Upgrade\r\nX-Echo: VALUE\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    b"VALUE",
    "not-modified": b'HTTP/1.1 304 Not Modified\r\nX-Echo: VALUE\r\nETag: "VALUE"\r\n\r\n',
    "redirect": b"HTTP/1.1 302 Found\r\nLocation: https://secret.test/cb?token=VALUE\r\n"
    b'WWW-Authenticate: Bearer error="invalid_token", token="VALUE"\r\n'
    b"Set-Cookie: session=VALUE; Secure\r\nLink: </x/VALUE>; rel=next\r\n"
    b"Content-Length: 0\r\n\r\n",
    "head": b"HTTP/1.1 200 OK\r\nX-Echo: VALUE\r\nContent-Length: 999999\r\n\r\n",
    "length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n10\r\nerror: VALUE\r\n0\r\n\r\n",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nerror: VALUE",
    "extra-after-body": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokerror: VALUE",
    "cut-mid-value": b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n" + FILLER + b"HALF",
    # A server quoting a long header cut to a length (as error messages do): the agent pads
    # the header so that the cut falls where it likes, and gets all but the last bytes.
    "cut-echo": b"HTTP/1.1 400 Bad Request\r\nX-Echo: FRONT...\r\n"
    + b"Content-Length: %d\r\n\r\nbad header: ...BACK" % (len("bad header: ...") + len(REAL) - 3),
    "cut-echo-streamed": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + FILLER + b"FRONT",
}

# The body a bound host would send with the value in it, and the hashes of that body it sends
# with an answer that carries no body (HEAD, 304): with a guess put where GET shows the
# placeholder, each tests the guess offline.
ECHOED_BODY = f"error: bad token {REAL}\n".encode()
BODY_HASHES = {
    "ETag": f'"{hashlib.sha1(ECHOED_BODY).hexdigest()}"',
    "Content-MD5": base64.b64encode(hashlib.md5(ECHOED_BODY).digest()).decode(),
    "Repr-Digest": f"sha-256=:{base64.b64encode(hashlib.sha256(ECHOED_BODY).digest()).decode()}:",
}
_HASH_FIELDS = "".join(f"{name}: {value}\r\n" for name, value in BODY_HASHES.items()).encode()
SCRIPTS["head-hashed"] = b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n" % (
    _HASH_FIELDS,
    len(ECHOED_BODY),
)
SCRIPTS["not-modified-hashed"] = b"HTTP/1.1 304 Not Modified\r\n%s\r\n" % _HASH_FIELDS


@dataclass(frozen=True)
class Lab:
    proxy: int
    bound: int  # the scripted bound host's port
    bottle_ca: Path
    audit: Path
    proxy_log: Path
    seen: list[bytes]  # every request head the scripted host received


class ScriptedHost:
    """A TLS server answering each request with `SCRIPTS[path]`, then closing."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.seen: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(raw,), daemon=True).start()

    def _answer(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), raw:
            raw.settimeout(10)
            sock = self.context.wrap_socket(raw, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = data.partition(b"\r\n\r\n")[0]
            self.seen.append(head)
            path = head.split(b" ")[1].decode().strip("/").split("?")[0]
            value = next(
                (
                    line.split(b":", 1)[1].strip()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"x-auth-token:")
                ),
                b"",
            )
            answer = SCRIPTS.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            half = len(value) // 2
            for word, text in (
                (b"VALUE", value),
                (b"HALF", value[:half]),
                (b"FRONT", value[:-3]),  # all but its last 3 bytes
                (b"BACK", value[3:]),  # all but its first 3
            ):
                answer = answer.replace(word, text)
            sock.sendall(answer)
            with contextlib.suppress(OSError, ssl.SSLError):
                sock.unwrap()

    def __enter__(self) -> ScriptedHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("egress-corners")
    tls = make_test_ca(root / "tls", ["secret.test", "other.test"])
    https, http, proxy = free_port(), free_port(), free_port()
    with ScriptedHost(tls.server_cert, tls.server_key) as host:
        config = BundleConfig(
            slug="corners",
            bundle_ip="10.255.255.2",
            agent_subnet="10.255.255.0/24",
            egress_allow=(
                f"secret.test:{host.port}",
                f"127.0.0.1:{host.port}",  # an exact entry lifts the loopback refusal (the lab)
            ),
            secrets=(
                secret_in_file(
                    root / "secret", "token", PLACEHOLDER, (f"secret.test:{host.port}",), REAL
                ),
            ),
            state_dir=str(root / "state"),
            upstream_ca_files=(str(tls.ca_cert),),
        )
        source = os.environ.get("BOTTLE_LIVE_PROXY_SRC", str(REPO_ROOT))
        log = root / "proxy.log"
        with loopback_egress_lab(
            root, config, tls, http=http, https=https, proxy=proxy, source=source, proxy_log=log
        ):
            ca = root / "state" / "ca" / CA_CERT_NAME
            yield Lab(proxy, host.port, ca, config.audit_log, log, host.seen)


def tunnel(lab: Lab, host: str = "secret.test") -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", lab.proxy), timeout=10)
    sock.sendall(
        f"CONNECT {host}:{lab.bound} HTTP/1.1\r\nHost: {host}:{lab.bound}\r\n\r\n".encode()
    )
    status, _, _ = read_http_response(sock, head_only=True)
    assert status == 200
    context = ssl.create_default_context(cafile=str(lab.bottle_ca))
    return context.wrap_socket(sock, server_hostname=host)


def until_closed(sock: socket.socket) -> bytes:
    """What arrives until the proxy closes, or goes quiet (mitmproxy 11 leaves an answer with
    trailers unended: its HTTP/1 layer raises on them)."""
    sock.settimeout(3)
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def ask(lab: Lab, path: str, method: str = "GET") -> bytes:
    """Everything the agent receives for one request carrying the placeholder."""
    host = f"secret.test:{lab.bound}"
    lines = [f"{method} /{path} HTTP/1.1", f"Host: {host}", TOKEN, "Connection: close"]
    with tunnel(lab) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return until_closed(sock)


def leaks(lab: Lab, received: bytes) -> list[str]:
    """Where the real value, or either half of it, showed."""
    found = []
    half = len(REAL) // 2
    for piece in (REAL, REAL[:half], REAL[half:]):
        if piece.encode() in received:
            found.append(f"agent:{piece}")
        if piece in lab.audit.read_text():
            found.append(f"audit:{piece}")
        if piece in lab.proxy_log.read_text(errors="replace"):
            found.append(f"proxy-log:{piece}")
    return found


def reached_upstream(lab: Lab, path: str) -> bool:
    return any(f"/{path} ".encode() in h and REAL.encode() in h for h in lab.seen)


@pytest.mark.parametrize("path", sorted(set(SCRIPTS) - {"head", "head-hashed"}))
def test_an_echo_in_any_framing_reaches_the_agent_only_as_the_placeholder(
    lab: Lab, path: str
) -> None:
    received = ask(lab, path)
    assert reached_upstream(lab, path)
    assert leaks(lab, received) == [], received[:600]


def test_an_echo_in_a_head_answer_reaches_the_agent_only_as_the_placeholder(lab: Lab) -> None:
    received = ask(lab, "head", method="HEAD")
    assert reached_upstream(lab, "head")
    assert leaks(lab, received) == [], received[:600]
    assert PLACEHOLDER.encode() in received


@pytest.mark.parametrize(
    ("path", "method"), [("head-hashed", "HEAD"), ("not-modified-hashed", "GET")]
)
def test_an_answer_without_a_body_never_brings_a_hash_of_one(
    lab: Lab, path: str, method: str
) -> None:
    """A HEAD or a 304 carries the hashes of a body the proxy never sees, so it cannot tell
    whether that body held the real value (a GET of it shows the placeholder where it was)."""
    received = ask(lab, path, method=method)
    head = received.partition(b"\r\n\r\n")[0].decode()
    assert received.startswith(b"HTTP/1.1 ")
    assert [name for name, value in BODY_HASHES.items() if value in head] == [], head


def test_bytes_after_a_refused_switch_reach_neither_agent_nor_log(lab: Lab) -> None:
    """mitmproxy makes an upstream connection a pipe on its 101 before any hook has seen it;
    when the proxy refuses the switch, what the host sent after it reached a stream that had
    finished, which raised quoting those bytes: the traceback, the real value in it, went to
    the proxy's log (and the tunnel hung). The 502 page comes whole (it promised a body the
    101 never had), and the next request on the tunnel is answered."""
    host = f"secret.test:{lab.bound}"
    with tunnel(lab) as sock:
        sock.sendall(f"GET /switch-refused HTTP/1.1\r\nHost: {host}\r\n{TOKEN}\r\n\r\n".encode())
        refused, _, page = read_http_response(sock)
        last = f"GET /redirect HTTP/1.1\r\nHost: {host}\r\n{TOKEN}\r\nConnection: close\r\n\r\n"
        sock.sendall(last.encode())
        after, head, _ = read_http_response(sock)
    assert (refused, after) == (502, 302)
    assert b"response-not-inspectable" in page
    assert leaks(lab, page + head) == []
