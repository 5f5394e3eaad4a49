"""`stop --rm` after a bundle the agent's traffic took over filled its state dir: real daemon.

`shutil.rmtree` recurses once per level of the tree: dirs nested a few thousand deep by the
bundle (in its own dir) made `stop --rm` fail with RecursionError once the containers were gone,
leaving the dir (the secret values in it) and the record, every time it was run again.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from bottle_engine import lifecycle, records, state
from bottle_engine.bundle.config import STATE_MOUNT
from tests.bottle_fixtures import POOLED, BottleWorld, world_env

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.escape]

NEST = """
import os
os.chdir("{state}")
for _ in range(3000):
    os.mkdir("d")
    os.chdir("d")
"""


def test_stop_rm_removes_a_state_dir_the_bundle_nested_deep(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    with world_env(bottle_world):
        if POOLED:  # the dir is then the pool member's, `bottles/<slug>` a link to it
            lifecycle.pool_fill(bottle_world.manifest, "victim", 1)
        record = lifecycle.launch(bottle_world.manifest, "victim", cwd=bottle_world.manifest.parent)
        bottle_dir = state.bottle_dir(record.slug)
        members = state.state_dir() / "pool" / "members"
    try:
        bundle = docker_client.containers.get(record.bundle_name)
        python = "/opt/bot-bottle/services/bin/python"
        done = bundle.exec_run([python, "-c", NEST.format(state=STATE_MOUNT)])
        assert done.exit_code == 0, done.output
        with world_env(bottle_world):
            lifecycle.stop(record.slug, remove=True)
            assert records.load(record.slug) is None
        assert not bottle_dir.exists() and not bottle_dir.is_symlink()
        assert not any(members.glob("*/d"))
    finally:
        with world_env(bottle_world):
            if records.load(record.slug) is not None:
                with contextlib.suppress(RecursionError):
                    lifecycle.stop(record.slug, remove=True)  # the containers and networks
                records.remove(record.slug)
            state.remove_tree(bottle_dir)  # whatever an old engine left
