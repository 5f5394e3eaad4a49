"""Test helpers for the bundle: a test CA, an echoing HTTP/HTTPS upstream, and a bundle runner.

The upstream and client parts use the standard library only, so the same file runs inside test
containers (``python3 bundle_helpers.py serve --tls-cert ... --tls-key ...``, ``python3
bundle_helpers.py fetch --proxy IP:8888 URL``) and in-process on loopback (`serve_upstream`,
`fetch`) for host-side tests and the benchmark.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import ipaddress
import json
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from bottle_engine.bundle.config import BundleConfig, SecretBinding

EGRESS_PORT = 8888  # bottle_engine.bundle.config.EGRESS_PORT; this file also runs without it

# --------------------------------------------------------------------------- the upstream


_LOG_LOCK = threading.Lock()
# http.server refuses a request with more than 100 headers (http.client._MAXHEADERS); the echo
# upstream takes what a proxy's head limit lets through, to show where headers went.
http.client._MAXHEADERS = 100_000  # type: ignore[attr-defined]


# /reflect/MODE answers that mitmproxy cannot parse; VALUE is the request's Authorization.
BROKEN_REFLECTIONS = {
    "truncated-head": b"HTTP/1.1 200 OK\r\nX-Seen: VALUE\r\n",  # then the connection closes
    "bad-status": b"HTTP/1.1 2x0 VALUE\r\n\r\n",
    "bad-header": b"HTTP/1.1 200 OK\r\nVALUE\r\nContent-Length: 0\r\n\r\n",
    "bad-length": b"HTTP/1.1 200 OK\r\nContent-Length: VALUE\r\n\r\n",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nVALUE\r\n",
    # Parsed, then refused by mitmproxy's smuggling checks (which quote the field).
    "bad-header-name": b"HTTP/1.1 200 OK\r\nX-Seen VALUE: 1\r\nContent-Length: 0\r\n\r\n",
    "bad-length-204": b"HTTP/1.1 204 No Content\r\nContent-Length: VALUE\r\n\r\n",
}


def _json_escaped(text: str, escaped: str, style: str) -> str:
    """`text` as a JSON string's inside, each character of `escaped` written as `style` % its
    code point."""
    return "".join(style % ord(c) if c in escaped else json.dumps(c)[1:-1] for c in text)


# /reflect/MODE answers the Authorization in a JSON body as web stacks' encoders write it,
# beyond what JSON requires: PHP's json_encode (Laravel, Symfony) writes '/' as '\/', .NET's
# System.Text.Json writes "&'+<>` as \u00XX, Go's encoding/json <>& in lower-case hex.
JSON_FLAVOURS = {
    "json-php": lambda text: json.dumps(text)[1:-1].replace("/", "\\/"),
    "json-dotnet": lambda text: _json_escaped(text, "\"&'+<>`", "\\u%04X"),
    "json-go": lambda text: _json_escaped(text, "&<>", "\\u%04x"),
}

# /reflect/MODE answers the Authorization in a redirect's Location as a URL encoder writes a
# path segment: Go's url.PathEscape keeps '+' and '=' and encodes '/'.
URL_FLAVOURS = {
    "url-go-path": lambda text: urllib.parse.quote(text, safe="$&+,:;=@"),
}


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with JSON describing it; ``/bytes/N`` answers N bytes instead, and
    ``/reflect/MODE`` sends the request's Authorization back as a hostile or careless API would
    (`_reflect`); after ``/hang-up/...`` the connection is closed; ``/ignores-body/...``
    leaves the request's body unread, to be read as the next request. ``/store/KEY`` keeps the
    request's headers as data (object metadata, a file name, a logged User-Agent) and
    ``/stored/KEY``, asked by any name this upstream answers as, serves them back: a storage API
    whose objects another host of the same service hands out. With `log_requests` set,
    every request is also printed as one JSON line (what reached this upstream: headers, TLS
    name, body), for tests to check where secrets went."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    log_requests = False
    stored: ClassVar[
        dict[str, dict[str, str]]
    ] = {}  # /store/KEY -> the headers that request carried

    def parse_request(self) -> bool:
        """Empty lines before the request line are skipped, as RFC 9112 (2.2) asks of a server
        and as nginx, h11 and mitmproxy do (http.server alone closes the connection). So is a
        PROXY protocol (v1) header, as a front that accepts one where it comes does (Envoy's
        ``allow_requests_without_proxy_protocol``), then routing what follows by its Host."""
        for _ in range(8):
            if self.raw_requestline not in (b"\r\n", b"\n") and not (
                self.raw_requestline.startswith(b"PROXY ")
            ):
                break
            self.raw_requestline = self.rfile.readline(65537)
        return super().parse_request()

    def _answer(self) -> None:
        # One handler serves one connection: its requests are counted in the order they came.
        self.served = getattr(self, "served", 0) + 1
        length = int(self.headers.get("Content-Length") or 0)
        if self.path.startswith("/ignores-body/"):
            # As a handler that expects no body (a static file, a redirect) on many servers:
            # it answers without reading one, and the server reads what the body held as the
            # next request on the connection ("CL.0"), routed by whatever Host it names.
            length = 0
        body = self.rfile.read(min(length, 64 * 1024 * 1024)) if length else b""
        if self.log_requests:
            # One write per line: print() writes the newline apart, and handler threads would
            # interleave their lines.
            with _LOG_LOCK:
                sys.stdout.write(json.dumps(self._describe(body)) + "\n")
                sys.stdout.flush()
        if self.path.startswith("/store/"):
            with _LOG_LOCK:
                self.stored[self.path.removeprefix("/store/")] = dict(self.headers.items())
        if self.path.startswith("/endless-head/"):
            self._endless_head(int(self.path.rsplit("/", 1)[1]))
            return
        if self.path.startswith("/reflect/"):
            self._reflect(self.path.split("/")[2].split("?")[0])
            return
        if self.path.startswith("/bytes/"):
            payload = b"x" * int(self.path.rsplit("/", 1)[1])
            content_type = "application/octet-stream"
        elif self.path.startswith("/stored/"):
            with _LOG_LOCK:
                kept = self.stored.get(self.path.removeprefix("/stored/"), {})
            payload = json.dumps(kept).encode()
            content_type = "application/json"
        else:
            payload = json.dumps(self._describe(body)).encode()
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        # ``/hang-up/...``: the answer, then the connection closed unannounced, as a server
        # does with a keep-alive connection left idle past its timeout.
        if self.path.startswith("/hang-up/"):
            self.close_connection = True

    def _describe(self, body: bytes) -> dict[str, object]:
        return {
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "body": body.decode("utf-8", "replace"),
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "sni": getattr(self.connection, "sni_seen", None),
            "port": int(self.server.server_address[1]),  # type: ignore[index]
            "tenant": self._tenant(),
            "connection_tenant": self._connection_tenant(),
            "connection_request": self.served,  # 1 for the first on its connection
        }

    def _connection_tenant(self) -> str:
        """The site a front that routes a connection by its first request (and sends the rest
        where that one went) hands this request to. One handler serves one connection."""
        if not hasattr(self, "first_tenant"):
            self.first_tenant = self._tenant()
        return self.first_tenant

    def _cgi_header(self, name: str) -> str:
        """A header as a CGI or WSGI server reads it (``HTTP_X_FORWARDED_HOST``): '-' and '_'
        in its name are the same."""
        key = name.upper().replace("-", "_")
        return next((v for k, v in self.headers.items() if k.upper().replace("-", "_") == key), "")

    def _tenant(self) -> str:
        """The site a shared front (CDN, reverse proxy) that trusts X-Forwarded-Host would hand
        this request to: that header's first name, else the Host header's."""
        forwarded = self._cgi_header("X-Forwarded-Host").split(",")[0].strip()
        return (forwarded or self.headers.get("Host", "")).split(":")[0].lower()

    def _reflect(self, mode: str) -> None:
        """The Authorization value sent back: in a header and a small body (``header``); in a
        chunked body of about 2 MiB with the value cut across chunk boundaries (``chunked``);
        gzip-compressed whatever the request accepted (``gzip``: small, ``gzip-stream``: chunked,
        so too large to buffer); percent-encoded and JSON-escaped (``encoded``)."""
        import gzip
        import urllib.parse

        secret = self.headers.get("Authorization", "").encode()
        special = {
            "digest": self._reflect_with_digests,
            "upgrade": self._reflect_upgraded,
            "te-gzip": self._reflect_transfer_coded,
            "range": self._reflect_in_ranges,
            "charset": self._reflect_in_charset,
            **dict.fromkeys(JSON_FLAVOURS, self._reflect_in_json),
            **dict.fromkeys(URL_FLAVOURS, self._reflect_in_location),
        }
        if mode in special:
            special[mode](secret)
            return
        if mode in BROKEN_REFLECTIONS:
            # A response mitmproxy cannot parse, quoting the value: its errors quote the bytes.
            self.wfile.write(BROKEN_REFLECTIONS[mode].replace(b"VALUE", secret))
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("X-Seen-Authorization", secret.decode())
        self.send_header("Content-Type", "application/octet-stream")
        if mode in ("header", "encoded", "gzip"):
            if mode == "encoded":
                body = urllib.parse.quote(secret.decode(), safe="").encode()
                body += b"\n" + json.dumps({"token": secret.decode()}).encode()
            else:
                body = b"error: bad token " + secret + b"\n"
            if mode == "gzip":
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        if mode == "gzip-stream":
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        filler = b"f" * 65533
        pieces = []
        for _ in range(32):  # about 2 MiB, every boundary through the middle of the value
            pieces += [filler, secret[: len(secret) // 2], secret[len(secret) // 2 :]]
        data = b"".join(pieces)
        if mode == "gzip-stream":
            data = gzip.compress(data)
        step = 65533 + len(secret) // 2
        for start in range(0, len(data), step):
            chunk = data[start : start + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _reflect_in_json(self, secret: bytes) -> None:
        """``/reflect/json-*``: a 401 quoting the value in JSON as that web stack writes it."""
        flavour = JSON_FLAVOURS[self.path.split("/")[2].split("?")[0]]
        body = f'{{"error": "invalid_token", "token": "{flavour(secret.decode())}"}}'.encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reflect_in_location(self, secret: bytes) -> None:
        """``/reflect/url-*``: a redirect to a path naming the value as that encoder writes it."""
        flavour = URL_FLAVOURS[self.path.split("/")[2].split("?")[0]]
        self.send_response(302)
        self.send_header("Location", f"https://secret.test/callback/{flavour(secret.decode())}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _reflect_with_digests(self, secret: bytes) -> None:
        """``/reflect/digest``: the value in a small body, with the hashes of that body servers
        send (a strong ETag as Express makes one, Content-MD5, RFC 9530's Repr-Digest): with
        the body the agent sees, each tests a guess of the value offline. ``?big`` pads the
        body past the proxy's buffering bound (streamed)."""
        body = b"error: bad token " + secret + b"\n"
        if self.path.endswith("?big"):
            body += b"f" * (512 * 1024)
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.sha1(body).hexdigest()}"')
        self.send_header("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode())
        sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
        self.send_header("Repr-Digest", f"sha-256=:{sha256}:")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reflect_transfer_coded(self, secret: bytes) -> None:
        """``/reflect/te-gzip``: the value gzip-compressed as a transfer coding (a server
        honouring the client's ``TE: gzip``), not a content coding: a proxy that only
        de-chunks relays compressed bytes."""
        import gzip

        body = gzip.compress(b"error: bad token " + secret + b"\n")
        self.send_response(200)
        self.send_header("Transfer-Encoding", "gzip, chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        self.close_connection = True

    def _reflect_in_ranges(self, secret: bytes) -> None:
        """``/reflect/range``: the value in a small body that honours ``Range: bytes=A-B`` (206
        with that slice); ``?always`` answers 206 with the first half even when not asked."""
        body = b"error: bad token " + secret + b"\n"
        asked = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if asked:
            first, last = int(asked.group(1)), min(int(asked.group(2)), len(body) - 1)
        elif self.path.endswith("?always"):
            first, last = 0, len(body) // 2
        else:
            first, last = 0, len(body) - 1
        partial = (first, last) != (0, len(body) - 1)
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self.wfile.write(body[first : last + 1])

    def _reflect_in_charset(self, secret: bytes) -> None:
        """``/reflect/charset``: the value in a text body encoded in the charset the request
        asked for, as content negotiation picks it: a ``charset`` parameter of ``Accept``
        (Spring MVC keeps the more specific media range), else the first ``Accept-Charset``
        (Ktor, Pekko HTTP), else UTF-8."""
        accept = self.headers.get("Accept", "")
        asked = re.search(r"charset\s*=\s*([\w-]+)", accept, re.IGNORECASE)
        offered = self.headers.get("Accept-Charset", "").split(",")[0].split(";")[0].strip()
        charset = asked.group(1) if asked else offered or "utf-8"
        body = f"error: bad token {secret.decode()}\n".encode(charset)
        self.send_response(401)
        self.send_header("Content-Type", f"text/plain; charset={charset}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _endless_head(self, size: int) -> None:
        """``/endless-head/N``: a response head of about N bytes of headers (then an empty
        body), for a proxy that buffers heads whole; stops early if the proxy hangs up."""
        pad = b"X-Pad: " + b"p" * 1000 + b"\r\n"
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(size // len(pad)):
                self.wfile.write(pad)
            self.wfile.write(b"Content-Length: 0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _reflect_upgraded(self, secret: bytes) -> None:
        """``/reflect/upgrade``: switch protocols (101), send the Authorization value back on
        the upgraded connection as one WebSocket text message in two fragments that cut the
        value, in two writes, and close: a WebSocket endpoint quoting the handshake it was
        sent. ``?named``: the protocol it switches to is named by that value."""
        self.send_response(101)
        self.send_header("Connection", "Upgrade")
        named = self.path.endswith("?named")
        self.send_header(
            "Upgrade", secret.decode() if named else self.headers.get("Upgrade", "echo")
        )
        if key := self._cgi_header("Sec-WebSocket-Key"):
            self.send_header("Sec-WebSocket-Accept", websocket_accept(key.encode()))
        if extensions := self.headers.get("Sec-WebSocket-Extensions"):
            # Accepting compression: what follows would then be deflated (it is not, here).
            self.send_header("Sec-WebSocket-Extensions", extensions.split(";")[0])
        self.end_headers()
        self.wfile.flush()
        if self.path.endswith("?echo"):
            self._echo_frames()
            return
        half = len(secret) // 2
        self.connection.sendall(websocket_frame(b"seen: " + secret[:half], opcode=1, fin=False))
        time.sleep(0.05)  # two reads at the proxy: a value cut between them must still be found
        self.connection.sendall(websocket_frame(secret[half:] + b"\n", opcode=0))
        self.close_connection = True

    def _echo_frames(self) -> None:
        """``/reflect/upgrade?echo``: a WebSocket echo endpoint, frame for frame as each
        arrives (fin, opcode, payload); each frame's payload as received is logged (a line with
        this path + "#frame") when `log_requests` is set. A close frame is echoed and ends it."""
        while header := self.rfile.read(2):
            size, masked = header[1] & 0x7F, header[1] & 0x80
            if size >= 126:
                size = int.from_bytes(self.rfile.read(2 if size == 126 else 8), "big")
            mask = self.rfile.read(4) if masked else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
            if self.log_requests:
                line = {"path": self.path + "#frame", "body": payload.decode("latin-1")}
                with _LOG_LOCK:
                    sys.stdout.write(json.dumps(line) + "\n")
                    sys.stdout.flush()
            opcode = header[0] & 0x0F
            self.connection.sendall(websocket_frame(payload, opcode, fin=bool(header[0] & 0x80)))
            if opcode == 8:
                break
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def websocket_accept(key: bytes) -> str:
    """The Sec-WebSocket-Accept a server answers `key` with (RFC 6455 4.2.2)."""
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return base64.b64encode(digest).decode()


def websocket_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """One unmasked WebSocket frame (RFC 6455 5.2), as a server sends it."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes([first, size])
    elif size < 1 << 16:
        head = bytes([first, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 127]) + size.to_bytes(8, "big")
    return head + payload


def websocket_messages(data: bytes) -> list[bytes]:
    """The messages (fragments joined) in unmasked server frames, and control frames' payloads
    apiece; an incomplete frame at the end is left out."""
    messages: list[bytes] = []
    current = b""
    while len(data) >= 2:
        fin, opcode, size, start = data[0] & 0x80, data[0] & 0x0F, data[1] & 0x7F, 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size, start = int.from_bytes(data[2 : 2 + width], "big"), 2 + width
        if len(data) < start + size:
            break
        payload, data = data[start : start + size], data[start + size :]
        if opcode >= 8:
            messages.append(payload)
            continue
        current += payload
        if fin:
            messages.append(current)
            current = b""
    return messages


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _remember_sni(connection: Any, name: str | None, context: ssl.SSLContext) -> None:
    """Keep the TLS server name the client sent, for the echo (a proxy must not forward the
    agent's SNI in place of the host it connects to)."""
    connection.sni_seen = name


def make_server(host: str, port: int, cert: Path | None = None, key: Path | None = None) -> _Server:
    server = _Server((host, port), EchoHandler)
    if cert is not None and key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = _remember_sni
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


@contextlib.contextmanager
def serve_upstream(
    host: str = "127.0.0.1", port: int = 0, cert: Path | None = None, key: Path | None = None
) -> Iterator[int]:
    """Run an echo upstream in a thread; yields its port."""
    server = make_server(host, port, cert, key)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    parser.add_argument("--log-requests", action="store_true")
    args = parser.parse_args(argv)
    EchoHandler.log_requests = args.log_requests
    servers = [
        make_server(args.host, args.http_port),
        make_server(args.host, args.https_port, args.tls_cert, args.tls_key),
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    print("upstream ready", flush=True)
    for thread in threads:
        thread.join()
    return 0


# --------------------------------------------------------------------------- the client


def fetch(
    url: str,
    *,
    proxy: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    cafile: str | None = None,
) -> dict[str, object]:
    """One request through the HTTP proxy `proxy` ("host:port"), as the agent would send it.

    Returns {"status", "body", "error"}; a refused CONNECT is an error naming its status.
    """
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    proxy_host, proxy_port = proxy.rsplit(":", 1)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=cafile)
            connection = http.client.HTTPSConnection(
                proxy_host, int(proxy_port), context=context, timeout=30
            )
            connection.set_tunnel(parts.hostname or "", parts.port or 443)
        else:
            connection = http.client.HTTPConnection(proxy_host, int(proxy_port), timeout=30)
            target = url
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return {"status": response.status, "body": response.read().decode(), "error": None}
    except (OSError, http.client.HTTPException) as exc:
        return {"status": None, "body": "", "error": f"{type(exc).__name__}: {exc}"}


def _fetch_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--data")
    parser.add_argument("--cafile")
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    body = args.data.encode() if args.data is not None else None
    result = fetch(
        args.url,
        proxy=args.proxy,
        method=args.method,
        headers=headers,
        body=body,
        cafile=args.cafile,
    )
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- the test CA


@dataclass(frozen=True)
class TestCA:
    """A CA and one server certificate it signed, as PEM files in a directory."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_test_ca(directory: Path, names: list[str]) -> TestCA:
    """A fresh CA and a server certificate for `names` (DNS names; IPs also accepted)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bot-bottle test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    result = TestCA(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    result.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    result.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path in (result.ca_cert, result.server_cert, result.server_key):
        path.chmod(0o644)  # read by the upstream container's user
    return result


def secret_in_file(
    path: Path,
    name: str,
    placeholder: str,
    hosts: tuple[str, ...],
    value: str,
    *,
    extra_headers: tuple[str, ...] = (),
) -> SecretBinding:
    """Secret `name` bound to `hosts`, its real `value` written to `path` now (one line, as a
    person's secret file is) for the bundle to read; the agent sees `placeholder` only. It may
    be sent in the default credential headers and `extra_headers`."""
    from bottle_engine.bundle.config import SecretBinding
    from bottle_engine.manifest.schema import DEFAULT_SECRET_HEADERS

    path.write_text(value + "\n")
    headers = (*DEFAULT_SECRET_HEADERS, *extra_headers)
    return SecretBinding(name, placeholder, hosts, str(path), headers)


# The bundle's egress proxy as a process of its own, every *.test name resolved to loopback.
# With a probe port, a line naming a client's port there is answered with the number of
# upstream connections, open or closed, that mitmproxy's HTTP layers hold for that client.
LOOPBACK_PROXY = """
import asyncio, gc, sys
from pathlib import Path
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.egress import run_proxy

async def loopback(host, port):
    return ["127.0.0.1"] if host.endswith(".test") else []

async def held(reader, writer):
    from mitmproxy.proxy.layers.http import HttpLayer
    port = int(await reader.readline())
    layers = [
        o for o in gc.get_objects()
        if isinstance(o, HttpLayer) and o.context.client.connected
        and (o.context.client.peername or ("", 0))[1] == port
    ]
    servers = {id(c) for o in layers for c in o.connections if c is not o.context.client}
    writer.write(b"%d\\n" % len(servers))
    await writer.drain()
    writer.close()

async def main(config, port, probe):
    if probe:
        probing = await asyncio.start_server(held, "127.0.0.1", probe)
    await run_proxy(config, "127.0.0.1", port, resolver=loopback)

config = BundleConfig.from_json(Path(sys.argv[1]).read_text())
asyncio.run(main(config, int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0))
"""


@contextlib.contextmanager
def loopback_egress_lab(
    root: Path,
    config: BundleConfig,
    tls: TestCA,
    *,
    http: int,
    https: int,
    proxy: int,
    source: str,
    proxy_log: Path | None = None,
    probe: int = 0,
) -> Iterator[Path]:
    """The echo upstream (plain on `http`, TLS on `https` as `tls`'s server) and the real egress
    proxy with `config` (on `proxy`, run from the checkout at `source`) as two processes on
    loopback, stopped afterwards whatever happens. Yields the upstream's request log. With
    `proxy_log`, the proxy's own output (its log, as the bundle's would show) goes there; with
    `probe`, the proxy process answers there how many upstream connections it holds for a
    client (`LOOPBACK_PROXY`)."""
    (root / "bundle.json").write_text(config.to_json())
    upstream_log = root / "upstream.log"
    upstream = subprocess.Popen(
        [
            *(sys.executable, str(Path(__file__).resolve()), "serve"),
            *("--host", "127.0.0.1", "--http-port", str(http), "--https-port", str(https)),
            *("--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)),
            "--log-requests",
        ],
        stdout=upstream_log.open("wb"),
    )
    server = subprocess.Popen(
        [sys.executable, "-c", LOOPBACK_PROXY, str(root / "bundle.json"), str(proxy), str(probe)],
        cwd=source,
        # Unbuffered: its output is read for leaks while it runs.
        env={"PYTHONPATH": source, "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        stdout=proxy_log.open("wb") if proxy_log else None,
        stderr=subprocess.STDOUT if proxy_log else None,
    )
    try:
        wait_for_port(http, upstream)
        wait_for_port(proxy, server)
        yield upstream_log
    finally:
        for process in (server, upstream):
            process.terminate()
            process.wait(timeout=30)


@dataclass(frozen=True)
class LiveLab:
    """The real proxy on loopback (`live_egress_lab`): `secret.test` is bound to the secret,
    `other.test` is allowed but bound to no secret (the co-tenant on the same front)."""

    proxy: int
    https: int
    http: int
    bottle_ca: Path
    audit: Path
    upstream_log: Path
    probe: int

    def held_upstreams(self, client: socket.socket) -> int:
        """How many upstream connections, open or closed, the proxy holds for `client`'s
        connection (mitmproxy's HTTP layers serving it, as the proxy process counts them)."""
        port = client.getsockname()[1]
        with socket.create_connection(("127.0.0.1", self.probe), timeout=20) as probe:
            probe.sendall(b"%d\n" % port)
            return int(probe.makefile("rb").readline())

    def upstream_requests(self) -> list[dict[str, Any]]:
        """Every request that reached the upstream, as it logged them."""
        lines = self.upstream_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def seen_upstream(self, path: str) -> list[dict[str, Any]]:
        """The requests for `path` that reached the upstream, as it logged them."""
        return [r for r in self.upstream_requests() if r["path"] == path]


@contextlib.contextmanager
def live_egress_lab(
    root: Path,
    placeholder: str,
    value: str,
    *,
    extra_headers: tuple[str, ...] = (),
    egress_intercept: str = "secrets",
    bind_secret: bool = True,
) -> Iterator[LiveLab]:
    """`loopback_egress_lab` with the usual bottle: `secret.test` and `other.test` allowed on
    the upstream's two ports, the secret (`placeholder`, real `value`) bound to `secret.test`
    over HTTPS (unless not `bind_secret`: a bottle with no secrets), the upstream's CA trusted
    by the proxy. BOTTLE_LIVE_PROXY_SRC=/other/checkout
    runs that checkout's proxy instead (to watch an attack succeed against an older one)."""
    from bottle_engine.bundle.config import CA_CERT_NAME, BundleConfig

    tls = make_test_ca(root / "tls", ["secret.test", "other.test"])
    https, http, proxy, probe = free_port(), free_port(), free_port(), free_port()
    config = BundleConfig(
        slug="live",
        bundle_ip="10.255.255.2",
        agent_subnet="10.255.255.0/24",
        egress_allow=(
            *(f"{name}:{port}" for name in ("secret.test", "other.test") for port in (https, http)),
            f"127.0.0.1:{https}",  # an exact entry lifts the loopback refusal for this lab only
            f"127.0.0.1:{http}",
        ),
        secrets=(
            secret_in_file(
                root / "secret",
                "token",
                placeholder,
                (f"secret.test:{https}",),
                value,
                extra_headers=extra_headers,
            ),
        )
        if bind_secret
        else (),
        state_dir=str(root / "state"),
        upstream_ca_files=(str(tls.ca_cert),),
        egress_intercept=egress_intercept,
    )
    repo = Path(__file__).resolve().parents[1]
    source = os.environ.get("BOTTLE_LIVE_PROXY_SRC", str(repo))
    with loopback_egress_lab(
        root, config, tls, http=http, https=https, proxy=proxy, source=source, probe=probe
    ) as upstream_log:
        bottle_ca = root / "state" / "ca" / CA_CERT_NAME
        yield LiveLab(proxy, https, http, bottle_ca, config.audit_log, upstream_log, probe)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    commands = {"serve": _serve_main, "fetch": _fetch_main}
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))


# --------------------------------------------------------------------------- containers

TEST_LABELS = {"bot-bottle.test": "1"}
HELPERS_IN_CONTAINER = "/srv/bundle_helpers.py"


def pick_subnet(client: Any) -> ipaddress.IPv4Network:
    """A /24 under 10.213.0.0/16 that no Docker network uses yet."""
    from bottle_engine.dockerapi.networks import subnets_in_use

    used = subnets_in_use(client)
    candidates = list(ipaddress.IPv4Network("10.213.0.0/16").subnets(new_prefix=24))
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(other) for other in used):
            return candidate
    raise RuntimeError("no free test subnet under 10.213.0.0/16")


@dataclass
class BundleTestBed:
    """A bundle between an internal network (the agent side) and a test network (the "internet").

    The upstream echo server listens on 80 (HTTP) and 443 (HTTPS, test CA) on the egress
    network; `client` is a container on the internal network only, so the bundle is its only
    way out.
    """

    client: Any
    bundle: Any
    config: BundleConfig
    state_dir: Path
    upstream_ip: str
    egress_cidr: str
    internal_subnet: ipaddress.IPv4Network
    agent: Any = None
    agent_env: dict[str, str] = field(default_factory=dict)
    upstream: Any = None  # the echo server's container; its log says what reached it

    def upstream_requests(self) -> list[dict[str, Any]]:
        """Every request that reached the upstream, as it arrived (the echo server's log)."""
        lines = bytes(self.upstream.logs(stderr=False)).decode("utf-8", "replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    @property
    def proxy(self) -> str:
        return f"{self.config.bundle_ip}:{EGRESS_PORT}"

    def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        data: str | None = None,
        cafile: str | None = None,
    ) -> dict[str, Any]:
        """A request from the agent container through the bundle."""
        command = ["python3", HELPERS_IN_CONTAINER, "fetch", url, "--proxy", self.proxy]
        command += ["--method", method]
        for name, value in (headers or {}).items():
            command += ["--header", f"{name}: {value}"]
        if data is not None:
            command += ["--data", data]
        if cafile is not None:
            command += ["--cafile", cafile]
        result = self.agent.exec_run(command)
        output = bytes(result.output).decode()
        assert result.exit_code == 0, output
        parsed: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
        return parsed

    def agent_exec(self, command: list[str]) -> tuple[int, str]:
        result = self.agent.exec_run(command)
        return int(result.exit_code), bytes(result.output).decode("utf-8", "replace")


@contextlib.contextmanager
def bundle_testbed(
    client: Any,
    image: str,
    workdir: Path,
    *,
    upstream_names: list[str],
    allow: list[str],
    secrets: dict[str, tuple[str, tuple[str, ...], str]] | None = None,
    extra_hosts: dict[str, str] | None = None,
    bottle_name: str = "egress-test",
) -> Iterator[BundleTestBed]:
    """Networks, upstream, bundle and agent containers; all removed on exit.

    `allow` may name ``{egress_cidr}``, filled in once the test network exists. `secrets` maps
    a secret's name to (placeholder, hosts, real value). Each upstream name is mapped to the
    upstream in the bundle; `extra_hosts` adds more names.
    """
    from bottle_engine.bundle.config import (
        CA_CERT_NAME,
        SECRETS_MOUNT,
        BundleConfig,
        SecretBinding,
    )
    from bottle_engine.dockerapi.bundle_container import run_bundle_container, wait_bundle_ready
    from bottle_engine.dockerapi.networks import (
        create_egress_network,
        create_internal_network,
        remove_network,
    )

    run_id = uuid.uuid4().hex[:10]
    secrets = secrets or {}
    with contextlib.ExitStack() as stack:
        subnet = pick_subnet(client)
        internal_name, egress_name = f"bb-test-{run_id}-int", f"bb-test-{run_id}-out"
        create_internal_network(client, internal_name, subnet, str(subnet[1]), TEST_LABELS)
        stack.callback(remove_network, client, internal_name)
        egress = create_egress_network(client, egress_name, TEST_LABELS)
        stack.callback(remove_network, client, egress_name)
        egress.reload()
        egress_cidr = egress.attrs["IPAM"]["Config"][0]["Subnet"]

        upstream = stack.enter_context(
            echo_upstream(
                client,
                image,
                workdir / "tls",
                names=upstream_names,
                network=egress_name,
                name=f"bb-test-{run_id}-upstream",
            )
        )
        upstream_ip = upstream.ip

        state_dir = workdir / "state"
        secret_files: dict[str, Path] = {}
        bindings = []
        for name, (placeholder, hosts, value) in secrets.items():
            secret_files[name] = workdir / "secrets" / name
            secret_files[name].parent.mkdir(parents=True, exist_ok=True)
            secret_files[name].write_text(value + "\n")
            bindings.append(SecretBinding(name, placeholder, hosts, f"{SECRETS_MOUNT}/{name}"))
        bundle_ip = str(subnet[2])
        config = BundleConfig(
            slug=f"test-{run_id}",
            bundle_ip=bundle_ip,
            agent_subnet=str(subnet),
            egress_allow=tuple(entry.format(egress_cidr=egress_cidr) for entry in allow),
            secrets=tuple(bindings),
            bottle_name=bottle_name,
            upstream_ca_files=("/run/bot-bottle/test-upstream-ca.pem",),
            agent_ip=str(subnet[3]),  # as in a bottle: the only client the bundle answers
        )
        upstream_hosts = {name: upstream_ip for name in upstream_names}
        bundle = run_bundle_container(
            client,
            name=f"bb-test-{run_id}-bundle",
            image=image,
            config=config,
            state_dir=state_dir,
            secret_files=secret_files,
            internal_network=internal_name,
            bundle_ip=bundle_ip,
            egress_network=egress_name,
            labels=TEST_LABELS,
            extra_hosts={**upstream_hosts, **(extra_hosts or {})},
            readonly_files={"/run/bot-bottle/test-upstream-ca.pem": upstream.ca_cert},
        )
        stack.callback(_force_remove, bundle)
        bed = BundleTestBed(client, bundle, config, state_dir, upstream_ip, egress_cidr, subnet)
        bed.upstream = upstream.container
        wait_bundle_ready(bundle, config, 180, state_dir=state_dir)

        # The agent: the bottle CA certificate and placeholders only, like a real bottle.
        agent_env = {name.upper(): placeholder for name, (placeholder, _, _) in secrets.items()}
        # The bundle writes its state private to its user; the engine hands the (public)
        # certificate to the agent, as this copy does.
        bottle_ca = workdir / "bottle-ca.pem"
        bottle_ca.write_bytes((state_dir / "ca" / CA_CERT_NAME).read_bytes())
        bottle_ca.chmod(0o644)
        bed.agent = client.containers.run(
            image,
            ["sleep", "infinity"],
            entrypoint=[],
            name=f"bb-test-{run_id}-agent",
            network=internal_name,
            networking_config={
                internal_name: client.api.create_endpoint_config(ipv4_address=config.agent_ip)
            },
            labels=TEST_LABELS,
            environment=agent_env,
            volumes={
                str(Path(__file__).resolve()): {"bind": HELPERS_IN_CONTAINER, "mode": "ro"},
                str(upstream.ca_cert): {"bind": "/srv/upstream-ca.pem", "mode": "ro"},
                str(bottle_ca): {"bind": "/srv/bottle-ca.pem", "mode": "ro"},
            },
            detach=True,
        )
        stack.callback(_force_remove, bed.agent)
        bed.agent_env = agent_env
        yield bed


def _force_remove(container: Any) -> None:
    with contextlib.suppress(Exception):
        container.remove(force=True)


def wait_for_log(container: Any, text: str, timeout: float = 60.0) -> None:
    """Until the container's output contains `text`; fails early when it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in bytes(container.logs()).decode("utf-8", "replace"):
            return
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.2)
    raise RuntimeError(f"{container.name} never logged {text!r}: {container.logs()!r}")


def container_ip(container: Any, network: str) -> str:
    """The container's address on `network`, as Docker reports it now."""
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


@dataclass(frozen=True)
class EchoUpstream:
    """A running TLS echo upstream: its container (whose log lists every request it received),
    its address on its network, and the CA its certificate chains to."""

    container: Any
    ip: str
    ca_cert: Path


@contextlib.contextmanager
def echo_upstream(
    client: Any, image: str, tls_dir: Path, *, names: list[str], network: str, name: str
) -> Iterator[EchoUpstream]:
    """A TLS echo upstream (this file's `serve --log-requests`) on `network`, answering on 80
    and 443 as `names` with a certificate of a fresh CA made in `tls_dir`; removed on exit."""
    tls = make_test_ca(tls_dir, names)
    upstream = client.containers.run(
        image,
        [
            *("python3", HELPERS_IN_CONTAINER, "serve", "--log-requests"),
            *("--tls-cert", "/srv/tls/server.pem", "--tls-key", "/srv/tls/server-key.pem"),
        ],
        entrypoint=[],
        name=name,
        user="0:0",  # binds ports 80 and 443
        network=network,
        labels=TEST_LABELS,
        volumes={
            str(Path(__file__).resolve()): {"bind": HELPERS_IN_CONTAINER, "mode": "ro"},
            str(tls.server_cert.parent): {"bind": "/srv/tls", "mode": "ro"},
        },
        detach=True,
    )
    try:
        wait_for_log(upstream, "upstream ready")
        yield EchoUpstream(upstream, container_ip(upstream, network), tls.ca_cert)
    finally:
        _force_remove(upstream)


def build_bundle_image(client: Any, base_image: str, cache_dir: Path) -> str:
    """The bundle image through the artifact builder (cached in `cache_dir` across tests)."""
    import os

    from bottle_engine.artifacts import ensure_artifact
    from bottle_engine.artifacts.bundle_image import bundle_build_spec

    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    previous = os.environ.get("BOTTLE_CACHE_DIR")
    os.environ["BOTTLE_CACHE_DIR"] = str(cache_dir)  # session fixtures run before the per-test env
    try:
        spec = bundle_build_spec(base_image, host_bundle if host_bundle.exists() else None)
        return ensure_artifact(client, spec).image_tag
    finally:
        if previous is None:
            os.environ.pop("BOTTLE_CACHE_DIR", None)
        else:
            os.environ["BOTTLE_CACHE_DIR"] = previous


def run_as_nobody(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `argv` as the host's `nobody` (needs root): a host user with no rights at all."""
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        check=False,
    )


def read_http_head(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """(status, head, what already arrived of the body) of one HTTP/1.1 response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, rest


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], timeout: float = 60.0, log: Path | None = None
) -> None:
    """Return once something accepts on 127.0.0.1:`port`; fail if `process` exits first or
    nothing listens within `timeout` (showing what the process wrote to `log`, if given)."""

    def failure(what: str) -> AssertionError:
        output = f":\n{log.read_text()}" if log is not None else ""
        return AssertionError(f"{what}: {process.args}{output}")

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise failure("exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise failure(f"nothing listens on {port}") from None
            time.sleep(0.1)


def read_http_response(sock: socket.socket, head_only: bool = False) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one HTTP/1.1 response (Content-Length or until close)."""
    status, head, body = read_http_head(sock)
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        ),
        None,
    )
    while not head_only and (length is None or len(body) < length):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, head, body
