"""A bundle the agent's traffic took over rewrites the files the engine handed it: real daemon.

The secret values, git keys and upstream CA the engine hands a bundle lie in the bottle's
state dir, which the bundle can write. `probe` read the secret values back from there to look
for them in the agent's sandbox: a bundle that first gave the agent the real value and then
rewrote its own copy made `probe` look for a decoy and report no leak. `resume` started a
fresh bundle on whatever values and keys the old one left. Both now check each file against
the digest the engine kept outside that dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import STATE_MOUNT
from bottle_engine.errors import BottleError
from bottle_engine.probes import ProbeTargets
from tests.bottle_fixtures import (
    HTTP_PORT,
    BottleWorld,
    agent_exec,
    one_agent_manifest,
    running_bottle,
    world_env,
    world_for,
)

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


ASK_MANIFEST = one_agent_manifest(
    "asker",
    """\
[bottles.default.egress]
# The upstream's address only: its name is reached only once a person approves it.
allow = ["{upstream_ip}/32:{port}"]
ask = true
""",
)

# Run in the bundle as its own user, with its own approvals code: an egress ask for the
# upstream's name, opened and answered "approved" by the bundle itself (no person asked).
PLANT_APPROVAL = """
import sys
from pathlib import Path
from bottle_engine.approvals import ApprovalStore
store = ApprovalStore(Path("{state}"), sys.argv[1])
asked = store.open_egress_request("upstream.test", int(sys.argv[2]), "GET", "/", 3600)
store.answer(asked.id, True, None, by="cli (root)")
"""


def test_an_answer_the_bundle_wrote_itself_is_not_obeyed_after_resume(
    bottle_world: BottleWorld, docker_client: Any, tmp_path: Path
) -> None:
    """The fresh bundle `resume` starts must not let the agent out on a taken-over one's
    approval: only a person's answers (given on the host) survive a resume."""
    world = world_for(
        bottle_world, tmp_path, ASK_MANIFEST, upstream_ip=bottle_world.outside.upstream_ip
    )
    unlisted = f"http://upstream.test:{HTTP_PORT}/"
    curl = ["curl", "-s", "-m", "8", "-o", "/dev/null", "-w", "%{http_code}", unlisted]
    with running_bottle(world, "asker") as record:
        bundle = docker_client.containers.get(record.bundle_name)
        python = "/opt/bot-bottle/services/bin/python"
        script = PLANT_APPROVAL.format(state=STATE_MOUNT)
        done = bundle.exec_run([python, "-c", script, record.slug, str(HTTP_PORT)])
        assert done.exit_code == 0, done.output
        with world_env(world):
            lifecycle.stop(record.slug)
            lifecycle.resume(record.slug)
        reached = agent_exec(world, record, curl)
        assert reached[1] != "200", "the resumed bundle obeyed an approval nobody gave"


def test_the_agent_mounts_nothing_a_bundle_could_swap_before_resume(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    """Docker resolves bind-mount sources again at each start: the agent's container gets its
    files copied in before its first start (CA, prompt, skills, workspace), so `resume` has no
    path in the bundle-writable dir to re-resolve for it."""
    with running_bottle(bottle_world, "victim") as record:
        agent = docker_client.containers.get(record.name)
        with world_env(bottle_world):
            lifecycle.stop(record.slug)
            lifecycle.resume(record.slug)
        agent.reload()
        assert agent.status == "running"
        assert agent.attrs["HostConfig"].get("Binds") in (None, [])
        assert [m for m in agent.attrs["Mounts"] if m["Type"] in ("bind", "volume")] == []
