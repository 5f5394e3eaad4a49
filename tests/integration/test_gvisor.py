"""Bottles under gVisor on the real daemon: the choice, what runs, and what the sandbox bounds.

Runs where the engine's `runtime = "auto"` picks gVisor; skipped with the reason elsewhere,
failed instead in CI or on a machine `scripts/setup` prepared (see tests/gvisor_helpers.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.plan import AGENT_HOME, AGENT_UID
from tests.bottle_fixtures import (
    TEST_SECONDS,
    BottleWorld,
    bottle_table,
    running_bottle,
    sleeping_agent,
    world_env,
    world_for,
)
from tests.conftest import REPO_ROOT
from tests.gvisor_helpers import require_gvisor, runtimes_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FILL_MIB = 1024  # twice the test bottle's memory limit (512m)


@dataclasses.dataclass(frozen=True)
class Launched:
    record: Any
    output: str  # what `bottle-engine launch` printed on stderr


def _as_agent(world: BottleWorld, record: Any, script: str) -> tuple[int, str]:
    from bottle_engine.backends import backend_named

    with world_env(world):
        return backend_named("docker").exec_as_agent(record, ["sh", "-c", script])


@contextlib.contextmanager
def launched_by_the_cli(world: BottleWorld, agent: str) -> Iterator[Launched]:
    """`agent` of `world` launched by the CLI, as a user launches one; removed afterwards."""
    command = [sys.executable, "-m", "bottle_engine", "launch", "--detach"]
    result = subprocess.run(
        [*command, "-f", str(world.manifest), agent],
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    slug = result.stdout.strip().splitlines()[-1]
    with world_env(world):
        record = lifecycle.find(slug)
    try:
        yield Launched(record, result.stderr)
    finally:
        with world_env(world):
            lifecycle.stop(slug, remove=True)


@pytest.fixture(scope="module")
def launched(bottle_world: BottleWorld, docker_client: Any) -> Iterator[Launched]:
    """A bottle launched by the CLI with `runtime = "auto"`."""
    with launched_by_the_cli(bottle_world, "sandbox") as bottle:
        if bottle.record.resources.runtime != "runsc":
            image = docker_client.containers.get(bottle.record.name).image.id
            require_gvisor(bottle_world, image, "gVisor's bottle tests")
        yield bottle


def test_auto_picks_gvisor_and_the_launch_output_says_why(launched: Launched) -> None:
    assert "sandbox runtime gVisor (runsc): auto: runsc is registered and passes the self-test" in (
        launched.output
    )
    assert launched.record.resources.runtime == "runsc"


# The repository's agent image with an `ls` first on PATH that fails: the tools the self-test
# runs fail in it, as a hostile build context or a shared cache's pusher can make them.
FAILS_THE_SELF_TEST = """\
USER root
RUN printf '#!/bin/sh\\nexit 1\\n' > /usr/local/bin/ls && chmod 755 /usr/local/bin/ls
USER agent
"""


def test_an_agent_image_failing_the_self_test_still_runs_under_gvisor(
    launched: Launched, bottle_world: BottleWorld, docker_client: Any, tmp_path: Path
) -> None:
    """With `auto`, an image that failed the self-test got runc: the agent image chose the
    weaker sandbox. The self-test runs on the bundle image, which this machine built."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8") + "\n" + FAILS_THE_SELF_TEST
    )
    template = sleeping_agent("downgrade") + (
        bottle_table().replace('"{repo}/Dockerfile"', '"{dockerfile}"')
    )
    world = world_for(bottle_world, tmp_path, template, dockerfile=dockerfile)
    with launched_by_the_cli(world, "downgrade") as bottle:
        assert "sandbox runtime gVisor (runsc)" in bottle.output, bottle.output
        assert runtimes_of(docker_client, bottle.record) == {"runsc"}
        code, output = _as_agent(world, bottle.record, "ls /")
        assert code == 1, output  # the image's own failing ls: it is the image that runs


def test_the_agent_and_its_bundle_both_run_under_gvisor(
    launched: Launched, docker_client: Any
) -> None:
    assert runtimes_of(docker_client, launched.record) == {"runsc"}


def test_the_agent_images_tools_run_under_gvisor(
    launched: Launched, bottle_world: BottleWorld
) -> None:
    code, output = _as_agent(
        bottle_world,
        launched.record,
        "ls / >/dev/null && node -e 'console.log(1 + 1)' && git --version && claude --version",
    )
    assert code == 0, output
    lines = output.strip().splitlines()
    assert lines[0] == "2" and lines[1].startswith("git version")
    assert "Claude Code" in lines[-1], output


def test_the_sandbox_sees_only_its_own_network_namespace(
    launched: Launched, bottle_world: BottleWorld
) -> None:
    """runsc runs with --network=host here: its socket calls go to the host kernel, which must
    mean the container's namespace (one interface, the agent's address), never the host's."""
    code, output = _as_agent(
        bottle_world,
        launched.record,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort; "
        "grep -c . /proc/net/route; hostname -I",
    )
    assert code == 0, output
    *interfaces, routes, addresses = output.split()
    assert interfaces == ["eth0", "lo"]
    head, last = launched.record.bundle_ip.rsplit(".", 1)
    assert int(routes) >= 1
    assert addresses == f"{head}.{int(last) + 1}"  # the agent's address on the internal bridge


def test_the_secret_scan_reads_what_the_agent_wrote_inside_the_sandbox(
    launched: Launched, bottle_world: BottleWorld
) -> None:
    """Under gVisor the agent's writes live in the sandbox's memory, where Docker's archive API
    (the host's layer) cannot see them: a leak written there must still be found."""
    from bottle_engine.backends import backend_named

    marker = "leaked-" + os.urandom(8).hex()
    code, output = _as_agent(
        bottle_world, launched.record, f"mkdir -p ~/notes && echo {marker} > ~/notes/found.txt"
    )
    assert code == 0, output
    with world_env(bottle_world):
        places = {
            place: b"".join(chunks)
            for place, chunks in backend_named("docker").secret_haystacks(
                launched.record, TEST_SECONDS
            )
        }
    assert marker.encode() in places[AGENT_HOME]


def test_stop_drops_the_agents_writes_and_resume_brings_back_the_launch(
    launched: Launched, bottle_world: BottleWorld
) -> None:
    """The documented price of the memory-backed root: what the agent wrote is gone after a
    stop; what the launch put in (prompt, settings, workspace) is there again."""
    code, output = _as_agent(bottle_world, launched.record, "echo kept > ~/scratch.txt")
    assert code == 0, output
    with world_env(bottle_world):
        lifecycle.stop(launched.record.slug)
        lifecycle.resume(launched.record.slug)
    code, output = _as_agent(
        bottle_world, launched.record, "test ! -e ~/scratch.txt && test -s ~/.claude.json"
    )
    assert code == 0, output


def _bytes_under(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def test_the_agents_disk_writes_are_charged_to_its_memory_not_the_hosts_disk(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    """A hostile agent writes twice its memory limit: under runc that lands on the host's disk
    (Docker's writable layer is unbounded on overlay2 without quotas); under gVisor it fills the
    sandbox's memory, so the sandbox is stopped at its limit and the host's disk stays as it was.
    """
    world = dataclasses.replace(bottle_world, env={**bottle_world.env, "BOTTLE_RUNTIME": "runsc"})
    with running_bottle(world, "diskfill") as record:
        container = docker_client.containers.get(record.name)
        upper = Path(container.attrs["GraphDriver"]["Data"]["UpperDir"])
        before = _bytes_under(upper)
        # Detached: when the sandbox dies, an attached exec's stream is not always closed.
        container.exec_run(
            ["sh", "-c", f"dd if=/dev/zero of=$HOME/fill bs=1M count={FILL_MIB}; touch $HOME/done"],
            user=f"{AGENT_UID}",
            detach=True,
        )
        finished = False
        for _ in range(300):  # bounded wait: the sandbox dies, or dd ends
            container.reload()
            if container.status != "running":
                break
            code, _ = container.exec_run(["test", "-e", f"{AGENT_HOME}/done"])
            if code == 0:
                finished = True
                break
            time.sleep(1)
        state = container.attrs["State"]
        grown = _bytes_under(upper) - before
        assert grown < 64 * 2**20, f"{grown} bytes reached the host's disk"
        if finished:  # the sandbox survived: then the write must have been cut short
            _, size = container.exec_run(["stat", "-c", "%s", f"{AGENT_HOME}/fill"])
            assert int(size) < FILL_MIB * 2**20, state
        else:
            assert state["OOMKilled"] or state["Status"] != "running", state
