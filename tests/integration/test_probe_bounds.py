"""`probe` searches what the agent can write for the bottle's real secret values, and the agent
chooses how much that is. A sparse file costs it nothing and tars to its full length: the search
read each place whole into the person's `probe` process, so one `truncate -s` in the bottle took
as much of the host's memory as the agent liked. Each place is now searched as it streams."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bottle_fixtures import BottleWorld, agent_exec, world_env

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.escape]

REPO = Path(__file__).resolve().parents[2]
SPARSE_BYTES = 3 * 1024**3 // 2  # 1.5 GiB of holes: nothing on disk, 1.5 GiB of tar
ADDRESS_SPACE = 1024**3  # what the person's process may take here
SEARCH = (
    "import json, sys\n"
    "from bottle_engine import lifecycle\n"
    "print(json.dumps(lifecycle.secret_leaks(sys.argv[1])))\n"
)


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


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
        with world_env(bottle_world):
            done = subprocess.run(
                [sys.executable, "-c", SEARCH, probe_bottle.slug],
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                timeout=900,
                preexec_fn=_bounded,
                check=False,
            )
    finally:
        agent_exec(
            bottle_world, probe_bottle, ["sh", "-c", 'rm -f "$HOME/zeros" "$HOME/zz-leak.txt"']
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert json.loads(done.stdout) == ["/home/agent"]
