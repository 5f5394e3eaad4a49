"""Helpers shared by the git gate and supervise integration tests (no tests in here).

Both services are started the way the bundle starts them, ``python -m <module>``, as
subprocesses bound to loopback; every process is stopped in a ``finally``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bottle_engine.bundle.config import BundleConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, config: BundleConfig) -> Path:
    path.write_text(config.to_json())
    return path


@contextmanager
def service(
    module: str, args: Sequence[str], port: int, log: Path, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m module args`` until the block ends; ready once `port` accepts."""
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{module} exited early:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{module} did not listen:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
