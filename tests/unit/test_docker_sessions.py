"""The first bytes of an attach or exec session reach the person.

Docker answers an attach (or an exec start) with `101 UPGRADED` and, straight after it on the
same connection, the session's bytes: a live attach replays the agent's output so far at once.
docker-py reads that head through a buffered reader; whatever came with it stayed in the
reader, and a relay reading the socket under it lost up to 8 KiB of the agent's output
whenever the daemon was quick (a real attach did, 1 time in 20 here). A daemon of ours on a
Unix socket sends head and bytes in one write, the way a quick daemon does, to the real
docker-py; the head is the real daemon's, byte for byte.
"""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docker
import pytest

from tests.bottle_fixtures import REPO_ROOT
from tests.hostile_text import run_in_terminal

# What Docker 20.10 answers to an attach, as read off its socket.
UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)
AGENT_SAID = b"".join(
    b"line %05d of what the agent wrote before anyone attached\r\n" % n for n in range(200)
)
EXIT_CODE = 7


def _frame(kind: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream (an exec without a TTY)."""
    return bytes([kind, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


class _QuickDaemon(BaseHTTPRequestHandler):
    """The part of the Engine API a session uses; every upgraded answer is one write."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/exec"):
            self._json(201, {"Id": "exec1"})
        elif "/attach" in self.path or self.path.endswith("/start"):
            tty = "/attach" in self.path or json.loads(body).get("Tty", False)
            body = (
                AGENT_SAID if tty else _frame(1, AGENT_SAID[:5000]) + _frame(2, AGENT_SAID[5000:])
            )
            self.wfile.write(UPGRADED + body)
            time.sleep(0.3)  # the session goes on a little, then the agent is done
            self.close_connection = True
        else:  # resize
            self._json(200, {})

    def do_GET(self) -> None:
        self._json(200, {"ExitCode": EXIT_CODE, "Running": False})

    def _json(self, status: int, value: object) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    server = _Server(str(path), _QuickDaemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()


def _session_script(daemon: Path, call: str) -> list[str]:
    """Python that runs one of our session functions against `daemon` and exits with its code."""
    return [
        sys.executable,
        "-c",
        "import sys, types, docker\n"
        "from bottle_engine.dockerapi import containers\n"
        f"client = docker.DockerClient(base_url='unix://{daemon}', version='1.41')\n"
        "agent = types.SimpleNamespace(id='agent1', name='bottle-agent', resize=lambda **_: None)\n"
        f"sys.exit({call})\n",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_a_live_attach_shows_what_came_with_the_daemon_s_answer(daemon: Path) -> None:
    code, shown = run_in_terminal(
        _session_script(daemon, "containers._attach_tty(client, agent) or 0"),
        _env(),
        interactive=True,
    )
    assert code == 0, shown
    assert AGENT_SAID in shown.replace(b"\x1b[5n", b"")


def test_an_exec_without_a_terminal_keeps_its_first_frames_and_its_streams(daemon: Path) -> None:
    result = subprocess.run(
        _session_script(
            daemon,
            "containers.exec_interactive(client, agent, ['true'], user='agent', tty=False)",
        ),
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    assert result.returncode == EXIT_CODE, result.stderr
    assert result.stdout == AGENT_SAID[:5000]
    assert result.stderr == AGENT_SAID[5000:]


@pytest.mark.parametrize("max_bytes", [1000, 1 << 20])
def test_a_bounded_exec_keeps_its_first_frames_and_the_end_of_its_output(
    daemon: Path, max_bytes: int
) -> None:
    from bottle_engine.dockerapi import containers

    client = docker.DockerClient(base_url=f"unix://{daemon}", version="1.41")
    agent = types.SimpleNamespace(id="agent1", name="bottle-agent")
    code, output = containers.exec_bounded(
        client, agent, ["true"], user="1000:1000", max_bytes=max_bytes, seconds=30
    )
    assert code == EXIT_CODE
    assert output == AGENT_SAID[-max_bytes:]  # stdout, then stderr, as they came


def test_a_streamed_exec_keeps_its_first_frames_and_reports_its_exit(daemon: Path) -> None:
    """The secret search reads the bottle's files through this: a frame lost or read out of
    step would hide a value, or stop the search with a parse error."""
    from bottle_engine.dockerapi import containers

    client = docker.DockerClient(base_url=f"unix://{daemon}", version="1.41")
    agent = types.SimpleNamespace(id="agent1", name="bottle-agent")
    read: list[bytes] = []
    with pytest.raises(containers.CommandFailed, match=f"status {EXIT_CODE}"):
        stream = containers.stream_inside(
            client, agent, ["tar", "c", "/"], user="0:0", until=time.monotonic() + 30
        )
        read.extend(stream)
    assert b"".join(read) == AGENT_SAID[:5000]  # stdout only
