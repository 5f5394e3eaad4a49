"""A bundle the agent's traffic took over prepares its next start: on the real daemon.

Docker resolves a bind mount's host path again at every start of a container. The files the
bundle gets read-only (its config, its /etc/passwd, secret values) live in the bottle's state
dir, which the bundle itself can write: a symbolic link put in a file's place made `resume`
mount any host file the link names into the bundle (the engine's user's keys when the engine
is not root; any world-readable file when it is). A host file of the test's stands in for it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import STATE_MOUNT
from bottle_engine.errors import BottleError
from bottle_engine.records import BottleRecord
from tests.bottle_fixtures import (
    HTTP_PORT,
    BottleWorld,
    agent_exec,
    running_bottle,
    world_env,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.escape]


def _host_file(tmp_path: Path) -> tuple[Path, str]:
    token = "host-only-" + secrets.token_hex(12)
    target = tmp_path / "host-only.txt"
    target.write_text(token + "\n")
    target.chmod(0o644)
    return target, token


def _mounted_files(bundle: Any) -> dict[str, str]:
    """The bundle's read-only file mounts that come from its state dir: inside -> host path."""
    bundle.reload()
    return {
        m["Destination"]: m["Source"]
        for m in bundle.attrs["Mounts"]
        if m["Type"] == "bind" and m["Destination"] != str(STATE_MOUNT)
    }


def _stop_and_resume(world: BottleWorld, record: BottleRecord) -> str | None:
    """`stop`, then `resume`, as a person would once the bundle prepared its next start: the
    refusal's text, or None when `resume` went ahead."""
    with world_env(world):
        lifecycle.stop(record.slug)
        try:
            lifecycle.resume(record.slug)
        except BottleError as exc:
            return str(exc)
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="the bundle gets /etc/passwd from its dir as root")
def test_a_link_in_place_of_a_mounted_file_is_not_followed_by_resume(
    bottle_world: BottleWorld, docker_client: Any, tmp_path: Path
) -> None:
    target, token = _host_file(tmp_path)
    with running_bottle(bottle_world, "victim") as record:
        bundle = docker_client.containers.get(record.bundle_name)
        planted = Path(_mounted_files(bundle)["/etc/passwd"])
        # The bundle, as its own user, swaps the file for a link (its dir is its own).
        inside = BottleDir(STATE_MOUNT).accounts_dir / planted.name
        done = bundle.exec_run(["ln", "-sfn", str(target), str(inside)])
        assert done.exit_code == 0, done.output
        assert planted.is_symlink()
        refusal = _stop_and_resume(bottle_world, record)
        bundle.reload()
        if bundle.status == "running":
            seen = bundle.exec_run(["cat", "/etc/passwd"]).output.decode(errors="replace")
            assert token not in seen, "resume mounted the host file into the bundle"
        assert refusal is not None, "resume started the bundle on the planted link"
        assert "symbolic link" in refusal and str(planted) in refusal
        assert bundle.status != "running"


# Run in the bundle as its own user: the config the engine handed it, with one more host on
# the allowlist, written in place of the old one (its dir is its own).
WIDEN = """
import json, os, sys
path = "{state}/bundle.json"
config = json.load(open(path))
config["egress_allow"].extend(sys.argv[1:])
with open(path + ".new", "w") as out:
    json.dump(config, out)
os.replace(path + ".new", path)
"""


def test_a_config_rewritten_by_the_bundle_is_refused_by_resume(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    """A fresh bundle started by `resume` must not inherit a taken-over one's wider policy."""
    stranger = f"http://stranger.test:{HTTP_PORT}/"
    with running_bottle(bottle_world, "victim") as record:
        denied = agent_exec(
            bottle_world, record, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", stranger]
        )
        assert denied[1] == "403"
        bundle = docker_client.containers.get(record.bundle_name)
        done = bundle.exec_run(
            [
                "python3",
                "-c",
                WIDEN.format(state=STATE_MOUNT),
                f"stranger.test:{HTTP_PORT}",
                f"{bottle_world.outside.stranger_ip}/32:{HTTP_PORT}",
            ]
        )
        assert done.exit_code == 0, done.output
        refusal = _stop_and_resume(bottle_world, record)
        bundle.reload()
        if bundle.status == "running":
            reached = agent_exec(
                bottle_world,
                record,
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", stranger],
            )
            assert reached[1] != "200", "the resumed bundle obeyed the rewritten config"
        assert refusal is not None, "resume started the bundle on a rewritten config"
        assert "bundle.json" in refusal
        assert bundle.status != "running"
