"""`probe`'s secret search runs commands inside the sandbox after the agent ran there, as root.
What they run, and what they read, must not be the agent's choice, and a place they could not
read must not pass as searched.

The bottle runs under runc (the runtime where gVisor is not installed) with the PATH a person
commonly gives it: a directory the agent writes (~/.local/bin) ahead of the system's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.plan import AGENT_HOME, WORKSPACE
from bottle_engine.probes import ENVIRONMENTS
from tests.bottle_fixtures import (
    BottleWorld,
    agent_exec,
    bottle_table,
    running_bottle,
    sleeping_agent,
    world_env,
    world_for,
    world_secret_table,
)
from tests.root_note import LIBRARY, NOTE, build_note_library

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.escape]

AGENT_BIN = f"{AGENT_HOME}/.local/bin"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PRELOAD_PATH = f"{WORKSPACE}/{LIBRARY}"  # the workspace copy's
MANIFEST = (
    sleeping_agent("searched", "copy_cwd = true")
    + bottle_table()
    + 'runtime = "runc"\n'
    + f'env = {{{{ PATH = "{AGENT_BIN}:{SYSTEM_PATH}", LD_PRELOAD = "{PRELOAD_PATH}" }}}}\n'
    + "\n"
    + world_secret_table()
)
RAN_AS = f"{AGENT_HOME}/impostor-ran-as"  # where a planted command notes the uid it ran with
# (made by the agent, writable by all: root without capabilities cannot create a file there)
# Each of the search's commands, planted where the PATH finds it first: it notes who ran it
# and prints nothing, so a search that ran it reads an empty sandbox.
IMPOSTORS = ("timeout", "sh", "tar", "cat", "env", "bash")
PLANT = (
    f"mkdir -p {AGENT_BIN} && : > {RAN_AS} && chmod 666 {RAN_AS} && "
    f"for name in {' '.join(IMPOSTORS)}; do "
    f"printf '#!/bin/dash\\nid -u >> {RAN_AS}\\nexit 0\\n' > {AGENT_BIN}/$name; "
    f"chmod +x {AGENT_BIN}/$name; done"
)


@pytest.fixture(scope="module")
def searched(bottle_world: BottleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("searched")
    build_note_library(directory)
    world = world_for(bottle_world, directory, MANIFEST)
    with running_bottle(world, "searched") as record:
        yield world, record


def _leaks(world: BottleWorld, record: Any) -> list[str]:
    with world_env(world):
        return lifecycle.secret_leaks(record.slug)


def _agent(world: BottleWorld, record: Any, script: str) -> str:
    # /bin/sh by its path: the planted `sh` is the agent's own, not the test's.
    code, output = agent_exec(world, record, ["/bin/sh", "-c", script])
    assert code == 0, output
    return output


def _leaks_after(searched: Any, plant: str, undo: str) -> list[str]:
    """The search's findings once the agent ran `plant` ({secret}: the real value); `undo`
    afterwards."""
    world, record = searched
    _agent(world, record, plant.format(secret=world.secret_value))
    try:
        return _leaks(world, record)
    finally:
        _agent(world, record, undo)


def test_commands_the_agent_put_on_the_path_never_run_as_root(searched: Any) -> None:
    world, record = searched
    leaks = _leaks_after(searched, PLANT + ' && echo "{secret}" > ~/leak.txt', "rm -f ~/leak.txt")
    ran = _agent(world, record, f"/bin/cat {RAN_AS}; /bin/rm -rf {AGENT_BIN} {RAN_AS}")
    assert ran.split() == [], ran
    assert AGENT_HOME in leaks, leaks


def test_a_file_root_cannot_read_is_not_passed_as_searched(searched: Any) -> None:
    """No capability is left to root in the sandbox: a file the agent made unreadable is
    unreadable to the search too."""
    plant = 'mkdir -p ~/hidden && echo "{secret}" > ~/hidden/key && chmod 000 ~/hidden'
    leaks = _leaks_after(searched, plant, "chmod 700 ~/hidden && rm -rf ~/hidden")
    assert any(place.startswith(f"{AGENT_HOME} ") for place in leaks), leaks


def test_a_secret_in_the_agents_own_private_files_is_found(searched: Any) -> None:
    """~/.claude is the agent's, mode 0700 (where Claude Code keeps its credentials), and a
    shell history is 0600: nothing hostile, and root without capabilities cannot read them."""
    plant = 'echo "{secret}" > ~/.claude/notes.txt'
    leaks = _leaks_after(searched, plant, "rm -f ~/.claude/notes.txt")
    assert AGENT_HOME in leaks, leaks


def test_a_secret_in_an_agent_process_environment_is_found(searched: Any) -> None:
    """Under runc, root without capabilities cannot read another user's /proc/PID/environ."""
    plant = 'LEAKED="{secret}" /bin/sleep 600 >/dev/null 2>&1 & echo $! > /tmp/leaked.pid'
    leaks = _leaks_after(searched, plant, "kill $(cat /tmp/leaked.pid); rm -f /tmp/leaked.pid")
    assert ENVIRONMENTS in leaks, leaks


def test_a_library_the_sandboxs_environment_preloads_is_not_loaded_as_root(
    searched: Any,
) -> None:
    """The person's LD_PRELOAD names a file the agent can write (here the workspace copy's):
    the loader of the search's first program reads the container's environment."""
    world, record = searched
    assert _agent(world, record, f"cat /proc/self/maps | grep -c {LIBRARY}").strip() != "0"
    _leaks(world, record)
    noted = _agent(world, record, f"cat {NOTE} 2>/dev/null; true")
    assert noted.split() == [], noted


def test_the_search_finds_nothing_in_a_clean_bottle(searched: Any) -> None:
    """The control: with nothing planted, every place is searched whole and passes."""
    world, record = searched
    assert _leaks(world, record) == []
