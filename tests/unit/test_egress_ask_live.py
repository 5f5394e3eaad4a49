"""`[egress] ask = true` on the real proxy (loopback, no daemon): a request to an unlisted host
is held until a person answers with the real `bottle-engine` CLI, then proceeds or is refused.

The held requests are sent from worker threads, as an agent's client would wait on them; the
person answers from the test thread. Each test uses host names of its own: approvals without
--once stand for the proxy's life (the module).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bottle_engine.approvals import ApprovalRequest
from tests.ask_lab import BOUND, PLACEHOLDER, REAL, AskLab, ask_lab, read_response

TIMEOUT = 8.0  # seconds the lab's proxy holds an ask


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AskLab]:
    with ask_lab(tmp_path_factory.mktemp("ask-live"), ask_timeout_seconds=TIMEOUT) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_rate_bucket(lab: AskLab) -> None:
    """Each test starts with the bottle's full burst of asks (the store's rate is per bottle;
    the flood test below checks the caps)."""
    (lab.bottle_dir / "approvals" / ".rate.json").unlink(missing_ok=True)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def answered(lab: AskLab, *args: str) -> str:
    result = lab.cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def approve(lab: AskLab, request: ApprovalRequest, *args: str) -> str:
    """`approve` the request as the person read it (its fingerprint)."""
    return answered(lab, "approve", request.id, *args, "--fingerprint", request.fingerprint)


def refused(response: tuple[int, str, str], rule: str) -> str:
    """The body of `response`, which must be the proxy's own 403 naming `rule`."""
    status, head, body = response
    assert status == 403 and f"X-Bot-Bottle-Rule: {rule}" in head, body
    return body


def test_an_approved_host_is_reached_and_stays_approved(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    held = pool.submit(lab.get, "approved.test", lab.http, "/first")
    request = lab.pending_for("approved.test", lab.http)
    assert (request.method, request.path) == ("GET", "/first")

    listed = answered(lab, "approvals", "--json")
    assert '"host": "approved.test"' in listed and '"kind": "egress"' in listed
    approve(lab, request)

    status, _, _ = held.result(timeout=60)
    assert status == 200 and len(lab.upstream_saw("/first")) == 1
    # Approved for the bottle's life: the next request is not held and asks nobody.
    status, _, _ = lab.get("approved.test", lab.http, "/second")
    assert status == 200
    assert lab.approval_events("approved.test") == ["requested", "answered", "delivered"]


def test_approved_once_lets_that_request_through_and_the_next_one_asks_again(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    held = pool.submit(lab.get, "once.test", lab.http, "/once-1")
    approve(lab, lab.pending_for("once.test", lab.http), "--once")
    assert held.result(timeout=60)[0] == 200

    again = pool.submit(lab.get, "once.test", lab.http, "/once-2")
    second = lab.pending_for("once.test", lab.http)
    assert second.path == "/once-2"
    answered(lab, "deny", second.id, "--once")
    refused(again.result(timeout=60), "ask-denied")
    assert lab.upstream_saw("/once-2") == []


def test_approved_once_the_next_request_on_the_same_connection_asks_again(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    """The proxy reuses a plain-HTTP upstream connection for its name's next request on one
    client connection: that request is asked about all the same, and a denial stops it."""
    target = f"http://reused.test:{lab.http}"
    with socket.create_connection(("127.0.0.1", lab.proxy), timeout=120) as sock:

        def send(path: str) -> tuple[int, str, str]:
            head = f"GET {target}{path} HTTP/1.1\r\nHost: reused.test:{lab.http}\r\n\r\n"
            sock.sendall(head.encode())
            return read_response(sock)

        held = pool.submit(send, "/reused-1")
        approve(lab, lab.pending_for("reused.test", lab.http), "--once")
        assert held.result(timeout=60)[0] == 200
        again = pool.submit(send, "/reused-2")
        answered(lab, "deny", lab.pending_for("reused.test", lab.http).id, "--once")
        refused(again.result(timeout=60), "ask-denied")
    assert lab.upstream_saw("/reused-2") == []


def test_a_denied_host_gets_403_naming_the_rule_and_stays_denied(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    held = pool.submit(lab.get, "denied.test", lab.http, "/denied")
    answered(lab, "deny", lab.pending_for("denied.test", lab.http).id)

    status, _, body = held.result(timeout=60)
    assert status == 403
    assert "rule: ask-denied" in body and "denied by cli (" in body
    status, _, body = lab.get("denied.test", lab.http, "/denied-again")
    assert status == 403 and "ask-denied" in body
    assert lab.upstream_saw("/denied") == lab.upstream_saw("/denied-again") == []
    assert lab.approval_events("denied.test").count("requested") == 1


def test_no_answer_before_the_timeout_is_a_denial(lab: AskLab) -> None:
    response = lab.get("silent.test", lab.http, "/silent")

    refused(response, "ask-timed-out")
    assert lab.upstream_saw("/silent") == []
    assert "timed_out" in lab.approval_events("silent.test")
    # A late answer finds the request ended.
    (ended,) = [e for e in lab.audit("silent.test") if e["stage"] == "asked"]
    late = lab.cli("approve", ended["request_id"])
    assert late.returncode == 1 and "timed_out" in late.stderr


def test_an_approved_name_resolving_to_loopback_stays_refused(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    # A port of ours that no rule lists for 127.0.0.1: the approval must not open it.
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.setblocking(False)
        port = trap.getsockname()[1]
        held = pool.submit(lab.get, "inside.test", port, "/")
        approve(lab, lab.pending_for("inside.test", port))
        response = held.result(timeout=60)
        with pytest.raises(BlockingIOError):
            trap.accept()
    assert "127.0.0.1, a loopback address" in refused(response, "special-address")


def test_concurrent_requests_for_one_host_make_one_ask(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    sockets = [lab.send_get("crowd.test", lab.http, f"/crowd-{n}") for n in range(8)]
    try:
        answers = [pool.submit(read_response, sock) for sock in sockets]
        ask = lab.pending_for("crowd.test", lab.http)
        time.sleep(0.5)  # let the proxy read every request before the answer (not asserted)
        assert [r.id for r in lab.store.all() if r.host == "crowd.test"] == [ask.id]
        approve(lab, ask)
        assert [a.result(timeout=120)[0] for a in answers] == [200] * 8
    finally:
        for sock in sockets:
            sock.close()

    assert lab.approval_events("crowd.test").count("requested") == 1
    asks = [e for e in lab.audit("crowd.test") if e["kind"] == "ask"]
    assert [e["stage"] for e in asks] == ["asked", "answered"]
    assert len(lab.upstream_saw("/crowd-0")) == 1


def test_an_approval_never_binds_a_secret(lab: AskLab, pool: ThreadPoolExecutor) -> None:
    """bound.test is a secret's host, but only a person's answer lets it out: the tunnel is
    relayed, not intercepted, so the placeholder is never swapped for the real value."""
    held = pool.submit(lab.https_get, BOUND, "/bound", f"Authorization: Bearer {PLACEHOLDER}")
    approve(lab, lab.pending_for(BOUND, lab.https))
    echoed = held.result(timeout=60)

    assert echoed["headers"]["Authorization"] == f"Bearer {PLACEHOLDER}"
    (seen,) = lab.upstream_saw("/bound")
    assert REAL not in str(seen)
    # Plain HTTP to the same (approved) host with the placeholder is refused as before.
    held = pool.submit(
        lab.get, BOUND, lab.http, "/bound-plain", f"Authorization: Bearer {PLACEHOLDER}"
    )
    approve(lab, lab.pending_for(BOUND, lab.http))
    status, _, body = held.result(timeout=60)
    assert status == 403 and lab.upstream_saw("/bound-plain") == [], body


def test_a_connect_is_asked_about_and_its_tunnel_is_recorded(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    held = pool.submit(lab.https_get, "tunnel.test", "/tunnelled")
    request = lab.pending_for("tunnel.test", lab.https)
    assert (request.method, request.path) == ("CONNECT", None)
    approve(lab, request, "--once")

    assert held.result(timeout=60)["path"] == "/tunnelled"
    entries = lab.audit("tunnel.test")
    asked, answer = [e for e in entries if e["kind"] == "ask"]
    assert (asked["decision"], asked["request_id"]) == ("ask", request.id)
    assert answer["decision"] == "allow" and answer["answered_by"].startswith("cli (")
    assert answer["rule"] == f"approved:{request.id}" and answer["duration_ms"] > 0
    (opened,) = [e for e in entries if e["kind"] == "tunnel" and e["stage"] == "open"]
    assert opened["rule"] == f"approved:{request.id}"


def test_ip_literals_and_listed_hosts_are_never_asked_about(lab: AskLab) -> None:
    refused(lab.get("127.0.0.7", lab.http, "/literal"), "ip-literal")
    status, _, _ = lab.get("listed.test", lab.http, "/listed")
    assert status == 200
    assert lab.approval_events("listed.test") == lab.approval_events("127.0.0.7") == []


def test_a_flood_of_asks_stops_at_the_bottles_caps(tmp_path: Path) -> None:
    """Distinct hosts each ask; beyond the store's burst the proxy refuses at once (ask-refused)
    and nothing more reaches a person."""
    with ask_lab(tmp_path, ask_timeout_seconds=TIMEOUT) as flood, ThreadPoolExecutor(16) as pool:
        held = [pool.submit(flood.get, f"flood-{n}.test", flood.http, "/") for n in range(10)]
        for n in range(10):
            flood.pending_for(f"flood-{n}.test", flood.http)
        refused(flood.get("one-more.test", flood.http, "/"), "ask-refused")
        assert len(flood.store.all()) == 10
        assert [f.result(timeout=60)[0] for f in held] == [403] * 10  # timed out


# Each held request reads as what it is not: the ask shows its method and target to a person.
UNREADABLE_REQUEST_LINES = {
    # mitmproxy takes all before the first ASCII space for the method: no-break spaces made it
    # read as a request to docs.test, and pushed the host asked about out of the way.
    "method": ("GET\u00a0http://docs.test/guide\u00a0(read\u00a0only)" + "\u00a0" * 40, "/up"),
    # mitmproxy lets bytes that are not ASCII through in a query: blanks (U+2002, U+2003,
    # U+2009, U+200A) read as nothing and carry data past a person approving `/status` --once.
    "query": ("GET", "/status?" + "".join("\u2002\u2003\u2009\u200a"[b % 4] for b in b"s3cr3t")),
    # A token of 40,000 letters: the store wrote a request file larger than it reads back,
    # shown to nobody, and one more per ask until the host read none of the bottle's requests.
    "long-method": ("A" * 40_000, "/"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE_REQUEST_LINES))
def test_a_request_line_a_person_could_not_read_as_sent_is_never_asked_about(
    lab: AskLab, case: str
) -> None:
    method, path = UNREADABLE_REQUEST_LINES[case]
    host = f"unreadable-{case}.test"
    with socket.create_connection(("127.0.0.1", lab.proxy), timeout=120) as sock:
        line = f"{method} http://{host}:{lab.http}{path} HTTP/1.1\r\nHost: {host}:{lab.http}\r\n"
        sock.sendall((line + "\r\n").encode())
        response = read_response(sock)

    refused(response, "malformed-request-line")
    assert lab.approval_events(host) == []


def _post_head(lab: AskLab, host: str, path: str, length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", lab.proxy), timeout=30)
    head = f"POST http://{host}:{lab.http}{path} HTTP/1.1\r\nHost: {host}:{lab.http}\r\n"
    sock.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode())
    return sock


def test_a_body_sent_behind_a_held_request_is_bounded(lab: AskLab) -> None:
    """While a person is asked about the host, mitmproxy went on reading the request's body and
    queued all of it for when the answer came: 200 MiB sent behind one held request took the
    proxy from 73 to 274 MiB. Now the agent is cut off soon after the bound."""
    sock = _post_head(lab, "held-body.test", "/held-body", 1 << 40)
    sent, block = 0, b"z" * (1 << 16)
    with sock, pytest.raises(OSError):  # the proxy answers 413 and closes: a reset here
        while sent < 64 << 20:  # the kernel's buffers take a few MiB past the bound
            sock.sendall(block)
            sent += len(block)
    assert sent < 64 << 20
    assert lab.pending_for("held-body.test", lab.http).path == "/held-body"  # still asked
    refused = [e for e in lab.audit("held-body.test") if e["rule"] == "held-body-limit"]
    assert refused and refused[0]["status"] == 413, lab.audit("held-body.test")


def test_a_body_in_tiny_chunks_behind_a_held_request_is_bounded(lab: AskLab) -> None:
    """Each chunk waited as an event of its own (a few hundred bytes for two of body): pieces
    are counted too, so a small body in many chunks is cut off as well."""
    with socket.create_connection(("127.0.0.1", lab.proxy), timeout=30) as sock:
        head = f"POST http://held-chunks.test:{lab.http}/held-chunks HTTP/1.1\r\n"
        head += f"Host: held-chunks.test:{lab.http}\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head.encode() + b"2\r\nzz\r\n" * 4096)
        status, _, body = read_response(sock)
    assert status == 413 and "held-body-limit" in body, body


def test_a_body_within_the_bound_waits_with_its_request_and_goes_on(
    lab: AskLab, pool: ThreadPoolExecutor
) -> None:
    body = b"b" * (512 * 1024)

    def post() -> tuple[int, str, str]:
        with _post_head(lab, "held-small.test", "/held-small", len(body)) as sock:
            sock.sendall(body)
            return read_response(sock)

    held = pool.submit(post)
    approve(lab, lab.pending_for("held-small.test", lab.http), "--once")
    assert held.result(timeout=60)[0] == 200
    (seen,) = lab.upstream_saw("/held-small")
    assert len(seen["body"]) == len(body)
