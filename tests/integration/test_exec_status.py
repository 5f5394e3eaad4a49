"""`bottle-engine exec` into a real bottle, and its status when a part of it dies.

One bottle for the module: exec runs as the agent (uid, workspace, environment), streams
stdin to its end, keeps stderr apart, gives a TTY under a terminal and passes the exit code
through; then the bundle is killed and `ls`, `ls --json` and the language server's list say
"degraded: bundle down" with `resume`, which repairs it.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bottle_engine import lifecycle
from tests.bottle_fixtures import REPO_ROOT, BottleWorld, running_bottle, world_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def door_bottle(bottle_world: BottleWorld) -> Iterator[Any]:
    with running_bottle(bottle_world, "door") as record:
        yield record


def _env(world: BottleWorld) -> dict[str, str]:
    return {**os.environ, **world.env, "PYTHONPATH": str(REPO_ROOT)}


def engine(
    world: BottleWorld, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bottle_engine", *args],
        env=_env(world),
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_exec_runs_as_the_agent_and_passes_the_exit_code_through(
    bottle_world: BottleWorld, door_bottle: Any
) -> None:
    script = 'id -un; pwd; echo "$HTTPS_PROXY"; echo oops >&2; exit 7'
    done = engine(bottle_world, "exec", door_bottle.slug, "--", "sh", "-c", script)
    assert done.returncode == 7, done.stderr
    user, cwd, proxy = done.stdout.decode().split()
    assert (user, cwd) == ("agent", "/workspace")  # its uid: agent_user.py
    assert door_bottle.bundle_ip in proxy  # the agent's environment: its way out is the bundle
    assert done.stderr == b"oops\n"


def test_exec_streams_stdin_to_its_end(bottle_world: BottleWorld, door_bottle: Any) -> None:
    data = bytes(range(256)) * 512  # binary, larger than one read
    done = engine(bottle_world, "exec", door_bottle.slug, "cat", stdin=data)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_exec_gives_a_tty_when_stdin_is_a_terminal(
    bottle_world: BottleWorld, door_bottle: Any
) -> None:
    command = ["exec", door_bottle.slug, "--", "sh", "-c", "test -t 0 && echo is-a-tty; exit 3"]
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bottle_engine", *command],
        env=_env(bottle_world),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: every holder of the terminal has closed it
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=120) == 3, output
    assert b"is-a-tty" in output


def test_exec_into_an_unknown_bottle_names_it(bottle_world: BottleWorld) -> None:
    done = engine(bottle_world, "exec", "no-such-bottle", "--", "true")
    assert done.returncode == 1
    assert b"no bottle 'no-such-bottle'" in done.stderr


def test_a_dead_bundle_is_reported_with_the_fix_and_resume_repairs_it(
    bottle_world: BottleWorld, door_bottle: Any, docker_client: Any
) -> None:
    slug = door_bottle.slug
    docker_client.containers.get(door_bottle.bundle_name).kill()

    listed = {b["slug"]: b for b in json.loads(engine(bottle_world, "ls", "--json").stdout)}
    assert listed[slug]["status"] == "degraded: bundle down"
    assert listed[slug]["fix"] == f"bottle-engine resume {slug}"
    text = engine(bottle_world, "ls").stdout.decode()
    assert f"run `bottle-engine resume {slug}`" in text

    with world_env(bottle_world):
        from bottle_lsp.engine import Engine

        shown = {b["slug"]: b for b in Engine().list_bottles()}
        assert shown[slug]["status"] == "degraded: bundle down"
        assert shown[slug]["fix"] == f"bottle-engine resume {slug}"

        lifecycle.resume(slug)
        assert {b.slug: b.status.text for b in lifecycle.list_bottles()}[slug] == "running"
