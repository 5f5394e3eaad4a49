"""The real egress proxy process on loopback, attacked with hand-written clients (no daemon).

The bundle's `run_proxy` runs as a subprocess with every `*.test` name resolving to 127.0.0.1
and an echo upstream (HTTP and HTTPS with its own CA, trusted through `upstream_ca_files`) that
reports the headers, request target and TLS server name it saw. `secret.test` is bound to the
secret; `other.test` is allowed but not bound (the "co-tenant on the same front").
The same attacks run from inside a real bottle in tests/escape/test_egress_attacks.py.
BOTTLE_LIVE_PROXY_SRC=/other/checkout runs that checkout's proxy instead (to watch the attacks
succeed against an older one).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import select
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bottle_engine.bundle.audit import AuditEntry, read_audit
from bottle_engine.bundle.egress_clients import MAX_CLIENT_CONNECTIONS
from bottle_engine.bundle.egress_guards import (
    MAX_REQUEST_HEAD,
    MAX_RESPONSE_HEAD,
    REQUEST_HEAD_LIMIT,
    REQUEST_NO_DESTINATION,
    REQUEST_UNPARSEABLE,
)
from tests.bundle_helpers import (
    BROKEN_REFLECTIONS,
    LiveLab,
    live_egress_lab,
    read_http_head,
    read_http_response,
    websocket_accept,
    websocket_messages,
)
from tests.polling import wait_for

PLACEHOLDER = "bb-live-placeholder-7d1e"
REAL = "real-live-value-42af"


# Headers a careless manifest may add to the secret's `headers`: the defences behind that list
# (scrubbing what the bound host sends back, refusals that never quote the value) stay tested.
CARELESS_HEADERS = ("Upgrade", "Content-Encoding")


Lab = LiveLab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("egress-live")
    with live_egress_lab(root, PLACEHOLDER, REAL, extra_headers=CARELESS_HEADERS) as running:
        yield running


# --------------------------------------------------------------------------- clients


def _connect(lab: Lab) -> socket.socket:
    return socket.create_connection(("127.0.0.1", lab.proxy), timeout=20)


def tunnel(
    lab: Lab, host: str, *, sni: str | None = None, alpn: list[str] | None = None
) -> ssl.SSLSocket:
    """CONNECT host:https through the proxy, then TLS with `sni` (default: host) inside,
    offering `alpn` if given."""
    sock = _connect(lab)
    sock.sendall(
        f"CONNECT {host}:{lab.https} HTTP/1.1\r\nHost: {host}:{lab.https}\r\n\r\n".encode()
    )
    status, _, _ = read_http_response(sock, head_only=True)
    assert status == 200
    context = ssl.create_default_context(cafile=str(lab.bottle_ca))
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context.wrap_socket(sock, server_hostname=sni or host)


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, object] | str]:
    sock.sendall(request)
    status, _, body = read_http_response(sock)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def get(target: str, host: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


AUTH = f"Authorization: Bearer {PLACEHOLDER}"


# --------------------------------------------------------------------------- the control


def test_the_bound_host_gets_the_real_value_and_its_own_name_as_sni(lab: Lab) -> None:
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        status, seen = exchange(sock, get("/ok", host, AUTH))
    assert status == 200 and isinstance(seen, dict)
    # What the bound host received (its echo to the agent carries the placeholder back).
    (received,) = lab.seen_upstream("/ok")
    assert received["headers"]["Authorization"] == f"Bearer {REAL}"
    assert received["sni"] == "secret.test"
    assert seen["headers"]["Authorization"] == f"Bearer {PLACEHOLDER}"  # type: ignore[index]


def test_a_second_request_on_a_kept_alive_tunnel_is_judged_on_its_own(lab: Lab) -> None:
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        first, _ = exchange(sock, get("/1", host, AUTH))
        second, body = exchange(sock, get("/2", f"other.test:{lab.https}", AUTH))
    assert first == 200
    assert second == 403 and "name-mismatch" in str(body)


# --------------------------------------------------------------------------- the attacks


def _h2_stream_confusion(lab: Lab) -> tuple[int | None, bytes]:
    """One TLS connection to the proxy port with ALPN h2: CONNECT to the bound host on stream 1,
    a plain-HTTP request to another host carrying the placeholder on stream 3."""
    import h2.config
    import h2.connection
    import h2.events

    sock = _connect(lab)
    context = ssl.create_default_context(cafile=str(lab.bottle_ca))
    context.check_hostname = False
    context.set_alpn_protocols(["h2"])
    try:
        tls = context.wrap_socket(sock, server_hostname="proxy.test")
    except (ssl.SSLError, OSError):
        return None, b""
    if tls.selected_alpn_protocol() != "h2":
        tls.close()
        return None, b""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
    )
    conn.initiate_connection()
    authority = f"secret.test:{lab.https}"
    conn.send_headers(
        1, [(":method", "CONNECT"), (":scheme", "https"), (":path", "/"), (":authority", authority)]
    )
    conn.send_headers(
        3,
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", f"other.test:{lab.http}"),
            (":path", "/stolen"),
            ("authorization", f"Bearer {PLACEHOLDER}"),
        ],
        end_stream=True,
    )
    tls.sendall(conn.data_to_send())
    body, status = b"", None
    with tls:
        while True:
            data = tls.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 3:
                    status = int(dict(event.headers)[b":status"])
                if isinstance(event, h2.events.DataReceived) and event.stream_id == 3:
                    body += event.data
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == 3:
                    return status, body
            tls.sendall(conn.data_to_send())
    return status, body


def test_h2_stream_confusion_never_carries_the_secret_elsewhere(lab: Lab) -> None:
    status, body = _h2_stream_confusion(lab)
    assert REAL.encode() not in body
    assert status is None  # the proxy port speaks no TLS (so no h2) to the agent at all


def test_tls_to_the_proxy_port_is_refused_and_logged(lab: Lab) -> None:
    context = ssl.create_default_context(cafile=str(lab.bottle_ca))
    context.check_hostname = False
    with pytest.raises((ssl.SSLError, OSError)), _connect(lab) as sock:
        context.wrap_socket(sock, server_hostname="proxy.test")
    assert any(e.rule == "tls-to-proxy" for e in read_audit(lab.audit))


def test_client_sni_naming_another_host_is_refused(lab: Lab) -> None:
    with tunnel(lab, "secret.test", sni="other.test") as sock:
        status, body = exchange(sock, get("/", f"other.test:{lab.https}", AUTH))
    assert status == 403 and "name-mismatch" in str(body) and "SNI" in str(body)


def test_sni_mismatch_with_matching_host_header_is_refused(lab: Lab) -> None:
    with tunnel(lab, "secret.test", sni="other.test") as sock:
        status, body = exchange(sock, get("/", f"secret.test:{lab.https}", AUTH))
    assert status == 403 and "SNI" in str(body)


def test_host_header_naming_another_host_is_refused(lab: Lab) -> None:
    with tunnel(lab, "secret.test") as sock:
        status, body = exchange(sock, get("/", f"other.test:{lab.https}", AUTH))
    assert status == 403 and "Host header" in str(body)


def test_a_request_after_an_empty_line_inside_the_tls_is_judged_too(lab: Lab) -> None:
    """Servers skip empty lines before a request line (RFC 9112); mitmproxy read bytes not
    starting with a method as another protocol and relayed them raw inside the bound host's
    TLS, unjudged and unlogged: the front served them as the site they named."""
    with tunnel(lab, "secret.test") as sock:
        status, body = _raw(sock, b"\r\n" + get("/bound-after-crlf", "stranger.test", AUTH))
    assert status == 403 and "name-mismatch" in body, body
    assert lab.seen_upstream("/bound-after-crlf") == []


def test_absolute_form_inside_a_tunnel_naming_another_host_is_refused(lab: Lab) -> None:
    target = f"https://other.test:{lab.https}/"
    with tunnel(lab, "secret.test") as sock:
        status, body = exchange(sock, get(target, f"secret.test:{lab.https}", AUTH))
    assert status == 403 and "absolute-form" in str(body)


def test_plain_http_host_differing_from_the_url_is_refused(lab: Lab) -> None:
    with _connect(lab) as sock:
        status, body = exchange(
            sock, get(f"http://other.test:{lab.http}/", f"secret.test:{lab.https}")
        )
    assert status == 403 and "name-mismatch" in str(body)


def _upstream_connections(port: int) -> int:
    """Established TCP connections to 127.0.0.1:`port` (the proxy's, in this lab)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def test_plain_http_requests_on_one_kept_alive_connection_share_an_upstream_one(
    lab: Lab,
) -> None:
    """The proxy connects to the checked address, not the name: mitmproxy then never found the
    connection for the name's next request, opened another for each, kept them all idle, and
    held the sixth request until the host closed one (mitmproxy opens at most five to one
    address per client connection): a client's sixth request on its connection hung."""
    host = f"other.test:{lab.http}"
    before = _upstream_connections(lab.http)
    with _connect(lab) as sock:
        sock.settimeout(10)
        statuses = [_raw(sock, get(f"http://{host}/kept-{n}", host))[0] for n in range(8)]
        opened = _upstream_connections(lab.http) - before
    assert statuses == [200] * 8
    assert opened <= 1


def _claiming_http2(target: str, host: str, *headers: str) -> bytes:
    """`get`'s request with a request line that claims HTTP/2.0 (HTTP/1 framing all the same):
    mitmproxy then reads the URL's authority as the request's host header, not the Host field
    it sends on."""
    return get(target, host, *headers).replace(b" HTTP/1.1\r\n", b" HTTP/2.0\r\n", 1)


def test_a_request_line_claiming_http2_is_judged_by_the_host_field_it_sends_in_a_tunnel(
    lab: Lab,
) -> None:
    """The absolute URL named the bound host, the Host field another site on its front: the
    Host went unjudged and the real value reached that site (the front routes by Host)."""
    target = f"https://secret.test:{lab.https}/claims-h2"
    with tunnel(lab, "secret.test") as sock:
        status, body = exchange(sock, _claiming_http2(target, f"other.test:{lab.https}", AUTH))
    assert status == 403 and "Host header" in str(body), body
    assert lab.seen_upstream("/claims-h2") == []


def test_a_request_line_claiming_http2_is_judged_by_the_host_field_it_sends_on_plain_http(
    lab: Lab,
) -> None:
    with _connect(lab) as sock:
        request = _claiming_http2(
            f"http://other.test:{lab.http}/claims-h2-plain", "elsewhere.invalid"
        )
        status, body = exchange(sock, request)
    assert status == 403 and "Host header" in str(body), body
    assert lab.seen_upstream("/claims-h2-plain") == []


def test_plain_http_request_carrying_the_placeholder_is_refused(lab: Lab) -> None:
    with _connect(lab) as sock:
        status, body = exchange(
            sock, get(f"http://other.test:{lab.http}/", f"other.test:{lab.http}", AUTH)
        )
    assert status == 403 and "secret-wrong-host" in str(body)


# A header the bound host keeps as data (object metadata, a file name, a logged client name),
# its value then served back by a host of the same service that is allowed but not bound, so
# nothing scrubs the answer.
STORED_AS_DATA = [
    f"X-Amz-Meta-Note: {PLACEHOLDER}",
    f'Dropbox-API-Arg: {{"path": "/{PLACEHOLDER}.txt"}}',
    f'Content-Disposition: attachment; filename="{PLACEHOLDER}"',
    f"User-Agent: agent/{PLACEHOLDER}",
]


@pytest.mark.parametrize("header", STORED_AS_DATA, ids=lambda h: h.split(":")[0])
def test_a_header_the_bound_host_stores_never_carries_the_real_value(lab: Lab, header: str) -> None:
    """The agent puts its placeholder in a header the bound host stores, then reads what was
    stored from another, unbound host. The proxy swapped the real value into any header, so the
    agent read it back in clear. Now only the secret's `headers` carry it: this request is
    refused naming the header and the fix, and nothing reaches the upstream."""
    key = header.split(":")[0].lower()
    with tunnel(lab, "secret.test") as sock:
        status, refusal = exchange(sock, get(f"/store/{key}", f"secret.test:{lab.https}", header))
    with _connect(lab) as sock:
        read, stored = exchange(
            sock, get(f"http://other.test:{lab.http}/stored/{key}", f"other.test:{lab.http}")
        )
    assert read == 200 and REAL not in json.dumps(stored)
    assert status == 403 and "secret-header-not-allowed" in str(refusal), refusal
    assert f"'{header.split(':')[0]}'" in str(refusal) and "headers" in str(refusal)
    assert not lab.seen_upstream(f"/store/{key}")


def test_a_request_with_the_placeholder_in_a_credential_header_and_another_goes_nowhere(
    lab: Lab,
) -> None:
    """An allowed header does not carry a forbidden one: the whole request is refused."""
    with tunnel(lab, "secret.test") as sock:
        status, _ = exchange(
            sock,
            get("/store/both", f"secret.test:{lab.https}", AUTH, f"X-Goog-Meta-A: {PLACEHOLDER}"),
        )
    assert status == 403 and not lab.seen_upstream("/store/both")


@pytest.mark.parametrize("header", ["x-api-key", "X-Api-Key", "Authorization"])
def test_the_default_credential_headers_carry_the_real_value(lab: Lab, header: str) -> None:
    """What Claude Code sends: `x-api-key` for an API key, `Authorization: Bearer` for OAuth."""
    path = f"/credential/{header}"
    with tunnel(lab, "secret.test") as sock:
        status, _ = exchange(
            sock, get(path, f"secret.test:{lab.https}", f"{header}: {PLACEHOLDER}")
        )
    assert status == 200
    (seen,) = lab.seen_upstream(path)
    assert seen["headers"][header] == REAL


def _flood(sock: socket.socket, chunk: bytes, limit: int) -> int:
    """Send `chunk` until `limit` bytes went out or the proxy has answered (or stopped taking
    them); how many bytes were sent. Bounded, so a proxy that never answers fails the test."""
    sent = 0
    try:
        while sent < limit and not select.select([sock], [], [], 0)[0]:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def test_an_unending_request_head_gets_431_naming_the_limit(lab: Lab) -> None:
    with _connect(lab) as sock:
        sock.sendall(b"GET http://other.test/ HTTP/1.1\r\nX-Big: ")
        _flood(sock, b"a" * 16384, 8 * MAX_REQUEST_HEAD)  # the guard answers long before
        status, _, body = read_http_response(sock)
    assert status == 431 and b"request-head-limit" in body


def test_a_client_still_sending_when_refused_reads_the_answer_and_is_not_reset(lab: Lab) -> None:
    """Closing with the client's bytes unread makes the kernel answer with a reset, and a client
    still writing (a large head or body) reports "connection reset" and drops the 431. The
    proxy stops writing but goes on taking (and dropping) what the client sends."""
    with _connect(lab) as sock:
        sock.sendall(b"GET http://other.test/ HTTP/1.1\r\nX-Big: ")
        _flood(sock, b"a" * 16384, 2 * MAX_REQUEST_HEAD)
        status, _, body = read_http_response(sock)
        assert status == 431 and b"request-head-limit" in body
        sock.sendall(b"a" * (1024 * 1024))  # a reset connection refuses this
        assert sock.recv(1) == b""  # the proxy's end, after its answer


def test_a_refused_client_that_never_stops_sending_is_cut_off(lab: Lab) -> None:
    """Taking and dropping a refused client's bytes is bounded: the proxy closes the
    connection after a while (LINGER_SECONDS) however the client goes on."""
    with _connect(lab) as sock:
        sock.sendall(b"\x16 not a request\r\n\r\n")
        status, _, _ = read_http_response(sock)
        assert status == 400

        def cut_off() -> bool:
            try:
                sock.sendall(b"a" * 1024)
            except OSError:
                return True
            return False

        wait_for(cut_off, "the proxy to close the refused connection", timeout=60, interval=0.2)


def _h2_request(scheme: str, authority: str, path: str) -> bytes:
    """An HTTP/2 client's first bytes with prior knowledge (RFC 9113, 3.3): the preface, its
    SETTINGS, and a request for `authority` carrying the placeholder (HPACK-coded)."""
    import h2.config
    import h2.connection

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "GET"),
            (":scheme", scheme),
            (":authority", authority),
            (":path", path),
            ("authorization", f"Bearer {PLACEHOLDER}"),
        ],
        end_stream=True,
    )
    return bytes(conn.data_to_send())


H2C_PREFACE = _h2_request("http", "stranger.test", "/h2c-prior-knowledge")
HEADS_NO_FLOW_SEES = {
    "unparseable": (b"\x00\x01 nonsense\r\n\r\n", 400, REQUEST_UNPARSEABLE),
    # Parsed, but naming no destination: mitmproxy answered 400 before any hook, unlogged.
    # HTTP/2 with prior knowledge (h2c) on the proxy port begins so: its preface reads as an
    # HTTP/1 request line, then its frames (the request they carry named another host).
    "h2c-prior-knowledge": (H2C_PREFACE, 400, REQUEST_NO_DESTINATION),
    "no-host": (b"GET /nowhere HTTP/1.1\r\nX-A: b\r\n\r\n", 400, REQUEST_NO_DESTINATION),
    "too-large": (
        b"GET http://other.test/ HTTP/1.1\r\nX-Big: " + b"a" * 80000,
        431,
        REQUEST_HEAD_LIMIT,
    ),
}


@pytest.mark.parametrize("case", sorted(HEADS_NO_FLOW_SEES))
def test_a_head_refused_before_any_flow_is_in_the_audit_log(lab: Lab, case: str) -> None:
    """Every decision is logged: also a head mitmproxy refuses while no addon hook has run."""
    head, expected_status, rule = HEADS_NO_FLOW_SEES[case]
    since = len(list(read_audit(lab.audit)))
    with _connect(lab) as sock:
        sock.sendall(head)
        status, _, _ = read_http_response(sock)
    assert status == expected_status

    def logged() -> list[AuditEntry]:
        return [e for e in list(read_audit(lab.audit))[since:] if e.rule == rule]

    entry = wait_for(logged, f"a {rule} line in the audit log", timeout=10)[0]
    assert (entry.decision, entry.status, entry.host) == ("deny", expected_status, "")


def _until_closed(sock: socket.socket) -> bytes:
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("offers", [["h2"], ["h2", "http/1.1"]])
def test_http2_is_never_spoken_with_the_agent(lab: Lab, offers: list[str]) -> None:
    """HTTP/2 would let one connection carry streams for any :authority (coalescing), headers
    no HTTP/1 parser takes, and the placeholder HPACK-coded past the header checks. Inside a
    tunnel to the bound host the proxy negotiates HTTP/1 whatever ALPN offers, and the h2
    preface sent all the same (or with prior knowledge on the proxy port, h2c) is no request."""
    with tunnel(lab, "secret.test", alpn=offers) as sock:
        assert sock.selected_alpn_protocol() in (None, "http/1.1")
        sock.sendall(_h2_request("https", f"other.test:{lab.https}", "/h2-in-tunnel"))
        answered = _until_closed(sock)
    with _connect(lab) as sock:
        sock.sendall(H2C_PREFACE)
        answered += _until_closed(sock)
    assert REAL.encode() not in answered
    assert lab.seen_upstream("/h2-in-tunnel") == []
    assert lab.seen_upstream("/h2c-prior-knowledge") == []


def test_cookie_crumbs_joined_after_the_checks_never_make_the_placeholder(lab: Lab) -> None:
    """For a request line claiming HTTP/2.0 mitmproxy joins the Cookie fields into one (HTTP/2
    sends each crumb apart) after every hook: a placeholder split across two crumbs is in
    neither when they are checked, and must not come out whole upstream."""
    host = f"secret.test:{lab.https}"
    half = len(PLACEHOLDER) // 2
    crumbs = (f"Cookie: a={PLACEHOLDER[:half]}", f"Cookie: {PLACEHOLDER[half:]}")
    with tunnel(lab, "secret.test") as sock:
        status, _ = exchange(sock, _claiming_http2("/crumbs", host, *crumbs))
    (seen,) = lab.seen_upstream("/crumbs")
    assert status == 200
    assert PLACEHOLDER not in seen["headers"]["Cookie"]
    assert REAL not in json.dumps(seen)


def test_a_huge_body_to_a_denied_host_is_refused_without_reading_it(lab: Lab) -> None:
    size = 64 * 1024 * 1024  # announced; far less is sent before the 403 arrives
    with _connect(lab) as sock:
        sock.sendall(
            f"POST http://denied.invalid/ HTTP/1.1\r\nHost: denied.invalid\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        sent = _flood(sock, b"x" * 65536, size)
        status, _, body = read_http_response(sock)
    assert status == 403 and b"default-deny" in body
    assert sent < size


def test_a_gzip_bomb_to_the_bound_host_gets_413_naming_the_limit(lab: Lab) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 256 * 1024
    host = f"secret.test:{lab.https}"
    request = get("/", host, AUTH, "Content-Encoding: gzip", body=bomb).replace(b"GET", b"POST", 1)
    with tunnel(lab, "secret.test") as sock:
        status, body = exchange(sock, request)
    assert status == 413 and "decoded-body-limit" in str(body)


def test_audit_fields_are_capped(lab: Lab) -> None:
    method = "X" * 40000
    with _connect(lab) as sock:
        sock.sendall(
            f"{method} http://denied.invalid/ HTTP/1.1\r\nHost: denied.invalid\r\n\r\n".encode()
        )
        status, _, _ = read_http_response(sock)
    assert status == 403
    lines = lab.audit.read_text().splitlines()
    long_line = next(line for line in lines if "XXXX" in line)
    assert len(long_line) < 4096 and "more characters cut" in long_line


def test_a_tunnel_is_logged_when_it_opens_and_again_when_it_closes(lab: Lab) -> None:
    sock = _connect(lab)
    sock.sendall(f"CONNECT other.test:{lab.https} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert read_http_response(sock, head_only=True)[0] == 200
    deadline = time.monotonic() + 10
    opened = []
    while not opened and time.monotonic() < deadline:
        opened = [e for e in read_audit(lab.audit) if e.stage == "open" and e.host == "other.test"]
        time.sleep(0.05)
    assert opened, "no open record while the tunnel is open"
    sock.sendall(b"through the tunnel")
    sock.close()
    deadline = time.monotonic() + 10
    closed = []
    while not closed and time.monotonic() < deadline:
        closed = [e for e in read_audit(lab.audit) if e.stage == "close" and e.host == "other.test"]
        time.sleep(0.05)
    assert closed and closed[-1].bytes_sent >= len(b"through the tunnel")


# --------------------------------------------------------------------------- fronting


def _relayed(lab: Lab, port: int) -> socket.socket:
    """A CONNECT tunnel to other.test (allowed, bound to no secret: relayed, not intercepted)."""
    sock = _connect(lab)
    sock.sendall(f"CONNECT other.test:{port} HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n".encode())
    assert read_http_response(sock, head_only=True)[0] == 200
    return sock


def _fronting_refused(lab: Lab, since: int) -> bool:
    return any(
        e.rule == "name-mismatch" and e.decision == "deny"
        for e in list(read_audit(lab.audit))[since:]
    )


def test_a_relayed_tunnel_whose_tls_names_another_host_goes_nowhere(lab: Lab) -> None:
    """A shared front (CDN) picks the site by the TLS server name: a tunnel to an allowed host
    on it, with another site's name in the ClientHello, reached any site on that front. The
    proxy reads the ClientHello of a relayed tunnel (without terminating TLS) and closes the
    tunnel when its SNI names another host."""
    since = len(list(read_audit(lab.audit)))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the agent's own site: it needs no proof
    sock = _relayed(lab, lab.https)
    with pytest.raises(OSError), context.wrap_socket(sock, server_hostname="stranger.test") as tls:
        tls.sendall(get("/fronted-by-sni", "stranger.test"))
        read_http_response(tls)
    sock.close()
    assert lab.seen_upstream("/fronted-by-sni") == []
    wait_for(lambda: _fronting_refused(lab, since), "the refusal in the audit log", timeout=10)


def test_a_relayed_tunnel_whose_tls_names_its_host_or_none_passes(lab: Lab) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for name, path in (("other.test", "/relayed-sni"), (None, "/relayed-no-sni")):
        with context.wrap_socket(_relayed(lab, lab.https), server_hostname=name) as tls:
            assert exchange(tls, get(path, f"other.test:{lab.https}"))[0] == 200
        (seen,) = lab.seen_upstream(path)
        assert seen["sni"] == name


def test_plain_http_in_a_relayed_tunnel_naming_another_host_is_refused(lab: Lab) -> None:
    """The same front picks the site by the Host header on plain HTTP: CONNECT to port 80 of an
    allowed host, then a request naming another. (Which first bytes count as HTTP, empty lines
    before a request line included: tests/unit/test_egress_relay.py.)"""
    with _relayed(lab, lab.http) as sock:
        status, body = _raw(sock, get("/fronted-by-host", f"stranger.test:{lab.http}"))
    assert status == 403 and "name-mismatch" in body, body
    assert lab.seen_upstream("/fronted-by-host") == []


# Python's http.server splits a request line with str.split(): on any whitespace, the
# separators below and a leading space included, and reads the Host header that follows.
ODD_SEPARATORS = {
    "vertical-tab": b"GET\x0b/relayed-vt\x0bHTTP/1.1\r\n",
    "file-separator": b"GET\x1c/relayed-fs\x1cHTTP/1.1\r\n",
    "no-break-space": b"GET\xa0/relayed-nbsp\xa0HTTP/1.1\r\n",
    "leading-space": b" GET /relayed-lead HTTP/1.1\r\n",
    "http-0.9-trailing-vt": b"GET /relayed-09\x0b\r\n",
}


@pytest.mark.parametrize("separator", sorted(ODD_SEPARATORS))
def test_plain_http_in_a_relayed_tunnel_is_judged_whatever_splits_its_request_line(
    lab: Lab, separator: str
) -> None:
    """A request line the relay did not take for HTTP was relayed as bytes: the upstream read
    it, and went to the site its Host named."""
    line = ODD_SEPARATORS[separator]
    path = line.decode("latin-1").split()[1]
    with _relayed(lab, lab.http) as sock:
        sock.settimeout(5)
        sock.sendall(line + f"Host: stranger.test:{lab.http}\r\n\r\n".encode())
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert lab.seen_upstream(path) == []
    assert answer.startswith((b"HTTP/1.1 403 ", b"HTTP/1.1 400 ")), answer[:300]


def test_plain_http_behind_a_proxy_protocol_header_in_a_relayed_tunnel_goes_nowhere(
    lab: Lab,
) -> None:
    """A PROXY protocol header is no request line: the relay took the tunnel for another
    protocol and relayed it as bytes. A front that accepts the header where it comes skips it
    and routes the request after it by its Host: another site than the tunnel's, unjudged."""
    header = b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 80\r\n"
    with _relayed(lab, lab.http) as sock:
        sock.settimeout(5)
        sock.sendall(header + get("/behind-proxy-header", f"stranger.test:{lab.http}"))
        with contextlib.suppress(TimeoutError, ConnectionError):
            while sock.recv(65536):
                pass
    assert lab.seen_upstream("/behind-proxy-header") == []
    assert any(
        e.rule == "name-mismatch" and "PROXY protocol" in e.reason for e in read_audit(lab.audit)
    )


def test_plain_http_in_a_relayed_tunnel_naming_its_host_passes(lab: Lab) -> None:
    with _relayed(lab, lab.http) as sock:
        for path in ("/relayed-plain-1", "/relayed-plain-2"):  # kept alive: each one judged
            assert exchange(sock, get(path, f"other.test:{lab.http}"))[0] == 200
        status, body = _raw(sock, get("/fronted-second", f"stranger.test:{lab.http}"))
    assert status == 403 and "name-mismatch" in body, body
    assert [len(lab.seen_upstream(p)) for p in ("/relayed-plain-1", "/relayed-plain-2")] == [1, 1]
    assert lab.seen_upstream("/fronted-second") == []


# --------------------------------------------------------------------------- secret echo


def _read_chunked_or_sized(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """(status, head, decoded body) of one response, chunked or sized."""
    status, head, rest = read_http_head(sock)
    if b"transfer-encoding: chunked" not in head.lower():
        body = rest
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += sock.recv(65536)
        return status, head, body
    body, buf = b"", rest
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        size_line, _, buf = buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(buf) < size + 2:
            buf += sock.recv(65536)
        body, buf = body + buf[:size], buf[size + 2 :]
        if size == 0:
            return status, head, body


def _reflect(lab: Lab, mode: str) -> tuple[int, bytes, bytes]:
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(get(f"/reflect/{mode}", host, AUTH, "Accept-Encoding: gzip, br"))
        return _read_chunked_or_sized(sock)


@pytest.mark.parametrize("mode", ["header", "encoded", "gzip", "chunked"])
def test_the_bound_host_echoing_the_secret_gives_the_agent_the_placeholder(
    lab: Lab, mode: str
) -> None:
    status, head, body = _reflect(lab, mode)
    assert status == 200
    assert REAL.encode() not in head + body
    assert f"X-Seen-Authorization: Bearer {PLACEHOLDER}".encode() in head
    if mode == "chunked":
        assert body.count(PLACEHOLDER.encode()) == 32 and len(body) > 2 * 1024 * 1024
    elif mode == "gzip":
        assert b"content-encoding" not in head.lower()
        assert body == f"error: bad token Bearer {PLACEHOLDER}\n".encode()
    else:
        assert PLACEHOLDER.encode() in body


def test_the_proxy_asks_the_bound_host_for_identity_encoding(lab: Lab) -> None:
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        status, seen = exchange(sock, get("/", host, AUTH, "Accept-Encoding: gzip, br"))
    assert status == 200 and isinstance(seen, dict)
    assert seen["headers"]["Accept-Encoding"] == "identity"  # type: ignore[index]


def test_a_compressed_stream_from_the_bound_host_is_refused_with_502(lab: Lab) -> None:
    status, head, body = _reflect(lab, "gzip-stream")
    assert status == 502 and b"response-not-inspectable" in head + body
    assert REAL.encode() not in head + body
    deadline = time.monotonic() + 10  # the line is written once the dropped body has ended
    while time.monotonic() < deadline:
        audit = read_audit(lab.audit)
        if any(e.rule == "response-not-inspectable" and e.decision == "deny" for e in audit):
            return
        time.sleep(0.05)
    raise AssertionError("the refused response was not logged")


# --------------------------------------------------------------------------- crashes, names


def _raw(sock: socket.socket, head: bytes) -> tuple[int, str]:
    sock.sendall(head)
    status, _, body = read_http_response(sock)
    return status, body.decode("utf-8", "replace")


# '¹' (sent as UTF-8) passes str.isdigit() and makes int() raise: the name check crashed, and
# mitmproxy let the request through unchecked, the real value with it, naming another host.
SUPERSCRIPT_PORT = b":\xc2\xb9"


def test_a_host_header_whose_port_is_no_number_is_refused_in_a_tunnel(lab: Lab) -> None:
    with tunnel(lab, "secret.test") as sock:
        status, body = _raw(
            sock,
            b"GET /superscript HTTP/1.1\r\nHost: other.test"
            + SUPERSCRIPT_PORT
            + f"\r\n{AUTH}\r\n\r\n".encode(),
        )
    assert status == 403 and "name-mismatch" in body, body
    assert lab.seen_upstream("/superscript") == []


def test_a_host_header_whose_port_is_no_number_is_refused_on_plain_http(lab: Lab) -> None:
    with _connect(lab) as sock:
        status, body = _raw(
            sock,
            f"GET http://other.test:{lab.http}/superscript-plain HTTP/1.1\r\n".encode()
            + b"Host: stranger.test"
            + SUPERSCRIPT_PORT
            + b"\r\n\r\n",
        )
    assert status == 403 and "name-mismatch" in body, body
    assert lab.seen_upstream("/superscript-plain") == []


@pytest.mark.parametrize(
    ("version", "host"), [("HTTP/1.0", b""), ("HTTP/1.1", b""), ("HTTP/1.1", b"Host:\r\n")]
)
def test_a_request_without_a_host_name_gets_its_destinations(
    lab: Lab, version: str, host: bytes
) -> None:
    """Without a Host header the upstream would pick its default virtual host (on a shared
    front, maybe another tenant's) for the request carrying the real value."""
    path = f"/hostless-{version[-1]}-{len(host)}"
    with tunnel(lab, "secret.test") as sock:
        status, _ = _raw(
            sock, f"GET {path} {version}\r\n".encode() + host + f"{AUTH}\r\n\r\n".encode()
        )
    with _connect(lab) as sock:
        plain, _ = _raw(
            sock,
            f"GET http://other.test:{lab.http}{path}-plain {version}\r\n".encode() + host + b"\r\n",
        )
    assert status == plain == 200
    (seen,) = lab.seen_upstream(path)
    assert seen["headers"]["Host"] == f"secret.test:{lab.https}"
    assert seen["headers"]["Authorization"] == f"Bearer {REAL}"
    (seen_plain,) = lab.seen_upstream(f"{path}-plain")
    assert seen_plain["headers"]["Host"] == f"other.test:{lab.http}"


# Requests framed the ways an agent may try to carry the real value elsewhere inside a tunnel
# to the bound host, with the status each gets: a second request pipelined behind the first,
# a second Host field or one padded with tabs naming another host, a URL with userinfo naming
# another, a CONNECT inside the TLS tunnel, the placeholder split over two Cookie fields.
ODD_FRAMINGS: dict[str, tuple[str, list[int]]] = {
    "pipelined": (
        "GET /odd-pipelined HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n"
        "GET /odd-pipelined-2 HTTP/1.1\r\nHost: {host}\r\n\r\n",
        [200, 200],
    ),
    "two-host-fields": (
        "GET /odd-two-hosts HTTP/1.1\r\nHost: {host}\r\nHost: {other}\r\n{auth}\r\n\r\n",
        [403],
    ),
    "tab-padded-host": ("GET /odd-tab HTTP/1.1\r\nHost:\t{other}\t\r\n{auth}\r\n\r\n", [403]),
    "userinfo": (
        "GET https://{host}@{other}/odd-userinfo HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n",
        [400],
    ),
    "connect-in-tunnel": ("CONNECT {other} HTTP/1.1\r\nHost: {other}\r\n{auth}\r\n\r\n", [400]),
    "cookie-fields": (
        "GET /odd-cookies HTTP/1.1\r\nHost: {host}\r\nCookie: a={placeholder}\r\n"
        "Cookie: b={placeholder}\r\n\r\n",
        [403],  # Cookie is not among the secret's headers
    ),
}


@pytest.mark.parametrize("framing", sorted(ODD_FRAMINGS))
def test_an_oddly_framed_request_never_carries_the_real_value_elsewhere_or_back(
    lab: Lab, framing: str
) -> None:
    """Each answer the agent gets holds the placeholder at most; where the real value went is
    checked for all of them by test_zz_the_real_value_reached_the_bound_host_only."""
    template, statuses = ODD_FRAMINGS[framing]
    head = template.format(
        host=f"secret.test:{lab.https}",
        other=f"other.test:{lab.https}",
        auth=AUTH,
        placeholder=PLACEHOLDER,
    )
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(head.encode())
        answers = [read_http_response(sock) for _ in statuses]
    assert [status for status, _, _ in answers] == statuses, answers
    for _, answer_head, body in answers:
        assert REAL.encode() not in answer_head + body
    if statuses[0] != 200 and "/odd-" in head:  # refused by the proxy: nothing went upstream
        assert lab.seen_upstream("/odd-" + head.split("/odd-", 1)[1].split(" ", 1)[0]) == []


# A header value with a bare CR (or a folded line, NUL) is one field to mitmproxy and two to
# upstreams that split lines there (Python's http.server does, on CR): here it hides a second
# Content-Length from the proxy.
SMUGGLED_FIELDS = {
    "bare-cr": b"X-Pad: a\rContent-Length: 0\r\n",
    "folded": b"X-Pad: a\r\n Content-Length: 0\r\n",
    "nul": b"X-Pad: a\x00Content-Length: 0\r\n",
}


@pytest.mark.parametrize("field", sorted(SMUGGLED_FIELDS))
def test_a_field_an_upstream_may_split_is_refused_before_the_real_value_rides_on(
    lab: Lab, field: str
) -> None:
    """Request smuggling to the bound host: the upstream reads the hidden Content-Length: 0,
    takes the body the proxy sent as a request of its own (to another host on the same front),
    and that request's body swallows the agent's next request, the real value in it."""
    host = f"secret.test:{lab.https}"
    other = f"other.test:{lab.https}"
    path = f"/smuggle-{field}"
    captor = f"POST {path}-captured HTTP/1.1\r\nHost: {other}\r\nContent-Length: 400\r\n\r\n"
    first = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n".encode()
        + SMUGGLED_FIELDS[field]
        + f"Content-Length: {len(captor)}\r\n\r\n{captor}".encode()
    )
    with tunnel(lab, "secret.test") as sock:
        sock.settimeout(5)
        status, body = _raw(sock, first)
        if status == 200:
            sock.sendall(get("/carrier", host, AUTH, "X-Fill: " + "f" * 400))
            with contextlib.suppress(TimeoutError, ConnectionError):
                read_http_response(sock)
    for seen in lab.seen_upstream(f"{path}-captured"):
        assert REAL not in json.dumps(seen), seen
    assert status == 403 and "malformed-field" in body, body
    assert lab.seen_upstream(path) == []


def test_a_field_an_upstream_may_split_is_refused_on_plain_http(lab: Lab) -> None:
    """The same on plain HTTP: the hidden request would name a host the allowlist never saw."""
    captor = "GET /smuggled-plain HTTP/1.1\r\nHost: stranger.invalid\r\n\r\n"
    with _connect(lab) as sock:
        status, body = _raw(
            sock,
            f"POST http://other.test:{lab.http}/smuggle-plain HTTP/1.1\r\n".encode()
            + f"Host: other.test:{lab.http}\r\n".encode()
            + SMUGGLED_FIELDS["bare-cr"]
            + f"Content-Length: {len(captor)}\r\n\r\n{captor}".encode(),
        )
    assert status == 403 and "malformed-field" in body, body
    assert lab.seen_upstream("/smuggled-plain") == []


# mitmproxy relays what follows the TLS handshake as raw bytes when its first line does not look
# like HTTP to it (no space in it, no three letters first) and the client offered no ALPN; an
# upstream may still read a request there (Python's http.server splits a request line on tabs).
RAW_GUESSES = {
    "tab-separated": "GET\t/raw-tab\tHTTP/1.1\r\nHost: {other}\r\nX-Seen: a b\r\n\r\n",
    "vertical-tab-separated": "GET\x0b/raw-vt\x0bHTTP/1.1\r\nHost: {other}\r\n\r\n",
    # nginx and h11 read this method (a token) and route by its Host.
    "method-with-a-dash": "M-SEARCH /raw-dash HTTP/1.1\r\nHost: {other}\r\n\r\n",
}


@pytest.mark.parametrize("guess", sorted(RAW_GUESSES))
def test_bytes_after_the_handshake_are_read_as_http_never_relayed_unjudged(
    lab: Lab, guess: str
) -> None:
    """A request mitmproxy took for another protocol went to the bound host's front as bytes,
    its Host naming another site and its framing unchecked (Content-Length beside
    Transfer-Encoding, which mitmproxy refuses in a request it reads)."""
    request = RAW_GUESSES[guess].format(other=f"other.test:{lab.https}")
    path = request.split("/", 1)[1].split(request[request.index("/") - 1], 1)[0]
    with tunnel(lab, "secret.test") as sock:
        sock.settimeout(5)
        sock.sendall(request.encode())
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert lab.seen_upstream(f"/{path}") == []
    assert answer.startswith(b"HTTP/1.1 403 ") and b"name-mismatch" in answer, answer[:300]


def test_an_upgraded_connection_from_the_bound_host_carries_the_placeholder(lab: Lab) -> None:
    """The bound host answers 101 and quotes the handshake on the upgraded connection, the
    value cut between two writes: mitmproxy relays it as raw bytes, past the HTTP scrubbing.
    It is cut between two fragments of one WebSocket message too, a frame header between its
    halves: scrubbing the raw bytes missed it, and the agent's client joined the halves."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(
            get("/reflect/upgrade", host, AUTH, "Connection: Upgrade", "Upgrade: websocket")
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 101 ")
    messages = websocket_messages(received.partition(b"\r\n\r\n")[2])
    assert messages == [f"seen: Bearer {PLACEHOLDER}\n".encode()], received
    (seen,) = lab.seen_upstream("/reflect/upgrade")
    assert seen["headers"]["Authorization"] == f"Bearer {REAL}"


def _client_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """One masked frame, as a WebSocket client sends it (RFC 6455 5.3)."""
    mask = b"\x5a\xa5\x3c\xc3"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


def _until(sock: socket.socket, data: bytes, marker: bytes) -> bytes:
    """Read on until `marker` has arrived; what arrived before it (and `data` first)."""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data.partition(marker)[0]


@contextlib.contextmanager
def _echo_socket(lab: Lab) -> Iterator[tuple[ssl.SSLSocket, bytes]]:
    """An upgraded connection to the bound host's WebSocket echo (frame for frame), and what
    already arrived after the 101."""
    upgrade = ("Connection: Upgrade", "Upgrade: websocket")
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(get("/reflect/upgrade?echo", f"secret.test:{lab.https}", AUTH, *upgrade))
        status, _, rest = read_http_head(sock)
        assert status == 101
        yield sock, rest


_PING = b"\x89\x00"  # an empty ping, as the proxy frames it to the agent


def test_an_echoed_fragment_does_not_show_whether_it_ends_like_the_value(lab: Lab) -> None:
    """The agent sends a message fragment ending in a guess, then a ping, to the bound host's
    echo: what the proxy holds back of the echoed fragment (until the rest of the message)
    must not depend on whether the guess begins the real value, or the agent reads the value
    out a byte at a time."""
    relayed = []
    for guess in (REAL[:8], "zzzzzzzz"):
        with _echo_socket(lab) as (sock, rest):
            sock.sendall(_client_frame(b"x" * 40 + guess.encode(), fin=False))
            sock.sendall(_client_frame(b"", opcode=9))
            relayed.append(_until(sock, rest, _PING))
            sock.sendall(_client_frame(b"!", opcode=0) + _client_frame(b"\x03\xe8", opcode=8))
    assert len(relayed[0]) == len(relayed[1]), relayed


def test_what_the_agent_sends_on_an_upgraded_connection_is_not_substituted(lab: Lab) -> None:
    """Real values go into request headers only: a WebSocket message to the bound host that
    carries the placeholder reaches it as the agent sent it."""
    sent = f"token {PLACEHOLDER}".encode()
    with _echo_socket(lab) as (sock, rest):
        sock.sendall(_client_frame(sent, opcode=2) + _client_frame(b"\x03\xe8", opcode=8))
        _until(sock, rest, b"\x88\x02\x03\xe8")  # the close echoed
    frames = lab.seen_upstream("/reflect/upgrade?echo#frame")
    assert frames[-2:] == [
        {"path": "/reflect/upgrade?echo#frame", "body": sent.decode()},
        {"path": "/reflect/upgrade?echo#frame", "body": "\x03\xe8"},
    ]


def _chunked_with_trailer(target: str, host: str, *headers: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", *headers, "Transfer-Encoding: chunked"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + f"3\r\nabc\r\n0\r\nX-Signature: {PLACEHOLDER}\r\n\r\n".encode()


def _send_or_hang(sock: socket.socket, request: bytes) -> int | None:
    """The status the proxy answers with, or None when it leaves the connection unanswered."""
    sock.settimeout(3)
    try:
        return _raw(sock, request)[0]
    except (TimeoutError, ConnectionError):
        return None


def test_a_placeholder_in_request_trailers_goes_nowhere(lab: Lab) -> None:
    """Trailers follow a chunked body. mitmproxy 11 does not relay HTTP/1 request trailers at
    all (its HTTP/1 layer raises and leaves the connection unanswered); should a later version
    relay them, `SecretSubstitution.request` refuses a placeholder in them to any host."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        bound = _send_or_hang(sock, _chunked_with_trailer("/trailer-bound", host, AUTH))
    with _connect(lab) as sock:
        target = f"http://other.test:{lab.http}/trailer-plain"
        plain = _send_or_hang(sock, _chunked_with_trailer(target, f"other.test:{lab.http}"))
    assert bound in (None, 403) and plain in (None, 403)
    assert lab.seen_upstream("/trailer-bound") == lab.seen_upstream("/trailer-plain") == []


def test_an_unending_response_head_gets_502_naming_the_limit(lab: Lab) -> None:
    """An upstream the agent controls answers one small request with 8 MiB of headers;
    mitmproxy would buffer them whole (and pass them on)."""
    with _connect(lab) as sock:
        target = f"http://other.test:{lab.http}/endless-head/{8 * 1024 * 1024}"
        status, body = _raw(sock, get(target, f"other.test:{lab.http}"))
    assert status == 502 and "response-head-limit" in body, body[:300]
    assert str(MAX_RESPONSE_HEAD) in body


@pytest.mark.parametrize("mode", sorted(BROKEN_REFLECTIONS))
def test_an_unparseable_answer_quoting_the_value_reaches_neither_agent_nor_log(
    lab: Lab, mode: str
) -> None:
    """mitmproxy's parser errors quote the bytes they choke on, in the 502 page it sends the
    agent and in the flow's error (the audit log's reason): a bound host answering garbage that
    quotes the Authorization it got handed the real value to both."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        sock.settimeout(5)
        sock.sendall(get(f"/reflect/{mode}", host, AUTH))
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionError):
            pass
    (seen,) = lab.seen_upstream(f"/reflect/{mode}")
    assert seen["headers"]["Authorization"] == f"Bearer {REAL}"
    assert REAL.encode() not in received
    assert REAL not in lab.audit.read_text()
    if mode != "bad-chunk":  # its head has gone to the agent already: the error is logged only
        assert received.startswith(b"HTTP/1.1 502 ") and PLACEHOLDER.encode() in received


def _closed_at_once(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def test_connections_past_the_cap_are_closed(lab: Lab) -> None:
    """Each connection may hold a request head of up to 64 KiB unparsed: without a cap on
    open connections the agent grows the proxy by that much per connection."""
    partial = b"GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\nX-Big: " + b"a" * 60_000
    held = []
    try:
        for _ in range(MAX_CLIENT_CONNECTIONS):
            sock = _connect(lab)
            sock.sendall(partial)
            held.append(sock)
        with _connect(lab) as extra:
            assert _closed_at_once(extra)
        held.pop().close()
        status = None
        for _ in range(100):  # until the proxy has seen the close (bounded)
            with _connect(lab) as sock:
                sock.settimeout(10)
                try:
                    status, _ = _raw(sock, get(f"http://other.test:{lab.http}/capped", "x"))
                except ConnectionError:
                    time.sleep(0.05)
                    continue
            break
        assert status == 403  # answered (a Host mismatch), not closed
    finally:
        for sock in held:
            sock.close()


def test_many_headers_to_the_bound_host_cost_the_proxy_little(lab: Lab) -> None:
    """A 63 KiB head of 9 500 distinct header names with the placeholder: substituting name
    by name scanned every header for each name (over 30 s of the proxy's only thread here,
    during which no other connection was served). Now a second client is answered meanwhile,
    within its socket timeout, and the big request goes out with the real value."""
    host = f"secret.test:{lab.https}"
    many = [f"{i:03x}:" for i in range(0x100, 0x100 + 9_500)]  # "100:", 6 or 7 bytes a line
    request = get("/many-headers", host, AUTH, *many)
    assert len(request) < MAX_REQUEST_HEAD
    with tunnel(lab, "secret.test") as big:
        big.sendall(request)
        with _connect(lab) as other:
            quick, _ = _raw(other, get(f"http://other.test:{lab.http}/meanwhile", "x"))
        status, _, _ = read_http_response(big)
    assert quick == 403 and status == 200
    (seen,) = lab.seen_upstream("/many-headers")
    assert seen["headers"]["Authorization"] == f"Bearer {REAL}"
    assert len(seen["headers"]) > 9_500


def test_a_transfer_coded_answer_from_the_bound_host_never_carries_the_value(lab: Lab) -> None:
    """Transfer-Encoding: gzip, chunked from the bound host: mitmproxy de-chunks, leaves the
    gzip, and the proxy re-framed it as plain chunked; the agent could inflate the real value
    out of it. The agent's own "TE: gzip" is not passed on, and such an answer is refused."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(get("/reflect/te-gzip", host, AUTH, "TE: gzip", "Connection: close"))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    start = body.find(b"\x1f\x8b")
    if start >= 0:
        assert REAL.encode() not in zlib.decompressobj(31).decompress(body[start:])
    assert head.startswith(b"HTTP/1.1 502 ") and b"response-not-inspectable" in body, received
    (seen,) = lab.seen_upstream("/reflect/te-gzip")
    assert "TE" not in seen["headers"] and "te" not in seen["headers"]


@pytest.mark.parametrize(
    ("upgrade", "extra"),
    [
        # permessage-deflate: the host's messages would be compressed, past the scrubber
        ("websocket", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
        # mitmproxy drops an h2c offer; the host then switches to a protocol of its own
        # (h2c's HPACK would hide header values from the scrubber)
        ("h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"),
    ],
)
def test_an_upgrade_the_proxy_cannot_scrub_is_not_made(lab: Lab, upgrade: str, extra: str) -> None:
    host = f"secret.test:{lab.https}"
    path = f"/reflect/upgrade?{upgrade}"
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(get(path, host, AUTH, "Connection: Upgrade", f"Upgrade: {upgrade}", extra))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if b"response-not-inspectable" in received:
                break
    assert REAL.encode() not in received
    (seen,) = lab.seen_upstream(path)
    assert "Sec-WebSocket-Extensions" not in seen["headers"]
    if upgrade == "websocket":  # offered no compression, the host upgrades plainly
        assert received.startswith(b"HTTP/1.1 101 ")
        messages = websocket_messages(received.partition(b"\r\n\r\n")[2])
        assert messages == [f"seen: Bearer {PLACEHOLDER}\n".encode()], received
    else:
        assert received.startswith(b"HTTP/1.1 502 ") and b"response-not-inspectable" in received


def test_a_refused_upgrade_does_not_quote_the_real_value_the_host_echoed(lab: Lab) -> None:
    """The host switches to a protocol named by the real value it was sent. The refusal names
    the protocol the host switched to, in the audit log and the 502 page: scrubbed, or the log
    kept the real value."""
    host = f"secret.test:{lab.https}"
    path = "/reflect/upgrade?named"
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(get(path, host, AUTH, "Connection: Upgrade", "Upgrade: websocket"))
        received = b""
        while b"response-not-inspectable" not in received and (chunk := sock.recv(65536)):
            received += chunk
    assert received.startswith(b"HTTP/1.1 502 "), received
    assert REAL.encode() not in received, received
    entry = wait_for(
        lambda: next((e for e in read_audit(lab.audit) if _names_the_value(e.reason)), None),
        "the refused upgrade's audit line",
    )
    assert entry.rule == "response-not-inspectable"
    assert PLACEHOLDER in entry.reason and REAL not in entry.reason, entry.reason


@pytest.mark.parametrize(
    "routing",
    [
        "X-Forwarded-Host: other.test",
        "X-Forwarded-Host: secret.test, other.test",
        'Forwarded: for=10.0.0.1;host="other.test";proto=https',
        "X-Original-Host: other.test",
        "X-Host: other.test",
        "X-Original-URL: https://other.test/ok",
        "X-Rewrite-URL: //other.test/ok",
        "X_Forwarded_Host: other.test",  # HTTP_X_FORWARDED_HOST to a CGI or WSGI server
    ],
)
def test_a_routing_header_naming_another_host_never_carries_the_real_value(
    lab: Lab, routing: str
) -> None:
    """The request to the bound host also names another host in a header a shared front
    (CDN, reverse proxy) may route by instead of Host; the echo upstream routes by
    X-Forwarded-Host, as such a front does: the real value went to the other tenant."""
    host = f"secret.test:{lab.https}"
    path = f"/routed/{zlib.crc32(routing.encode())}"
    with tunnel(lab, "secret.test") as sock:
        status, body = exchange(sock, get(path, host, AUTH, routing))
    assert lab.seen_upstream(path) == []  # the other tenant saw nothing
    assert status == 403 and "routing-header" in str(body), body
    refused = [e for e in read_audit(lab.audit) if e.rule == "routing-header"]
    assert refused and all(e.decision == "deny" for e in refused)


def test_a_connection_routed_elsewhere_by_its_first_request_never_carries_the_real_value(
    lab: Lab,
) -> None:
    """A front that routes a connection by its first request: that request carries no value
    but names the other tenant in X-Forwarded-Host; the next one, clean, carries the value on
    the same upstream connection."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        first, body = exchange(sock, get("/first", host, "X-Forwarded-Host: other.test"))
        exchange(sock, get("/then", host, AUTH))
    for seen in lab.seen_upstream("/then"):
        assert seen["connection_tenant"] == "secret.test", seen
    assert first == 403 and "routing-header" in str(body), body


def test_a_routing_header_naming_the_destination_itself_passes(lab: Lab) -> None:
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        status, _ = exchange(sock, get("/routed/self", host, AUTH, f"X-Forwarded-Host: {host}"))
    assert status == 200
    (seen,) = lab.seen_upstream("/routed/self")
    assert seen["tenant"] == "secret.test"


@pytest.mark.parametrize("name", ["Sec-WebSocket-Key", "Sec_WebSocket_Key"])
def test_a_websocket_key_never_gets_the_real_value_hashed_back(lab: Lab, name: str) -> None:
    """The server answers Sec-WebSocket-Key with SHA-1(key + GUID) in Sec-WebSocket-Accept, a
    transform the scrubber cannot undo: with the real value as the key, the agent could test
    guesses of it offline. A CGI or WSGI server reads the header's name with '_' for '-'."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(
            get(
                "/reflect/upgrade",
                host,
                "Connection: Upgrade",
                "Upgrade: websocket",
                f"{name}: {PLACEHOLDER}",
            )
        )
        status, head, _ = read_http_head(sock)
    assert websocket_accept(REAL.encode()).encode() not in head, head
    assert status == 403 and b"secret-in-hashed-header" in head, head


def _digests(body: bytes) -> list[str]:
    return [
        hashlib.sha1(body).hexdigest(),
        base64.b64encode(hashlib.md5(body).digest()).decode(),
        base64.b64encode(hashlib.sha256(body).digest()).decode(),
    ]


@pytest.mark.parametrize("size", ["small", "big"])
def test_an_echo_never_comes_back_with_a_hash_of_the_real_value(lab: Lab, size: str) -> None:
    """The bound host echoes the value in its body and sends hashes of that body (ETag,
    Content-MD5, Repr-Digest). The agent gets the body with the placeholder; put a guess of the
    real value in its place and hash it: a match confirms the guess, offline."""
    host = f"secret.test:{lab.https}"
    target = "/reflect/digest" + ("?big" if size == "big" else "")
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(get(target, host, AUTH))
        status, head, body = _read_chunked_or_sized(sock)
    assert status == 200 and PLACEHOLDER.encode() in body
    guessed = body.replace(PLACEHOLDER.encode(), REAL.encode())
    leaked = [digest for digest in _digests(guessed) if digest.encode() in head]
    assert leaked == [], head


def _names_the_value(reason: str) -> bool:
    return "switched to" in reason and (PLACEHOLDER in reason or REAL in reason)


def test_zz_the_real_value_reached_the_bound_host_only(lab: Lab) -> None:
    """Across every attack above (this test runs last): the upstream's own log of what it
    received shows the real value only on TLS requests named secret.test, on its port."""
    requests = lab.upstream_requests()
    carrying = [r for r in requests if REAL in json.dumps(r)]
    assert carrying, "the control never delivered the real value"
    for request in carrying:
        assert (request["sni"], request["port"]) == ("secret.test", lab.https), request
        assert request["headers"]["Host"] == f"secret.test:{lab.https}", request
        assert request["tenant"] == request["connection_tenant"] == "secret.test", request


def _pieces(value: str, size: int = 6) -> list[bytes]:
    """The `size`-byte pieces of `value` that the placeholder does not share ("-live-")."""
    pieces = (value[i : i + size] for i in range(len(value) - size + 1))
    return [piece.encode() for piece in pieces if piece not in PLACEHOLDER]


def test_a_range_request_never_gets_a_piece_of_the_real_value(lab: Lab) -> None:
    """With Range the agent picks which bytes of an echo come back: "error: bad token Bearer "
    is 24 bytes, so bytes 24-29, 30-35, ... of the reflection are the real value six bytes at a
    time, pieces the scrubber cannot recognise. The proxy asks for the whole body instead."""
    host = f"secret.test:{lab.https}"
    start = len("error: bad token Bearer ")
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(
            get("/reflect/range", host, AUTH, f"Range: bytes={start}-{start + 5}", "If-Range: x")
        )
        status, _, body = read_http_response(sock)
    assert not any(piece in body for piece in _pieces(REAL)), body
    assert (status, body) == (200, f"error: bad token Bearer {PLACEHOLDER}\n".encode())
    (seen,) = lab.seen_upstream("/reflect/range")
    assert "Range" not in seen["headers"] and "If-Range" not in seen["headers"]


def test_partial_content_from_the_bound_host_is_refused(lab: Lab) -> None:
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        sock.sendall(get("/reflect/range?always", host, AUTH))
        status, head, body = read_http_response(sock)
    assert status == 502 and b"response-not-inspectable" in body
    assert not any(piece in head + body for piece in _pieces(REAL))


def _until_closed(sock: socket.socket) -> bytes:
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_an_upgrade_on_a_reopened_upstream_connection_is_scrubbed_too(lab: Lab) -> None:
    """The bound host closes an idle keep-alive connection; the agent's next request in the
    same tunnel goes out on a new upstream connection, and this one upgrades (101) and quotes
    the handshake. The upgraded bytes were judged by the id of the connection the CONNECT
    opened, which the new one does not have: they reached the agent unscrubbed."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        sock.settimeout(10)
        status, _ = exchange(sock, get("/hang-up/first", host, AUTH))
        assert status == 200
        wait_for(lambda: lab.seen_upstream("/hang-up/first") or None, "the first request")
        time.sleep(0.5)  # the proxy sees the upstream close the idle connection
        sock.sendall(
            get(
                "/reflect/upgrade?reopened", host, AUTH, "Connection: Upgrade", "Upgrade: websocket"
            )
        )
        received = _until_closed(sock)
    assert received.startswith(b"HTTP/1.1 101 "), received
    messages = websocket_messages(received.partition(b"\r\n\r\n")[2])
    assert messages == [f"seen: Bearer {PLACEHOLDER}\n".encode()], received


def test_a_refusal_never_quotes_a_header_the_real_value_was_put_in(lab: Lab) -> None:
    """The placeholder as the request's Content-Encoding: the proxy puts the real value there
    (the secret's headers list it), then cannot decode the body with that coding and refused
    the request quoting it, so the agent read the real value in the 403 page (and the audit
    log kept it), without the bound host doing anything."""
    host = f"secret.test:{lab.https}"
    request = get("/coding", host, f"Content-Encoding: {PLACEHOLDER}", body=b"x")
    with tunnel(lab, "secret.test") as sock:
        status, body = exchange(sock, request.replace(b"GET", b"POST", 1))
    assert status == 403 and "body-not-inspectable" in str(body), body
    assert REAL not in str(body) and REAL.lower() not in str(body).lower(), body
    entry = wait_for(
        lambda: next((e for e in read_audit(lab.audit) if "Content-Encoding" in e.reason), None),
        "the refusal's audit line",
    )
    assert REAL.lower() not in entry.reason.lower(), entry.reason
    assert lab.seen_upstream("/coding") == []


# A request to the bound host whose body the host leaves unread ("CL.0": a handler that
# expects none answers without reading it), so that the host reads the body as the next
# request on the connection: a head for the other tenant on the same front, which takes in
# the agent's next request, as its body or as its header fields.
SMUGGLED_HEADS = {
    "in-its-body": "POST /log/{} HTTP/1.1\r\nHost: other.test\r\nContent-Length: 200\r\n\r\n",
    "as-its-headers": "GET /log/{} HTTP/1.1\r\nHost: other.test\r\nX-Swallowed: ",
}


@pytest.mark.parametrize("pipelined", [False, True], ids=["in-turn", "pipelined"])
@pytest.mark.parametrize("how", sorted(SMUGGLED_HEADS))
def test_a_body_the_bound_host_leaves_unread_never_frames_a_request_with_the_real_value(
    lab: Lab, how: str, pipelined: bool
) -> None:
    """The agent's first request carries no value, and a body the bound host leaves unread;
    its next one, with the placeholder, went out on the same upstream connection, right after
    that body: the host read the two as one request to the other tenant, real value and all."""
    host = f"secret.test:{lab.https}"
    case = f"{how}-{'pipelined' if pipelined else 'in-turn'}"
    after = f"/after-unread-body/{case}"
    first = get(f"/ignores-body/{case}", host, body=SMUGGLED_HEADS[how].format(case).encode())
    # Long enough to fill the smuggled request's body, the value within its first bytes.
    then = get(after, host, AUTH, "X-Pad: " + "p" * 300)
    with tunnel(lab, "secret.test") as sock:
        if pipelined:  # both in one write: the proxy reads the second once the first is done
            sock.sendall(first + then)
            status, _, _ = read_http_response(sock)
            assert status == 200
            status, seen = exchange(sock, b"")
        else:
            status, _ = exchange(sock, first)
            assert status == 200
            status, seen = exchange(sock, then)
    # The host reads the smuggled head once the proxy has closed the connection it came on.
    (other,) = wait_for(lambda: lab.seen_upstream(f"/log/{case}") or None, "the smuggled head")
    assert REAL not in json.dumps(other), other
    assert status == 200 and isinstance(seen, dict) and seen["path"] == after, seen
    (received,) = lab.seen_upstream(after)
    assert received["headers"]["Authorization"] == f"Bearer {REAL}"
    assert received["tenant"] == received["connection_tenant"] == "secret.test", received
    assert received["connection_request"] == 1 and received["sni"] == "secret.test", received


def test_only_a_request_with_the_real_value_after_a_body_gets_a_new_upstream_connection(
    lab: Lab,
) -> None:
    """The cost of the defence above: one new upstream connection for a request with the value
    that follows a body on the tunnel; requests without one, or after none, reuse it."""
    host = f"secret.test:{lab.https}"
    sent = [
        get("/reuse/1", host, AUTH),
        get("/reuse/2", host, AUTH, "Content-Length: 0"),
        get("/reuse/3", host, body=b"a body").replace(b"GET", b"POST", 1),
        get("/reuse/4", host),
        get("/reuse/5", host, AUTH),
        get("/reuse/6", host, AUTH),
    ]
    with tunnel(lab, "secret.test") as sock:
        for request in sent:
            status, _ = exchange(sock, request)
            assert status == 200
    counted = [lab.seen_upstream(f"/reuse/{n}")[0]["connection_request"] for n in range(1, 7)]
    assert counted == [1, 2, 3, 4, 1, 2]


# Rounds of requests after each of which the upstream connection under the tunnel is closed.
CLOSING_ROUNDS: dict[str, Callable[[str, int], list[bytes]]] = {
    # mitmproxy sends a request claiming HTTP/2 on an HTTP/1 connection used for it alone.
    "request-line-claims-http2": lambda host, n: [
        _claiming_http2(f"https://{host}/claims-h2/{n}", host)
    ],
    # The request with the value goes on a new connection, the one with the body closed.
    "value-after-a-body": lambda host, n: [
        get(f"/body/{n}", host, body=b"a body").replace(b"GET", b"POST", 1),
        get(f"/value/{n}", host, AUTH),
    ],
}
ROUNDS = 150


@pytest.mark.parametrize("how", sorted(CLOSING_ROUNDS))
def test_upstream_connections_closed_under_one_tunnel_are_let_go(lab: Lab, how: str) -> None:
    """mitmproxy kept every upstream connection it opened for a client connection until that
    one ended, closed ones with their TLS state (57 kB), and looked through all of them for
    each request: one tunnel carrying 6000 requests claiming HTTP/2.0 grew the bundle by
    6 MiB, and its requests took half as long again by the end."""
    host = f"secret.test:{lab.https}"
    with tunnel(lab, "secret.test") as sock:
        for n in range(ROUNDS):
            for request in CLOSING_ROUNDS[how](host, n):
                status, _ = exchange(sock, request)
                assert status == 200, (n, request)
        held = lab.held_upstreams(sock)
    assert held <= 2, f"{held} upstream connections held after {ROUNDS} rounds"


# Framing a proxy and a host may read two ways (RFC 9112 6.3: TE.CL, CL.TE and their kin).
AMBIGUOUS_FRAMING = {
    "length-and-chunked": "Content-Length: 4\r\nTransfer-Encoding: chunked",
    "two-lengths": "Content-Length: 4\r\nContent-Length: 40",
    "length-list": "Content-Length: 4, 4",
    "signed-length": "Content-Length: +4",
    "two-codings": "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
    "unknown-coding": "Transfer-Encoding: xchunked",
    "chunked-not-last": "Transfer-Encoding: chunked, identity",
}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS_FRAMING))
def test_a_request_framed_two_ways_goes_nowhere(lab: Lab, name: str) -> None:
    """mitmproxy answers these 400 before any hook, and sends nothing on (the host could have
    read another request where the proxy read a body, the real value in the one after)."""
    host = f"secret.test:{lab.https}"
    path = f"/framed/{name}"
    request = get(path, host, AUTH, AMBIGUOUS_FRAMING[name]) + b"0\r\n\r\n"
    with tunnel(lab, "secret.test") as sock:
        status, _ = exchange(sock, request.replace(b"GET", b"POST", 1))
    assert status == 400
    assert lab.seen_upstream(path) == []
