"""`[egress] intercept = "all"`: the real proxy on loopback opens every HTTPS tunnel.

A shared front (a CDN, a cloud load balancer) serves many sites on the same addresses and picks
one by the `Host` header of each request, which inside TLS the proxy sees only when it opens
the tunnel. By default a tunnel to a host bound to no secret is relayed once its TLS server
name checks out, so `CONNECT other.test` with `Host: stranger.test` inside the TLS reaches
whatever the front serves as stranger.test (domain fronting). With `intercept = "all"` each
request inside is judged like a request to a secret's host. `other.test` is allowed and bound
to no secret; the upstream is the echo server of tests/bundle_helpers.py, which logs the
`Host` and TLS name each request reached it with. BOTTLE_LIVE_PROXY_SRC=/other/checkout runs
that checkout's proxy (to watch the attacks succeed against one without the setting).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bottle_engine.bundle.audit import read_audit
from bottle_engine.manifest.schema import INTERCEPT_ALL
from tests.ask_lab import BOUND, AskLab, ask_lab
from tests.ask_lab import PLACEHOLDER as ASK_PLACEHOLDER
from tests.bundle_helpers import LiveLab, live_egress_lab, read_http_response, websocket_frame
from tests.polling import wait_for

PLACEHOLDER = "bb-intercept-placeholder-3f9a"
REAL = "real-intercept-value-b71c"


def _denied(lab: LiveLab, rule: str) -> bool:
    return any(e.rule == rule and e.decision == "deny" for e in read_audit(lab.audit))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLab]:
    root = tmp_path_factory.mktemp("egress-intercept-all")
    with live_egress_lab(root, PLACEHOLDER, REAL, egress_intercept=INTERCEPT_ALL) as running:
        yield running


def _connect(lab: LiveLab, host: str, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", lab.proxy), timeout=20)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    assert read_http_response(sock, head_only=True)[0] == 200
    return sock


def _opened(lab: LiveLab, sni: str | None = "other.test", *, verify: bool = False) -> ssl.SSLSocket:
    """TLS through a tunnel to other.test. A hostile agent checks no certificate (whoever
    answers will do); `verify`: the agent's tools, which trust the bottle's CA."""
    context = ssl.create_default_context(cafile=str(lab.bottle_ca))
    context.check_hostname = verify
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(_connect(lab, "other.test", lab.https), server_hostname=sni)


def _get(path: str, host: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", f"Host: {host}", *headers]) + "\r\n\r\n").encode()


def _ask(sock: socket.socket, request: bytes) -> tuple[int, str]:
    sock.sendall(request)
    status, _, body = read_http_response(sock)
    return status, body.decode("utf-8", "replace")


def test_a_request_inside_tls_naming_another_site_on_the_front_goes_nowhere(lab: LiveLab) -> None:
    """Domain fronting: the tunnel and the TLS server name say other.test, the request inside
    names stranger.test. Relayed, it reached the upstream as stranger.test."""
    with _opened(lab) as tls:
        status, body = _ask(tls, _get("/fronted-inside-tls", "stranger.test"))
    assert status == 403 and "name-mismatch" in body, body
    assert lab.seen_upstream("/fronted-inside-tls") == []


def test_tls_without_a_server_name_cannot_pick_the_site_inside_either(lab: LiveLab) -> None:
    """No SNI: the front's default certificate, then any site named in the Host header."""
    with _opened(lab, sni=None) as tls:
        status, body = _ask(tls, _get("/fronted-no-sni", "stranger.test"))
    assert status == 403 and "name-mismatch" in body, body
    assert lab.seen_upstream("/fronted-no-sni") == []


def test_each_request_on_an_opened_tunnel_is_judged_on_its_own(lab: LiveLab) -> None:
    """The allowed host's own requests pass and reach it under its name and TLS name (the agent
    trusted the bottle's CA); a later request on the same connection naming another site does
    not."""
    with _opened(lab, verify=True) as tls:
        assert _ask(tls, _get("/opened-1", f"other.test:{lab.https}"))[0] == 200
        assert _ask(tls, _get("/opened-2", f"other.test:{lab.https}"))[0] == 200
        status, body = _ask(tls, _get("/fronted-second", "stranger.test"))
    assert status == 403 and "name-mismatch" in body, body
    for path in ("/opened-1", "/opened-2"):
        (seen,) = lab.seen_upstream(path)
        assert seen["sni"] == "other.test" and seen["headers"]["Host"].startswith("other.test")
    assert lab.seen_upstream("/fronted-second") == []


def test_a_request_after_an_empty_line_is_judged_too(lab: LiveLab) -> None:
    """Servers skip empty lines before a request line; mitmproxy took bytes that do not start
    with a method for another protocol and relayed them raw, unjudged, to the upstream."""
    with _opened(lab) as tls:
        status, body = _ask(tls, b"\r\n" + _get("/fronted-after-crlf", "stranger.test"))
    assert status == 403 and "name-mismatch" in body, body
    assert lab.seen_upstream("/fronted-after-crlf") == []


def test_a_routing_header_naming_another_site_goes_nowhere(lab: LiveLab) -> None:
    """A front that trusts X-Forwarded-Host routes by it; refused on opened tunnels as on a
    secret's host."""
    with _opened(lab) as tls:
        status, body = _ask(
            tls,
            _get(
                "/fronted-by-header", f"other.test:{lab.https}", "X-Forwarded-Host: stranger.test"
            ),
        )
    assert status == 403 and "routing-header" in body, body
    assert lab.seen_upstream("/fronted-by-header") == []


def test_a_placeholder_inside_an_opened_tunnel_to_an_unbound_host_is_refused(lab: LiveLab) -> None:
    """Relayed, the placeholder went to other.test unseen; opened, it is refused like one
    sent to any other unbound host."""
    with _opened(lab) as tls:
        status, body = _ask(
            tls,
            _get(
                "/placeholder-elsewhere",
                f"other.test:{lab.https}",
                f"Authorization: Bearer {PLACEHOLDER}",
            ),
        )
    assert status == 403 and "secret-wrong-host" in body, body
    assert lab.seen_upstream("/placeholder-elsewhere") == []


def test_the_bound_host_still_gets_the_real_value(lab: LiveLab) -> None:
    context = ssl.create_default_context(cafile=str(lab.bottle_ca))
    sock = _connect(lab, "secret.test", lab.https)
    with context.wrap_socket(sock, server_hostname="secret.test") as tls:
        auth = f"Authorization: Bearer {PLACEHOLDER}"
        assert _ask(tls, _get("/bound", f"secret.test:{lab.https}", auth))[0] == 200
    (seen,) = lab.seen_upstream("/bound")
    assert seen["headers"]["Authorization"] == f"Bearer {REAL}"


def test_a_protocol_that_is_neither_tls_nor_http_is_still_relayed(lab: LiveLab) -> None:
    """SSH and databases through an allowed host keep working: only TLS is opened. The echo
    upstream's own answer (Python's http.server naming the line it could not read) comes back,
    not one of the proxy's."""
    with _connect(lab, "other.test", lab.http) as sock:
        sock.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        received = b""
        while b"\r\n\r\n" not in received and len(received) < 64 * 1024:
            piece = sock.recv(4096)
            if not piece:
                break
            received += piece
    assert b"Bad request syntax" in received or b"Bad request version" in received, received


def test_another_protocol_inside_opened_tls_is_relayed_and_recorded(lab: LiveLab) -> None:
    """Bytes inside the TLS that no server reads as HTTP go to the upstream as they are, and
    the audit log records the relay when it opens and when it closes (mitmproxy's own relay
    there wrote nothing)."""
    with _opened(lab) as tls:
        tls.sendall(b"\x00\x01not-http\r\n")
        answer = b""
        while piece := tls.recv(4096):  # the upstream answers and closes
            answer += piece
    assert b"Bad request syntax" in answer, answer  # http.server's page, not the proxy's

    def recorded() -> list[str]:
        entries = read_audit(lab.audit)
        return [e.stage for e in entries if e.kind == "tunnel" and e.host == "other.test"]

    wait_for(lambda: recorded()[-2:] == ["open", "close"], "the relay's two lines", timeout=10)


def test_a_tls_server_name_naming_another_host_is_refused(lab: LiveLab) -> None:
    with _opened(lab, sni="stranger.test") as tls:
        status, body = _ask(tls, _get("/fronted-by-sni", "stranger.test"))
    assert status == 403 and "SNI" in body, body
    assert lab.seen_upstream("/fronted-by-sni") == []
    wait_for(lambda: _denied(lab, "name-mismatch"), "the refusal in the audit log", timeout=10)


@pytest.fixture(scope="module")
def no_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLab]:
    """The same bottle holding no secret: nothing to scrub, every request still judged."""
    root = tmp_path_factory.mktemp("intercept-all-no-secrets")
    with live_egress_lab(
        root, PLACEHOLDER, REAL, egress_intercept=INTERCEPT_ALL, bind_secret=False
    ) as running:
        yield running


H2C_OFFER = ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABk")


def _switch_then_send(sock: socket.socket, host: str, path: str) -> int:
    """Ask to switch to h2c (the upstream, hostile, says 101 whatever it is offered); if it
    switched, send what a front speaking the new protocol would route by its own name. Once
    switched, mitmproxy relays raw bytes past every hook: none of them would be judged."""
    sock.sendall(_get(path, host, *H2C_OFFER))
    status = read_http_response(sock, head_only=True)[0]
    if status == 101:
        sock.sendall(websocket_frame(_get("/after-the-switch", "stranger.test")))
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            sock.recv(4096)  # the echo, or nothing
    return status


@pytest.mark.parametrize("carried", ["opened TLS", "plain HTTP"])
def test_a_switch_to_another_protocol_is_refused_where_nothing_is_bound(
    no_secrets: LiveLab, carried: str
) -> None:
    """h2c after a 101 is HTTP/2, whose requests a shared front routes by their own names:
    inside an opened tunnel, and on a plain request through the proxy, only a WebSocket (whose
    messages go to the application that accepted the handshake) may follow a 101."""
    path = "/reflect/upgrade?echo"
    if carried == "opened TLS":
        with _opened(no_secrets) as sock:
            status = _switch_then_send(sock, f"other.test:{no_secrets.https}", path)
    else:
        with socket.create_connection(("127.0.0.1", no_secrets.proxy), timeout=20) as sock:
            host = f"other.test:{no_secrets.http}"
            status = _switch_then_send(sock, host, f"http://{host}{path}")
    assert status == 502, status
    assert no_secrets.seen_upstream("/reflect/upgrade?echo#frame") == []
    offered = no_secrets.seen_upstream("/reflect/upgrade?echo")
    assert offered and all("Upgrade" not in r["headers"] for r in offered), offered
    wait_for(
        lambda: _denied(no_secrets, "response-not-inspectable"), "the refusal logged", timeout=10
    )


def test_a_websocket_is_still_let_through_where_nothing_is_bound(no_secrets: LiveLab) -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with _opened(no_secrets) as sock:
        sock.sendall(
            _get(
                "/reflect/upgrade?echo",
                f"other.test:{no_secrets.https}",
                "Connection: Upgrade",
                "Upgrade: websocket",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Extensions: permessage-deflate",
            )
        )
        assert read_http_response(sock, head_only=True)[0] == 101
        sock.sendall(websocket_frame(b"hello"))
        echoed = b""
        while b"hello" not in echoed:
            piece = sock.recv(4096)
            assert piece, echoed
            echoed += piece


@pytest.fixture(scope="module")
def asking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AskLab]:
    """A bottle with `ask = true` too: a host no rule lists waits for a person's answer."""
    root = tmp_path_factory.mktemp("ask-intercept-all")
    with ask_lab(root, egress_intercept=INTERCEPT_ALL) as running:
        yield running


def _through_approval(lab: AskLab, host: str, request: bytes) -> tuple[int, str]:
    """CONNECT to `host` (held until a person answers), then TLS unverified and `request`."""
    status, head, sock = lab.connect(host, lab.https)
    assert status == 200, head
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(sock, server_hostname=host) as tls:
        return _ask(tls, request)


def test_an_approved_host_is_opened_but_never_given_a_secret(asking: AskLab) -> None:
    """bound.test is a secret's host that no rule lists: only a person's answer lets it out,
    and a person's answer never binds a secret. Its tunnel is opened like every other here, so
    the placeholder inside is seen: refused, never swapped for the real value."""
    auth = f"Authorization: Bearer {ASK_PLACEHOLDER}"
    request = _get("/approved-bound", f"{BOUND}:{asking.https}", auth)
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(_through_approval, asking, BOUND, request)
        ask = asking.pending_for(BOUND, asking.https)
        answer = asking.cli("approve", ask.id, "--fingerprint", ask.fingerprint)
        assert answer.returncode == 0, answer.stderr
        status, body = held.result(timeout=60)
    assert status == 403 and "secret-wrong-host" in body, body
    assert asking.upstream_saw("/approved-bound") == []
    # The approval stands: the same host's requests without the placeholder pass, judged.
    status, body = _through_approval(asking, BOUND, _get("/approved", f"{BOUND}:{asking.https}"))
    assert status == 200, body
    status, body = _through_approval(asking, BOUND, _get("/approved-fronted", "stranger.test"))
    assert status == 403 and "name-mismatch" in body, body
    assert asking.upstream_saw("/approved-fronted") == []
