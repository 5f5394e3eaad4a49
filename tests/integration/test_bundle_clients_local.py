"""Only the agent: each bundle service, run as the bundle runs it, answers its allowed client
and refuses every other peer (on loopback: 127.0.0.1 and 127.0.0.2 are two different peers)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.supervise import MAX_CONNECTIONS
from tests.integration.test_gitgate_local import git, seed_upstream
from tests.integration.test_gitgate_support import free_port, service, write_config
from tests.integration.test_supervise import initialize_body, post_mcp

AGENT = "127.0.0.2"  # the allowed client in these tests
STRANGER = "127.0.0.1"  # any other peer


def _config(tmp_path: Path, **extra: object) -> Path:
    config = BundleConfig(
        slug="clients",
        bundle_ip="127.0.0.1",
        agent_subnet="127.0.0.0/8",
        agent_ip=AGENT,
        state_dir=str(tmp_path / "state"),
        **extra,  # type: ignore[arg-type]
    )
    return write_config(tmp_path / "bundle.json", config)


@pytest.mark.parametrize(("allowed", "works"), [(STRANGER, True), (AGENT, False)])
def test_git_gate_serves_only_its_allowed_client(tmp_path: Path, allowed: str, works: bool) -> None:
    """git cannot choose its source address, so the client is 127.0.0.1 and the allowed one
    varies: served when it is the allowed client, refused (clone and push alike) otherwise."""
    upstream = seed_upstream(tmp_path)
    config = _config(
        tmp_path,
        git=(GitUpstreamConfig("origin", f"file://{upstream}", ("agent/*",)),),
    )
    port = free_port()
    args = ["--config", str(config), "--listen", "127.0.0.1", "--port", str(port)]
    args += ["--repos-dir", str(tmp_path / "gate"), "--allowed-client", allowed]
    with service("bottle_engine.bundle.gitgate", args, port, tmp_path / "gate.log"):
        listed = git(tmp_path, "ls-remote", f"git://127.0.0.1:{port}/origin", check=False)

    if works:
        assert listed.returncode == 0 and "refs/heads/main" in listed.stdout, listed.stderr
    else:
        assert listed.returncode != 0
        assert "refs/heads/main" not in listed.stdout
        assert "refused a connection from 127.0.0.1: only the agent" in listed.stderr


def _post_initialize(port: int, source: str) -> tuple[int, str]:
    return post_mcp(port, initialize_body("stranger"), source=source, host=f"127.0.0.1:{port}")


def _supervise(tmp_path: Path) -> tuple[int, Any]:
    config = _config(tmp_path, supervise=True)
    port = free_port()
    args = ["--config", str(config), "--listen", "127.0.0.1", "--port", str(port)]
    args += ["--allowed-client", AGENT]
    return port, service("bottle_engine.bundle.supervise", args, port, tmp_path / "supervise.log")


def test_supervise_answers_its_allowed_client_and_closes_others(tmp_path: Path) -> None:
    port, running = _supervise(tmp_path)
    with running:
        agent_status, agent_body = _post_initialize(port, AGENT)
        with pytest.raises(OSError):  # closed before a byte of the request is read
            _post_initialize(port, STRANGER)

    assert agent_status == 200 and "bot-bottle-supervise" in agent_body
    log = (tmp_path / "supervise.log").read_text()
    assert "refused a connection from 127.0.0.1: only the agent of this bottle" in log


def test_supervise_keeps_its_connections_for_the_agent(tmp_path: Path) -> None:
    """A peer that is not the agent holding half-sent requests neither takes the server's
    memory nor the connections it keeps for the agent (`MAX_CONNECTIONS`)."""
    port, running = _supervise(tmp_path)
    with running:
        held = [
            socket.create_connection(("127.0.0.1", port), source_address=(STRANGER, 0))
            for _ in range(MAX_CONNECTIONS)
        ]
        head = f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 9999\r\n\r\n"
        try:
            for connection in held:
                with contextlib.suppress(OSError):  # closed by the server already
                    connection.sendall(head.encode() + b"{")
            agent_status, agent_body = _post_initialize(port, AGENT)
        finally:
            for connection in held:
                connection.close()

    assert agent_status == 200 and "bot-bottle-supervise" in agent_body


def _proxy_request(port: int, source: str) -> bytes:
    """A proxied request; whatever the proxy answers before it closes (b"" for nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        s.sendall(b"GET http://denied.invalid/ HTTP/1.1\r\nHost: denied.invalid\r\n\r\n")
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received:
                    break
        except ConnectionResetError:
            pass
        return received


def test_proxy_closes_connections_from_anyone_but_its_allowed_client(tmp_path: Path) -> None:
    config = _config(tmp_path)
    port = free_port()
    args = ["--config", str(config), "--listen-host", "127.0.0.1", "--listen-port", str(port)]
    args += ["--allowed-client", AGENT]
    with service("bottle_engine.bundle.egress", args, port, tmp_path / "egress.log"):
        from_agent = _proxy_request(port, AGENT)
        from_stranger = _proxy_request(port, STRANGER)

    assert from_agent.startswith(b"HTTP/1.1 403"), from_agent  # the proxy judged the request
    assert from_stranger == b""
    assert "refused a connection from 127.0.0.1" in (tmp_path / "egress.log").read_text()


def test_services_run_alone_listen_on_loopback_by_default() -> None:
    """Run by hand, without the supervisor's flags, no service listens on every address."""
    for module in ("gitgate", "supervise", "egress"):
        result = subprocess.run(
            ["python3", "-m", f"bottle_engine.bundle.{module}", "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "0.0.0.0" not in result.stdout
