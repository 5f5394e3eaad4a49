"""A bundle the agent's traffic took over rewrites the files the engine handed it: real daemon.

The secret values, git keys and upstream CA the engine hands a bundle lie in the bottle's
state dir, which the bundle can write. `probe` read the secret values back from there to look
for them in the agent's sandbox: a bundle that first gave the agent the real value and then
rewrote its own copy made `probe` look for a decoy and report no leak. `resume` started a
fresh bundle on whatever values and keys the old one left. Both now check each file against
the digest the engine kept outside that dir.
"""

from __future__ import annotations

from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import STATE_MOUNT
from bottle_engine.errors import BottleError
from bottle_engine.probes import ProbeTargets
from tests.bottle_fixtures import BottleWorld, agent_exec, running_bottle, world_env

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.escape]

SECRET_INSIDE = BottleDir(STATE_MOUNT).secret_file("TEST_TOKEN")


def _rewrite_secret(bundle: Any, value: str) -> None:
    """As the bundle's own user: its copy of the secret replaced by `value`."""
    done = bundle.exec_run(["sh", "-c", f'printf %s "$1" > {SECRET_INSIDE}', "sh", value])
    assert done.exit_code == 0, done.output


def test_a_secret_rewritten_by_the_bundle_does_not_hide_a_leak_from_probe(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    with running_bottle(bottle_world, "victim") as record:
        # What the taken-over bundle handed the agent (in a response): the real value.
        leaked = agent_exec(
            bottle_world,
            record,
            ["sh", "-c", f"echo {bottle_world.secret_value} > /workspace/notes.txt"],
        )
        assert leaked[0] == 0, leaked
        head, last = record.bundle_ip.rsplit(".", 1)
        targets = ProbeTargets(bundle_ip=record.bundle_ip, gateway_ip=f"{head}.{int(last) - 1}")
        with world_env(bottle_world):
            assert lifecycle.probe(record.slug, targets)[1], "control: the leak is found"
        _rewrite_secret(docker_client.containers.get(record.bundle_name), "decoy-value")
        with world_env(bottle_world):
            try:
                _, leaks = lifecycle.probe(record.slug, targets)
                refusal = None
            except BottleError as exc:
                leaks, refusal = [], str(exc)
        assert leaks or refusal is not None, "probe looked for the decoy and found no leak"
        if refusal is not None:
            assert "TEST_TOKEN" in refusal and "differs" in refusal


def test_a_secret_rewritten_by_the_bundle_is_refused_by_resume(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    with running_bottle(bottle_world, "victim") as record:
        bundle = docker_client.containers.get(record.bundle_name)
        _rewrite_secret(bundle, "chosen-by-the-bundle")
        with world_env(bottle_world):
            lifecycle.stop(record.slug)
            with pytest.raises(BottleError, match=r"TEST_TOKEN.*differs"):
                lifecycle.resume(record.slug)
        bundle.reload()
        assert bundle.status != "running"
