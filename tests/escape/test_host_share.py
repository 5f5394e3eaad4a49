"""Invariant 6, log space: a hostile agent, or a bundle it took over, cannot grow the host's
container logs past their bound.

Docker keeps what a container's main process prints in a file on the host (the json-file
driver's LogPath, under /var/lib/docker/containers) and, unless told otherwise, never rotates
it. Each attack writes three times the bound, then the test measures the files on the host.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.limits import CONTAINER_LOG_BYTES
from tests.bottle_fixtures import BottleWorld, agent_exec, running_bottle, world_env
from tests.polling import wait_for

FLOOD_BYTES = 3 * CONTAINER_LOG_BYTES

END_MARK = "end-of-the-flood"
# Lines of 1000 characters to the main process's output (docker-init, PID 1, runs as the
# container's user: its stdout is what Docker logs), then a last line to wait for.
FLOOD = (
    f"head -c {FLOOD_BYTES} /dev/zero | tr '\\0' x | fold -w 999 > /proc/1/fd/1 && "
    f"echo {END_MARK} > /proc/1/fd/1 && echo flooded"
)


def _log_bytes(container: Any) -> int:
    """Bytes the daemon keeps on the host for `container`'s output: the log and its rotations."""
    container.reload()
    log_path = Path(container.attrs["LogPath"])
    assert log_path.name, f"{container.name} has no log file: {container.attrs['HostConfig']}"
    return sum(
        entry.stat().st_size
        for entry in log_path.parent.iterdir()
        if entry.name.startswith(log_path.name)
    )


def _wait_for_the_end(container: Any) -> None:
    """The daemon copies the output to the file as it reads it: wait until it has the last line,
    so that an unbounded log has all of the flood by then."""
    wait_for(
        lambda: END_MARK in container.logs(tail=2).decode(errors="replace"),
        f"the end of the flood in the log of {container.name}",
    )


@pytest.fixture(scope="module")
def logfill_bottle(bottle_world: BottleWorld) -> Any:
    if os.geteuid() != 0:
        pytest.skip("the container log files on the host are readable by root only")
    with running_bottle(bottle_world, "logfill") as record:
        yield record


def test_the_agent_cannot_grow_its_container_log_past_the_bound(
    bottle_world: BottleWorld, logfill_bottle: Any, docker_client: Any
) -> None:
    code, output = agent_exec(bottle_world, logfill_bottle, ["sh", "-c", FLOOD])
    assert code == 0 and "flooded" in output, output
    agent = docker_client.containers.get(logfill_bottle.name)
    _wait_for_the_end(agent)
    kept = _log_bytes(agent)
    assert kept <= CONTAINER_LOG_BYTES, f"{kept} bytes of log kept for {FLOOD_BYTES} written"
    # What is kept is the newest output, and `bottle-engine logs` still reads it.
    with world_env(bottle_world):
        replay = b"".join(lifecycle.logs(logfill_bottle.slug))
    assert END_MARK.encode() in replay
    assert len(replay) <= CONTAINER_LOG_BYTES


def test_a_taken_over_bundle_cannot_grow_its_container_log_past_the_bound(
    logfill_bottle: Any, docker_client: Any
) -> None:
    bundle = docker_client.containers.get(logfill_bottle.bundle_name)
    # As the bundle's own user, which is what code running in a taken-over bundle is.
    result = bundle.exec_run(["sh", "-c", FLOOD])
    assert result.exit_code == 0, result.output
    _wait_for_the_end(bundle)
    kept = _log_bytes(bundle)
    assert kept <= CONTAINER_LOG_BYTES, f"{kept} bytes of log kept for {FLOOD_BYTES} written"
