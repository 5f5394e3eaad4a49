"""`probe` searches what the agent can write for the bottle's real secret values, and the agent
chooses how much that is. A sparse file costs it nothing and tars to its full length: the search
read each place whole into the person's `probe` process, so one `truncate -s` in the bottle took
as much of the host's memory as the agent liked. Each place is now searched as it streams."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bottle_fixtures import BottleWorld, agent_exec, world_env
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.escape]

SPARSE_BYTES = 3 * 1024**3 // 2  # 1.5 GiB of holes: nothing on disk, 1.5 GiB of tar
ADDRESS_SPACE = 1024**3  # what the person's process may take here
SEARCH = (
    "import json, sys\n"
    "from bottle_engine import lifecycle\n"
    "print(json.dumps(lifecycle.secret_leaks(sys.argv[1])))\n"
)


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _as_the_person(
    world: BottleWorld, script: str, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[bytes]:
    """Run `script` (Python, the engine on its path) in a process allowed ADDRESS_SPACE."""
    with world_env(world):
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            timeout=timeout,
            preexec_fn=_bounded,
            check=False,
        )


def test_a_sparse_file_larger_than_the_hosts_share_is_searched_to_the_leak_after_it(
    bottle_world: BottleWorld, probe_bottle: Any
) -> None:
    plant = (
        f'truncate -s {SPARSE_BYTES} "$HOME/zeros"'
        f' && echo "{bottle_world.secret_value}" > "$HOME/zz-leak.txt"'
    )
    code, output = agent_exec(bottle_world, probe_bottle, ["sh", "-c", plant])
    assert code == 0, output
    try:
        done = _as_the_person(bottle_world, SEARCH, probe_bottle.slug)
    finally:
        agent_exec(
            bottle_world, probe_bottle, ["sh", "-c", 'rm -f "$HOME/zeros" "$HOME/zz-leak.txt"']
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert json.loads(done.stdout) == ["/home/agent"]


# The agent writes into the output of whichever of `probe`'s commands it finds (they run as the
# agent, so it may open their /proc/PID/fd/1), and holds it open after the command ended. Bounded:
# one flood, and the watcher gives up after 300 s.
FLOOD_BYTES = 1536 * 1024**2
FLOODER = (
    "end=$(($(date +%s) + 300)); while [ $(date +%s) -lt $end ]; do"
    " for p in /proc/[0-9]*; do"
    ' if [ "$(cat $p/comm 2>/dev/null)" = bash ]; then'
    f" head -c {FLOOD_BYTES} /dev/zero > $p/fd/1 2>/dev/null && exit 0;"
    " fi; done; done"
)
PROBE = (
    "import json, sys\n"
    "from bottle_engine import lifecycle\n"
    "from bottle_engine.probes import ProbeTargets\n"
    "ip = sys.argv[2]\n"
    "targets = ProbeTargets(bundle_ip=ip, gateway_ip=ip.rsplit('.', 1)[0] + '.1')\n"
    "report, leaks = lifecycle.probe(sys.argv[1], targets)\n"
    "print(json.dumps(report.to_json()))\n"
)


def test_probe_keeps_the_end_of_what_the_agent_floods_a_probe_s_output_with(
    bottle_world: BottleWorld, probe_bottle: Any
) -> None:
    code, output = agent_exec(
        bottle_world, probe_bottle, ["sh", "-c", f"nohup sh -c '{FLOODER}' >/dev/null 2>&1 &"]
    )
    assert code == 0, output
    try:
        done = _as_the_person(bottle_world, PROBE, probe_bottle.slug, probe_bottle.bundle_ip)
    finally:
        agent_exec(bottle_world, probe_bottle, ["pkill", "-f", "head -c"])
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    rows = json.loads(done.stdout)
    flooded = [row for row in rows if "\0" in row["output"]]
    assert flooded, rows  # the flood reached a probe's output, and the probe run went on


def test_a_command_that_never_ends_is_not_waited_for(
    bottle_world: BottleWorld, probe_bottle: Any
) -> None:
    from bottle_engine.backends import backend_named
    from bottle_engine.command_output import UNFINISHED

    with world_env(bottle_world):
        code, output = backend_named("docker").exec_as_agent(
            probe_bottle, ["sh", "-c", "echo started; exec sleep 600"], seconds=2
        )
    assert code == UNFINISHED
    assert output.startswith("started\n") and "stopped waiting for it after 2 s" in output


# A sparse file as large as the file system allows costs the agent nothing: tar reads its holes
# as zeros, for years. The search gives up at a deadline (a small one here) and says where.
ENDLESS = "truncate -s 8E /tmp/endless 2>/dev/null || truncate -s 1P /tmp/endless"
# 0 once no tar runs, within twice the search's time (one tar per place, each bounded by it).
TAR_ENDS = "for i in $(seq 40); do grep -qx tar /proc/[0-9]*/comm || exit 0; sleep 1; done; exit 1"
SHORT_SEARCH = (
    "import json, sys\n"
    "from bottle_engine import limits, lifecycle\n"
    "limits.SECRET_SEARCH_SECONDS = 20\n"
    "print(json.dumps(lifecycle.secret_leaks(sys.argv[1])))\n"
)


@contextlib.contextmanager
def _planted(world: BottleWorld, bottle: Any, plant: str, undo: str) -> Iterator[None]:
    """The agent ran `plant` in `bottle` (sh); `undo` after."""
    code, output = agent_exec(world, bottle, ["sh", "-c", plant])
    assert code == 0, output
    try:
        yield
    finally:
        agent_exec(world, bottle, ["sh", "-c", undo])


def _short_search(world: BottleWorld, bottle: Any) -> list[str]:
    """What the person's secret search of `bottle` reports, given SHORT_SEARCH's time."""
    done = _as_the_person(world, SHORT_SEARCH, bottle.slug, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    places: list[str] = json.loads(done.stdout)
    return places


def test_a_place_the_agent_made_endless_is_not_searched_for_ever(
    bottle_world: BottleWorld, probe_bottle: Any
) -> None:
    with _planted(bottle_world, probe_bottle, ENDLESS, "rm -f /tmp/endless"):
        places = _short_search(bottle_world, probe_bottle)
        # The search's own reader in the sandbox is ended too, within the search's time.
        still = agent_exec(bottle_world, probe_bottle, ["sh", "-c", TAR_ENDS])
    # Not searched to its end: counted as a leak, so `probe` does not pass.
    assert any(place.startswith("/tmp ") for place in places)
    assert still[0] == 0, still


# The search's commands that run as the agent's user are the agent's to signal: it stops each
# one (its `timeout` too, whose alarm then never fires) and the output stays open, empty, for
# as long as the bottle runs. The search stops reading at its deadline and says where. The scan
# runs no program (the base image has no pkill; a grep per process made it slow enough to miss
# every command on a loaded machine), and a sparse GiB in /tmp keeps that place's tar running.
HOLDER = "/tmp/hold-open.sh"
SLOW = "/tmp/slow-to-read"
EACH_TIMEOUT = (
    "for p in /proc/[0-9]*; do "
    'read -r name < "$p/comm" 2>/dev/null && [ "$name" = timeout ] && kill -{} "${{p#/proc/}}"; '
    "done"
)
HOLD_OPEN = (
    f"truncate -s 1G {SLOW}\n"
    f"cat > {HOLDER} <<'EOF'\n"
    f"echo $$ > {HOLDER}.pid\n"
    f"while :; do {EACH_TIMEOUT.format('STOP')}; done\n"
    "EOF\n"
    f"nohup sh {HOLDER} >/dev/null 2>&1 &\n"
    f"while [ ! -s {HOLDER}.pid ]; do sleep 0.1; done"
)
LET_GO = (
    f'kill -KILL "$(cat {HOLDER}.pid)"; {EACH_TIMEOUT.format("KILL")}; rm -f {SLOW} {HOLDER}*; true'
)


def test_a_place_whose_output_the_agent_holds_open_is_not_waited_for(
    bottle_world: BottleWorld, probe_bottle: Any
) -> None:
    with _planted(bottle_world, probe_bottle, HOLD_OPEN, LET_GO):
        places = _short_search(bottle_world, probe_bottle)
    # Counted as a leak, so `probe` does not pass.
    assert [place for place in places if "not all of it" in place], places
