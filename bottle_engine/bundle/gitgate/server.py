"""Running the gate: prepare the repositories, mirror once, then serve them with ``git daemon``."""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path
from types import FrameType

from bottle_engine.bundle.clients import ALLOWED_CLIENT_ENV
from bottle_engine.bundle.config import GIT_GATE_REPOS_NAME, BundleConfig
from bottle_engine.bundle.gitgate.gate import mirror, prepare_repos, repo_path
from bottle_engine.bundle.gitgate.hook import PUSH_CPU_ENV
from bottle_engine.bundle.gitgate.served import served_values
from bottle_engine.errors import BottleError
from bottle_engine.git import spawn_git
from bottle_engine.limits import GIT_GATE_MAX_CONNECTIONS, GIT_GATE_PUSH_CPU_SECONDS


def serve(
    config_path: Path,
    listen: str,
    port: int,
    repos_dir: Path | None = None,
    allowed_client: str | None = None,
    push_cpu_seconds: int = GIT_GATE_PUSH_CPU_SECONDS,
) -> int:
    """Serve until the daemon exits or SIGTERM/SIGINT arrives; returns the exit code.

    With `allowed_client`, the access hook refuses every request from another address (git
    daemon has no such option itself; the hook finds the peer in REMOTE_ADDR). Every process
    of a push gets at most `push_cpu_seconds` of CPU (see `hook.bound_push_cpu`).
    """
    config = BundleConfig.load(config_path)
    # No core dumps from the daemon, its hooks or any git they run: the CPU bound ends a push's
    # process with SIGXCPU, whose default action dumps core, and under the usual core_pattern
    # ("core", in the process's working directory) with the core size Docker's systemd unit
    # gives containers, index-pack's dump (150 MB for one 2 MiB push) landed in the gate's
    # repository in the state dir, outside the store budget.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.environ[PUSH_CPU_ENV] = str(push_cpu_seconds)  # inherited by the daemon and its hook
    if allowed_client is not None:
        os.environ[ALLOWED_CLIENT_ENV] = allowed_client  # inherited by the daemon and its hook
    repos_dir = repos_dir or Path(config.state_dir) / GIT_GATE_REPOS_NAME
    access_hook = prepare_repos(config, config_path, repos_dir)
    for upstream in config.git:
        try:
            mirror(repo_path(repos_dir, upstream.name), upstream, served_values(config, upstream))
        except BottleError as exc:  # the upstream may come up later; every access retries
            sys.stderr.write(f"git gate: initial mirror of {upstream.name!r} failed: {exc}\n")
    daemon = spawn_git(
        [
            "daemon",
            "--reuseaddr",
            f"--listen={listen}",
            f"--port={port}",
            # Each connection costs a git process and a Python access hook: bounded, so that a
            # flood of clones meets this limit before the bundle's memory limit.
            f"--max-connections={GIT_GATE_MAX_CONNECTIONS}",
            f"--base-path={repos_dir}",
            "--export-all",
            "--enable=receive-pack",
            "--informative-errors",
            f"--access-hook={access_hook}",
            "--log-destination=stderr",
            *(str(repo_path(repos_dir, u.name)) for u in config.git),
        ],
        doing="starting git daemon",
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        daemon.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return daemon.wait()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
