"""`bottle-lsp` as installed: --version, and --tcp for attaching a debugger-friendly client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

from bottle_lsp import __version__


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bottle_lsp", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"bottle-lsp {__version__}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _frame(payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def _read_message(connection: socket.socket) -> dict[str, Any]:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, received
        received += chunk
    header, body = received.split(b"\r\n\r\n", 1)
    length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, body
        body += chunk
    message: dict[str, Any] = json.loads(body[:length])
    return message


def test_tcp_mode_answers_initialize_on_loopback() -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bottle_lsp", "--tcp", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with connection:
            connection.sendall(
                _frame(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {"processId": None, "rootUri": None, "capabilities": {}},
                    }
                )
            )
            reply = _read_message(connection)
        assert reply["result"]["serverInfo"] == {"name": "bottle-lsp", "version": __version__}
        commands = reply["result"]["capabilities"]["executeCommandProvider"]["commands"]
        assert sorted(commands) == [
            "bottle.activity",
            "bottle.agents",
            "bottle.allowHost",
            "bottle.answer",
            "bottle.attach",
            "bottle.launch",
            "bottle.list",
            "bottle.logs",
            "bottle.stop",
            "bottle.trust",
            "bottle.trustReview",
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
