"""A warm pool member's bundle processes on loopback (no Docker): real services and the real
supervisor, waiting for a config; what they serve before it comes, and what they check in it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.waiting import WAIT_FLAG, warm_mark
from tests.bundle_helpers import free_port

LOOPBACK = "127.0.0.1"


def _refused(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def _wait(
    predicate: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None or predicate(), f"exited with {process.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _loopback_config(state_dir: Path, agent_ip: str) -> BundleConfig:
    """A plain bottle config (no git, no supervise) served on loopback for `agent_ip`."""
    return BundleConfig(
        slug="s",
        bundle_ip=LOOPBACK,
        agent_subnet="127.0.0.0/8",
        agent_ip=agent_ip,
        state_dir=str(state_dir),
    )


def _write_config(path: Path, config: BundleConfig) -> bytes:
    data = config.to_json().encode()
    temporary = path.with_name(".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return data


@pytest.mark.parametrize(
    ("module", "mark", "port_flag"),
    [
        ("bottle_engine.bundle.gitgate", "gitgate", "--port"),
        ("bottle_engine.bundle.supervise", "supervise", "--port"),
        ("bottle_engine.bundle.egress", "egress", "--listen-port"),
    ],
)
def test_a_waiting_service_listens_on_nothing_and_one_not_enabled_never_does(
    tmp_path: Path, module: str, mark: str, port_flag: str
) -> None:
    port = free_port()
    config_path = tmp_path / "bundle.json"
    listen = ["--listen-host" if module.endswith("egress") else "--listen", LOOPBACK]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", module, "--config", str(config_path), WAIT_FLAG),
            *(*listen, port_flag, str(port), "--allowed-client", LOOPBACK),
        ],
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group: whatever it starts goes with it
    )
    try:
        _wait(lambda: warm_mark(tmp_path, mark).exists(), process)
        time.sleep(0.5)
        assert process.poll() is None and _refused(port)  # loaded, waiting, serving nothing
        if mark == "egress":
            assert (tmp_path / "ca" / "mitmproxy-ca-cert.pem").is_file()  # made while warm
            assert (tmp_path / "ca").stat().st_mode & 0o077 == 0
            return
        # A bottle with neither git nor supervise: the service goes without ever listening.
        _write_config(config_path, _loopback_config(tmp_path, LOOPBACK))
        assert process.wait(timeout=60) == 0, process.communicate()[1]
        assert _refused(port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _listener(port: int) -> tuple[str, ...]:
    """A fake service that waits for the config like the real ones, then listens."""
    script = (
        "import socket, sys, time, os\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.01)\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(600)\n"
    )
    return (sys.executable, "-c", script, str(port))


def _run_supervisor(tmp_path: Path, member: tuple[str, str], port: int) -> subprocess.Popen[bytes]:
    config_path = tmp_path / "bundle.json"
    driver = (
        "import sys\nfrom pathlib import Path\n"
        "from bottle_engine.bundle.supervisor import Service, Supervisor\n"
        f"service = Service('egress proxy', {(*_listener(port), str(config_path))!r}, {port})\n"
        f"sys.exit(Supervisor([service], Path({str(tmp_path / 'bundle.ready')!r}), "
        f"ready_timeout=30, config_path=Path({str(config_path)!r}), pool_member={member!r}).run())"
    )
    return subprocess.Popen([sys.executable, "-c", driver], stderr=subprocess.PIPE)


def test_the_member_answers_with_the_digest_of_the_config_it_loaded(tmp_path: Path) -> None:
    port = free_port()
    process = _run_supervisor(tmp_path, (LOOPBACK, "127.0.0.3"), port)
    try:
        time.sleep(1.0)
        assert not (tmp_path / "bundle.ready").exists() and _refused(port)
        config = _loopback_config(tmp_path, "127.0.0.3")
        data = _write_config(tmp_path / "bundle.json", config)
        _wait(lambda: (tmp_path / "bundle.ready").exists(), process)
        report = json.loads((tmp_path / "bundle.ready").read_text())
        assert report["config_sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        process.kill()
        process.wait()


def test_a_config_for_other_addresses_is_refused_and_never_served(tmp_path: Path) -> None:
    """The attack: hand a member a config that names another agent address (say, one the
    attacker holds on the same network) than the one the member was made for."""
    port = free_port()
    process = _run_supervisor(tmp_path, (LOOPBACK, "127.0.0.3"), port)
    try:
        config = _loopback_config(tmp_path, "127.0.0.9")
        _write_config(tmp_path / "bundle.json", config)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2
    assert b"this member serves" in stderr
    assert not (tmp_path / "bundle.ready").exists()
