"""A real egress proxy with `[egress] ask = true` on loopback, an echo upstream, and a person.

`ask_lab(root)` starts the bundle's `run_proxy` as a subprocess (every `*.test` name resolves to
127.0.0.1) and the echo upstream of tests/bundle_helpers.py (HTTP and HTTPS, logging what it
received). The bottle's state dir is `root/state/bottles/asking`, so the real `bottle-engine`
CLI with BOTTLE_STATE_DIR=`root/state` answers the proxy's asks. Loopback is listed only for
the upstream's two ports: a name approved on any other port resolves to a refused address.
Used by tests/unit/test_egress_ask_live.py and tests/lsp/test_egress_ask.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottle_engine.approvals import ApprovalRequest, ApprovalStore
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.manifest.schema import INTERCEPT_SECRETS
from tests.bundle_helpers import (
    free_port,
    loopback_egress_lab,
    make_test_ca,
    read_http_response,
    secret_in_file,
)
from tests.conftest import REPO_ROOT

SLUG = "asking"
PLACEHOLDER = "bb-ask-placeholder-51c0"
REAL = "real-ask-value-9e2b"
BOUND = "bound.test"  # a secret's host that the allowlist does not list


@dataclass(frozen=True)
class AskLab:
    root: Path
    proxy: int
    http: int
    https: int
    upstream_ca: Path
    audit_log: Path
    upstream_log: Path

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def bottle_dir(self) -> Path:
        return self.state_dir / "bottles" / SLUG

    @property
    def store(self) -> ApprovalStore:
        return ApprovalStore(self.bottle_dir, SLUG)

    def env(self) -> dict[str, str]:
        return {**os.environ, "BOTTLE_STATE_DIR": str(self.state_dir), "PYTHONPATH": str(REPO_ROOT)}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real `bottle-engine` CLI in its own process, answering as a person would."""
        return subprocess.run(
            [sys.executable, "-m", "bottle_engine", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def pending_for(self, host: str, port: int, timeout: float = 60.0) -> ApprovalRequest:
        """The egress ask the proxy opened for `host`:`port`, once it is there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for request in self.store.all():
                if request.pending and (request.kind, request.host, request.port) == (
                    "egress",
                    host,
                    port,
                ):
                    return request
            time.sleep(0.05)
        raise AssertionError(f"no egress ask for {host}:{port} appeared")

    def audit(self, host: str | None = None) -> list[dict[str, Any]]:
        lines = self.audit_log.read_text().splitlines() if self.audit_log.exists() else []
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e for e in entries if host is None or e["host"] == host]

    def approval_events(self, host: str) -> list[str]:
        """The approval log's events about `host`'s asks, in order."""
        log = self.bottle_dir / "approvals.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        return [e["event"] for e in map(json.loads, lines) if e.get("host") == host]

    def upstream_saw(self, path: str) -> list[dict[str, Any]]:
        lines = self.upstream_log.read_text().splitlines()
        return [r for r in (json.loads(x) for x in lines if x.startswith("{")) if r["path"] == path]

    # -- the agent's side ---------------------------------------------------------------------

    def get(self, host: str, port: int, path: str, *headers: str) -> tuple[int, str, str]:
        """A plain-HTTP GET through the proxy: (status, head, body)."""
        with self.send_get(host, port, path, *headers) as sock:
            return read_response(sock)

    def send_get(self, host: str, port: int, path: str, *headers: str) -> socket.socket:
        """A plain-HTTP GET sent through the proxy; its answer is still to be read."""
        sock = socket.create_connection(("127.0.0.1", self.proxy), timeout=120)
        lines = [f"GET http://{host}:{port}{path} HTTP/1.1", f"Host: {host}:{port}", *headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock

    def connect(self, host: str, port: int) -> tuple[int, str, socket.socket]:
        """CONNECT through the proxy: (status, head, the socket, open when status is 200)."""
        sock = socket.create_connection(("127.0.0.1", self.proxy), timeout=120)
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        status, head, _ = read_response(sock, head_only=True)
        return status, head, sock

    def https_get(self, host: str, path: str, *headers: str) -> dict[str, Any]:
        """CONNECT to the upstream's HTTPS port as `host`, TLS with the upstream's own CA (the
        agent's TLS, not the proxy's), GET `path`: the JSON echo."""
        status, head, sock = self.connect(host, self.https)
        assert status == 200, head
        context = ssl.create_default_context(cafile=str(self.upstream_ca))
        with context.wrap_socket(sock, server_hostname=host) as tls:
            lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{self.https}", *headers]
            tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            code, _, body = read_response(tls)
        assert code == 200, body
        echoed: dict[str, Any] = json.loads(body)
        return echoed


def read_response(sock: socket.socket, head_only: bool = False) -> tuple[int, str, str]:
    status, head, body = read_http_response(sock, head_only)
    return status, head.decode("latin-1"), body.decode("utf-8", "replace")


@contextlib.contextmanager
def ask_lab(
    root: Path, ask_timeout_seconds: float = 120.0, egress_intercept: str = INTERCEPT_SECRETS
) -> Iterator[AskLab]:
    """The proxy and upstream running, stopped afterwards whatever happens."""
    tls = make_test_ca(root / "tls", ["approved.test", BOUND, "tunnel.test"])
    http, https, proxy = free_port(), free_port(), free_port()
    bottle_dir = root / "state" / "bottles" / SLUG
    bottle_dir.mkdir(parents=True, mode=0o700)
    config = BundleConfig(
        slug=SLUG,
        bundle_ip="10.255.255.2",
        agent_subnet="10.255.255.0/24",
        bottle_name="asking",
        # Loopback is listed for the upstream's ports only (it is this lab's "outside").
        egress_allow=(f"listed.test:{http}", f"127.0.0.1:{http}", f"127.0.0.1:{https}"),
        secrets=(
            secret_in_file(
                root / "secret",
                "token",
                PLACEHOLDER,
                (f"{BOUND}:{https}", f"{BOUND}:{http}"),
                REAL,
            ),
        ),
        state_dir=str(bottle_dir),
        egress_ask=True,
        ask_timeout_seconds=ask_timeout_seconds,
        egress_intercept=egress_intercept,
        upstream_ca_files=(str(tls.ca_cert),),  # for the tunnels the proxy opens
    )
    with loopback_egress_lab(
        root, config, tls, http=http, https=https, proxy=proxy, source=str(REPO_ROOT)
    ) as upstream_log:
        yield AskLab(root, proxy, http, https, tls.ca_cert, config.audit_log, upstream_log)
