"""The bundle's supervisor with real child processes on loopback (no Docker needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.supervisor import services_for
from tests.bundle_helpers import free_port

LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[3], int(sys.argv[1]))); s.listen()\n"
    "time.sleep(float(sys.argv[2]))\n"
)
DRIVER = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from bottle_engine.bundle.supervisor import Service, Supervisor\n"
    "spec = json.loads(sys.argv[1])\n"
    "services = [\n"
    "    Service(s['name'], tuple(s['argv']), s['port'], s.get('host', '127.0.0.1'))\n"
    "    for s in spec['services']\n"
    "]\n"
    "sys.exit(Supervisor(services, Path(spec['ready']), ready_timeout=20).run())\n"
)


def listener(
    name: str, port: int, lifetime: float = 600.0, host: str = "127.0.0.1"
) -> dict[str, object]:
    return {
        "name": name,
        "argv": [sys.executable, "-c", LISTEN, str(port), str(lifetime), host],
        "port": port,
        "host": host,
    }


def start(tmp_path: Path, services: list[dict[str, object]]) -> tuple[subprocess.Popen[str], Path]:
    ready = tmp_path / "bundle.ready"
    spec = json.dumps({"services": services, "ready": str(ready)})
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, spec], stderr=subprocess.PIPE, text=True
    )
    return process, ready


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the supervisor never became ready"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ready_file_lists_services_and_sigterm_stops_them(tmp_path: Path) -> None:
    services = [listener("egress proxy", free_port()), listener("git gate", free_port())]
    process, ready = start(tmp_path, services)
    try:
        wait_for(ready, process)
        report = json.loads(ready.read_text())
        assert sorted(report["services"]) == ["egress proxy", "git gate"]
        pids = [entry["pid"] for entry in report["services"].values()]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "egress proxy ready on 127.0.0.1:" in stderr and "git gate ready on 127.0.0.1:" in stderr
    assert not ready.exists()
    time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)


def test_readiness_is_probed_on_the_address_the_service_listens_on(tmp_path: Path) -> None:
    """In a bottle the services listen on the bundle's internal address only: a probe of
    127.0.0.1 would never see them (and one that did would see something else)."""
    services = [listener("egress proxy", free_port(), host="127.0.0.2")]
    process, ready = start(tmp_path, services)
    try:
        wait_for(ready, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "egress proxy ready on 127.0.0.2:" in stderr


def test_a_service_that_dies_stops_the_bundle_with_a_line_naming_it(tmp_path: Path) -> None:
    survivor_port = free_port()
    services = [listener("egress proxy", survivor_port), listener("supervise", free_port(), 2.0)]
    process, ready = start(tmp_path, services)
    try:
        wait_for(ready, process)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 1
    assert "supervise exited with code 0; stopping the bundle" in stderr
    assert not ready.exists()


def test_a_service_that_fails_to_start_means_no_readiness(tmp_path: Path) -> None:
    broken = {
        "name": "egress proxy",
        "argv": [sys.executable, "-c", "raise SystemExit(3)"],
        "port": free_port(),
    }
    process, ready = start(tmp_path, [broken])
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "egress proxy exited with code 3" in stderr
    assert not ready.exists()


@pytest.mark.parametrize(
    ("git", "supervise", "names"),
    [
        (False, False, ["egress proxy"]),
        (True, False, ["egress proxy", "git gate"]),
        (False, True, ["egress proxy", "supervise"]),
        (True, True, ["egress proxy", "git gate", "supervise"]),
    ],
)
def test_services_follow_the_config(git: bool, supervise: bool, names: list[str]) -> None:
    upstreams = (GitUpstreamConfig("origin", "ssh://git@example.invalid/r.git", ("main",)),)
    config = BundleConfig(
        slug="s",
        bundle_ip="10.0.0.2",
        agent_subnet="10.0.0.0/24",
        agent_ip="10.0.0.3",
        git=upstreams if git else (),
        supervise=supervise,
    )
    services = services_for(
        config, config_path=Path("/c.json"), python="py", proxy_python="proxy-py"
    )
    assert [s.name for s in services] == names
    assert services[0].argv == (
        *("proxy-py", "-m", "bottle_engine.bundle.egress", "--config", "/c.json"),
        *("--allowed-client", "10.0.0.3", "--listen-host", "10.0.0.2"),
    )
    assert all(s.argv[0] == "py" for s in services[1:])
    for service in services[1:]:
        assert service.argv[-6:] == (
            *("--config", "/c.json", "--allowed-client", "10.0.0.3"),
            *("--listen", "10.0.0.2"),
        )
    assert {s.host for s in services} == {"10.0.0.2"}


def test_a_config_without_the_agents_address_starts_no_service() -> None:
    config = BundleConfig(slug="s", bundle_ip="10.0.0.2", agent_subnet="10.0.0.0/24")
    with pytest.raises(ValueError, match="agent_ip"):
        services_for(config, config_path=Path("/c.json"))
