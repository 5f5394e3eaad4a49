"""Attacks on the warm pool from a hostile bundle, on the real daemon: a member that never
answers once claimed, and a bundle forging the engine's record of its bottle in the dir it
mounts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bottle_engine import lifecycle, pool, records, state
from bottle_engine.backends import warm_pool
from bottle_engine.bundle.config import STATE_MOUNT
from bottle_engine.dockerapi.networks import network_exists, remove_network
from bottle_engine.errors import BottleError
from bottle_engine.records import GatewayNames
from tests.bottle_fixtures import TEST_LABEL, BottleWorld, labelled_leftovers
from tests.integration.test_pool import _pool_resources, clean_pool  # noqa: F401 (fixture)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Run inside the member's bundle as its own user: stop every process but init and this one,
# so the bundle stays "running" and never answers the config it is handed.
FREEZE = """
import os, signal
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) not in (1, os.getpid()):
        try:
            os.kill(int(pid), signal.SIGSTOP)
        except OSError:
            pass
"""


def _bottle_names() -> set[str]:
    bottles = state.state_dir() / "bottles"
    return {p.name for p in bottles.iterdir()} if bottles.is_dir() else set()


def test_a_claimed_member_that_never_answers_fails_the_launch_and_leaves_nothing(
    bottle_world: BottleWorld,
    docker_client: Any,
    clean_pool: None,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (member,) = lifecycle.pool_fill(bottle_world.manifest, "victim", 1)
    container = docker_client.containers.get(member.container)
    assert container.exec_run(["python3", "-c", FREEZE]).exit_code == 0
    before = _bottle_names()
    monkeypatch.setattr(warm_pool, "BUNDLE_READY_TIMEOUT", 8.0)
    with pytest.raises(BottleError, match="not ready after 8s"):
        lifecycle.launch(bottle_world.manifest, "victim")
    # Nothing of the launch or of the member is left: no bottle name, record, container,
    # network, member dir (it held the bottle's secrets) or pool marker.
    assert _bottle_names() == before
    assert [n for n in _pool_resources(docker_client) if member.id in n] == []
    assert labelled_leftovers(docker_client, "victim") == []
    assert not member.directory.exists()
    assert pool.where_is(member.id) is None
    assert not any((pool.pool_root() / "staging").glob("*"))


# The engine's record once lived in the bundle's own dir as bottle.json, where the bundle could
# put any file in its place. The forgery is the engine's record with one name changed (the
# bundle knows or guesses the rest: its slug, addresses and networks are in its own config),
# written where the record used to be; the record now lives in records/, which no container
# mounts.
REWRITE = """
import os, sys
path = "{state}/bottle.json"
with open(path + ".new", "w") as out:
    out.write(sys.argv[1])
os.replace(path + ".new", path)
"""


def test_a_bundle_rewriting_its_record_cannot_make_stop_remove_another_network(
    bottle_world: BottleWorld,
    docker_client: Any,
    clean_pool: None,  # noqa: F811
) -> None:
    """A bundle the agent's traffic took over rewrites bottle.json (its state dir is mounted
    read-write); the person's `stop --rm` must still remove only the bottle's own networks."""
    lifecycle.pool_fill(bottle_world.manifest, "victim", 1)
    victim = docker_client.networks.create("bbtest-s4red-victim", labels=TEST_LABEL)
    try:
        record = lifecycle.launch(bottle_world.manifest, "victim")
        try:
            bundle = docker_client.containers.get(record.bundle_name)
            forged = json.loads(records.record_path(record.slug).read_text())
            forged["resources"]["gateway"]["internal_network"] = victim.name
            code, output = bundle.exec_run(
                ["python3", "-c", REWRITE.format(state=STATE_MOUNT), json.dumps(forged)]
            )
            assert code == 0, output  # the bundle wrote it: the dir is its own
            assert state.bottle_dir(record.slug).joinpath("bottle.json").is_file()
            kept = GatewayNames.of_record(lifecycle.find(record.slug))
            assert kept.internal_network != victim.name
        finally:
            lifecycle.stop(record.slug, remove=True)
        assert network_exists(docker_client, victim.name), "stop --rm removed another network"
    finally:
        remove_network(docker_client, victim.name)


def test_a_bundle_rewriting_its_record_cannot_make_stop_remove_another_bottles_bundle(
    bottle_world: BottleWorld,
    docker_client: Any,
    clean_pool: None,  # noqa: F811
) -> None:
    neighbour = lifecycle.launch(bottle_world.manifest, "twin")
    try:
        record = lifecycle.launch(bottle_world.manifest, "victim")
        try:
            bundle = docker_client.containers.get(record.bundle_name)
            forged = json.loads(records.record_path(record.slug).read_text())
            forged["name"] = neighbour.name
            code, output = bundle.exec_run(
                ["python3", "-c", REWRITE.format(state=STATE_MOUNT), json.dumps(forged)]
            )
            assert code == 0, output
        finally:
            lifecycle.stop(record.slug, remove=True)
        names = {c.name for c in docker_client.containers.list(all=True)}
        assert neighbour.bundle_name in names, "stop --rm removed another bottle's bundle"
    finally:
        lifecycle.stop(neighbour.slug, remove=True)
