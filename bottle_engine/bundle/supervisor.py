"""The bundle's supervisor: start the enabled services, report readiness, die loudly.

`services_for` (pure) says which services a `BundleConfig` enables, each listening on the
bundle's internal address and answering the agent's address only (bundle/clients.py).
`Supervisor.run` starts them, waits until each one's port accepts connections on that address,
writes `BundleConfig.ready_file` (the engine's signal that the bottle may start), and then watches
them: when one exits, the others are stopped and the supervisor exits non-zero with a line naming
the service. SIGTERM/SIGINT are forwarded.

Everything the services write in the bottle's state dir (audit logs, approvals, the CA key, the
git gate's repositories) is private to the bundle's user: `main` sets the umask to 077.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bottle_engine.bundle.config import CONFIG_PATH, BundleConfig
from bottle_engine.bundle.service_cli import EGRESS, GIT_GATE, SUPERVISE
from bottle_engine.bundle.waiting import (
    POLL_SECONDS,
    POOL_CONFIG_PATH,
    WAIT_FLAG,
    config_digest,
)

PROXY_PYTHON_ENV = "BOTTLE_PROXY_PYTHON"  # the proxy venv's python (mitmproxy lives there)
EXIT_SERVICE_FAILED = 1
EXIT_NOT_READY = 3
EXIT_BAD_CONFIG = 2
WATCH_SECONDS = 0.2  # once ready: how often the services are checked for an exit


@dataclass(frozen=True)
class Service:
    """One process of the bundle and the address and port that say it is up."""

    name: str
    argv: tuple[str, ...]
    port: int
    host: str = "127.0.0.1"


def services_for(
    config: BundleConfig,
    *,
    config_path: Path = CONFIG_PATH,
    python: str = sys.executable,
    proxy_python: str | None = None,
) -> list[Service]:
    """The services `config` enables: always the egress proxy, the others when configured.

    Each listens on the bundle's internal address and answers the agent's address only; a
    config without an agent address raises ValueError rather than serve anyone.
    """
    if not config.agent_ip or not config.bundle_ip:
        raise ValueError(
            "the bundle config names no agent_ip (or no bundle_ip): the services would not know "
            "whom to answer"
        )
    every = _services(config.bundle_ip, config.agent_ip, config_path, python, proxy_python, ())
    enabled = {EGRESS.title, *([GIT_GATE.title] if config.git else [])}
    enabled |= {SUPERVISE.title} if config.supervise else set()
    return [service for service in every if service.name in enabled]


def pool_services(
    bundle_ip: str,
    agent_ip: str,
    *,
    config_path: Path = POOL_CONFIG_PATH,
    python: str = sys.executable,
    proxy_python: str | None = None,
) -> list[Service]:
    """A warm pool member's services: all of them, each loaded and waiting for the config
    (`bundle/waiting.py`); those the config does not enable then exit without listening."""
    if not agent_ip or not bundle_ip:
        raise ValueError("a pool member needs its bundle and agent addresses")
    return _services(bundle_ip, agent_ip, config_path, python, proxy_python, (WAIT_FLAG,))


def _services(
    listen: str,
    agent_ip: str,
    config_path: Path,
    python: str,
    proxy_python: str | None,
    extra: tuple[str, ...],
) -> list[Service]:
    return [
        Service(
            command.title,
            command.argv(python_for, config_path, listen, agent_ip, extra),
            command.port,
            listen,
        )
        for command, python_for in (
            (EGRESS, proxy_python or python),  # mitmproxy lives in the proxy venv
            (GIT_GATE, python),
            (SUPERVISE, python),
        )
    ]


def log(message: str) -> None:
    print(f"bundle: {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Runs `services` until one exits or a stop signal arrives."""

    def __init__(
        self,
        services: Sequence[Service],
        ready_file: Path,
        *,
        ready_timeout: float = 120.0,
        poll_seconds: float = 0.02,
        stop_grace_seconds: float = 10.0,
        config_path: Path | None = None,
        pool_member: tuple[str, str] | None = None,
    ) -> None:
        self.services = list(services)
        self.ready_file = ready_file
        self.config_path = config_path
        # A warm pool member: (bundle ip, agent ip) it was started for; its services wait for
        # the config, which must name these same addresses.
        self.pool_member = pool_member
        self.ready_timeout = ready_timeout
        self.poll_seconds = poll_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop_signal: int | None = None
        self._retired: list[subprocess.Popen[bytes]] = []  # services a pool member let go

    def run(self) -> int:
        """Start, wait for readiness, watch; returns the exit code."""
        self.ready_file.unlink(missing_ok=True)  # left by an earlier run of this bottle
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for service in self.services:
                self.processes[service.name] = subprocess.Popen(service.argv)
                log(f"started {service.name} (pid {self.processes[service.name].pid})")
            code = self._wait_config() if self.pool_member is not None else None
            if code is None:
                code = self._wait_ready()
            if code is None:
                self._write_ready()
                code = self._watch()
            return code
        finally:
            self.ready_file.unlink(missing_ok=True)
            self._stop_all()
            for process in self._retired:
                process.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait_ready(self) -> int | None:
        pending = list(self.services)
        deadline = time.monotonic() + self.ready_timeout
        while pending:
            failed = self._exited()
            if failed is not None:
                return failed
            if self._stop_signal is not None:
                return 0
            for service in list(pending):
                if _accepts(service.host, service.port):
                    log(f"{service.name} ready on {service.host}:{service.port}")
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                names = ", ".join(f"{s.name} ({s.host}:{s.port})" for s in pending)
                log(f"not ready after {self.ready_timeout:.0f}s: {names}; stopping the bundle")
                return EXIT_NOT_READY
            if pending:
                time.sleep(self.poll_seconds)
        return None

    def _wait_config(self) -> int | None:
        """A pool member: wait for the config, check it is for this member's addresses, and
        let go of the services it does not enable (they exit by themselves, never listening)."""
        assert self.config_path is not None and self.pool_member is not None
        log("warm: waiting for a bottle's config")
        while not self.config_path.exists():
            failed = self._exited()
            if failed is not None and not self.config_path.exists():
                return failed  # (with the config there, a service not enabled may just be done)
            if self._stop_signal is not None:
                return 0
            time.sleep(POLL_SECONDS)
        try:
            config = BundleConfig.load(self.config_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log(f"cannot read the bundle config {self.config_path}: {exc}")
            return EXIT_BAD_CONFIG
        if (config.bundle_ip, config.agent_ip) != self.pool_member:
            log(
                f"the config is for {config.bundle_ip}/{config.agent_ip}, this member serves "
                f"{self.pool_member[0]}/{self.pool_member[1]}; stopping"
            )
            return EXIT_BAD_CONFIG
        enabled = {s.name for s in services_for(config, config_path=self.config_path)}
        for service in [s for s in self.services if s.name not in enabled]:
            # It never listens (it exits by itself on this config); killed rather than waited
            # for, since an interpreter's exit is a good part of a claim's time here.
            self.services.remove(service)
            process = self.processes.pop(service.name)
            process.kill()
            self._retired.append(process)
        log(f"config for bottle {config.slug} loaded")
        return None

    def _watch(self) -> int:
        while self._stop_signal is None:
            failed = self._exited()
            if failed is not None:
                return failed
            for process in self._retired:
                process.poll()  # reaps it once it is gone
            time.sleep(max(self.poll_seconds, WATCH_SECONDS))
        log(f"signal {self._stop_signal} received; stopping the services")
        return 0

    def _exited(self) -> int | None:
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                log(f"{name} exited with code {code}; stopping the bundle (see its output above)")
                return EXIT_SERVICE_FAILED
        return None

    def _write_ready(self) -> None:
        report = {
            "config_sha256": self._config_digest(),
            "pid": os.getpid(),
            "time": time.time(),
            "services": {
                s.name: {"port": s.port, "pid": self.processes[s.name].pid} for s in self.services
            },
        }
        temporary = self.ready_file.with_name(self.ready_file.name + ".tmp")
        temporary.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(report, sort_keys=True))
        temporary.replace(self.ready_file)
        log("ready")

    def _config_digest(self) -> str | None:
        if self.config_path is None:
            return None
        try:
            return config_digest(self.config_path.read_bytes())
        except OSError:
            return None

    def _stop_all(self) -> None:
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_seconds
        for process in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def main(argv: Sequence[str] | None = None, config_path: Path = CONFIG_PATH) -> int:
    os.umask(0o077)  # the state dir is shared with the host: nothing in it is for other users
    parser = argparse.ArgumentParser(prog="python -m bottle_engine.bundle")
    parser.add_argument(
        "--pool",
        nargs=2,
        metavar=("BUNDLE_IP", "AGENT_IP"),
        help="a warm pool member: load every service, serve nothing until the engine writes "
        f"the config to {POOL_CONFIG_PATH}",
    )
    args = parser.parse_args(argv)
    proxy_python = os.environ.get(PROXY_PYTHON_ENV)
    if args.pool:
        bundle_ip, agent_ip = args.pool
        services = pool_services(bundle_ip, agent_ip, proxy_python=proxy_python)
        ready_file = BundleConfig(slug="", bundle_ip=bundle_ip, agent_subnet="").ready_file
        return Supervisor(
            services, ready_file, config_path=POOL_CONFIG_PATH, pool_member=(bundle_ip, agent_ip)
        ).run()
    try:
        config = BundleConfig.load(config_path)
        services = services_for(config, config_path=config_path, proxy_python=proxy_python)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"cannot read the bundle config {config_path}: {exc}")
        return EXIT_BAD_CONFIG
    return Supervisor(services, config.ready_file, config_path=config_path).run()
