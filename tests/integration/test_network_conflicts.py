"""A network whose name or subnet is taken is told apart by type (`NetworkNameTaken`,
`SubnetTaken`), never by matching the daemon's text in the backend; a launch that loses the
race for a subnet moves on to the next name. Real daemon; only networks made here, no traffic."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.backends.docker import DockerBackend
from bottle_engine.dockerapi import networks
from bottle_engine.dockerapi.networks import (
    NetworkNameTaken,
    SubnetTaken,
    create_internal_network,
    remove_network,
    subnets_in_use,
)
from bottle_engine.errors import BottleError
from bottle_engine.lifecycle import planner_for
from bottle_engine.progress import QuietProgress
from tests.bundle_helpers import TEST_LABELS

pytestmark = pytest.mark.docker

FIRST = "bb-test-netconflict-a"
SECOND = "bb-test-netconflict-b"


def free_subnet(client: Any) -> ipaddress.IPv4Network:
    taken = subnets_in_use(client)
    for candidate in ipaddress.ip_network("10.251.0.0/16").subnets(new_prefix=28):
        if not any(candidate.overlaps(used) for used in taken):
            return candidate
    raise AssertionError("no free /28 in 10.251.0.0/16")


@pytest.fixture
def made(docker_client: Any) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        remove_network(docker_client, name)


def make(client: Any, made: list[str], name: str, subnet: ipaddress.IPv4Network) -> None:
    made.append(name)
    create_internal_network(client, name, subnet, str(subnet[1]), dict(TEST_LABELS))


def test_a_taken_name_and_a_taken_subnet_raise_their_own_error_types(
    docker_client: Any, made: list[str]
) -> None:
    subnet = free_subnet(docker_client)
    make(docker_client, made, FIRST, subnet)

    with pytest.raises(NetworkNameTaken) as name_taken:
        make(docker_client, made, FIRST, free_subnet(docker_client))
    with pytest.raises(SubnetTaken) as subnet_taken:
        make(docker_client, made, SECOND, subnet)

    assert isinstance(name_taken.value, BottleError) and FIRST in name_taken.value.message
    assert str(subnet) in subnet_taken.value.message
    assert not isinstance(subnet_taken.value, NetworkNameTaken)


def test_a_launch_that_loses_its_subnet_to_another_network_takes_the_next_name(
    docker_client: Any, made: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "bottle.toml"
    manifest.write_text('[agents.dev]\ncommand = ["sleep", "infinity"]\n\n[bottles.default]\n')
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    planner = planner_for(manifest, "dev", tmp_path, launch_token="t")
    wanted = planner(planner.base_slug).subnet
    if any(wanted.overlaps(used) for used in subnets_in_use(docker_client)):
        pytest.skip(f"{wanted} is in use on this daemon already")
    # Another network takes the first candidate's subnet after the planner looked (the race).
    make(docker_client, made, FIRST, wanted)
    monkeypatch.setattr("bottle_engine.backends.gateway.subnets_in_use", lambda client: [])

    with ExitStack() as undo:
        plan = DockerBackend(docker_client).gateway.claim(planner, undo, QuietProgress())
        made.extend([plan.internal_network, plan.egress_network])
        assert plan.slug == f"{planner.base_slug}-2"
        assert plan.subnet != wanted
    assert networks.network_exists(docker_client, plan.internal_network) is False
