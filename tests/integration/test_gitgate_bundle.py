"""The git gate inside a real bundle container, as a bottle uses it.

The agent container sits on the internal network only and reaches the gate at
``git://<bundle_ip>:9418/origin``; the ssh upstream (our sshd container) sits on the bundle's
outbound network, which the agent cannot reach. The bottle's identity file and pinned host key
are mounted into the bundle only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import (
    GIT_GATE_PORT,
    GIT_KEYS_MOUNT,
    BundleConfig,
    GitUpstreamConfig,
)
from tests.bundle_helpers import _force_remove, container_ip, wait_for_log
from tests.integration.test_gitgate_local import AWS_KEY
from tests.integration.test_gitgate_ssh import keypair, run_sshd
from tests.integration.test_gitgate_support import bottle_networks, start_bundle_and_agent

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IDENTITY = f"{GIT_KEYS_MOUNT}/origin/identity"
KNOWN_HOSTS = f"{GIT_KEYS_MOUNT}/origin/known_hosts"
SEED = """\
set -e
git init -q --bare -b main /home/git/repo.git
git init -q -b main /tmp/seed && cd /tmp/seed
echo upstream > README.md && git add README.md
git -c user.name=Up -c user.email=up@test.invalid commit -q -m initial
git push -q /home/git/repo.git HEAD:main
"""
AGENT_GIT = ["git", "-c", "user.name=Agent", "-c", "user.email=agent@bottle.invalid"]


@dataclass(frozen=True)
class SeededSshd:
    """Our sshd container holding /home/git/repo.git (main seeded), reachable on one network."""

    container: Any
    ip: str  # on that network
    identity: Path  # the private key it lets in (its .pub beside it)
    host_key: Path  # its private host key (the .pub beside it is what a client pins)


@contextlib.contextmanager
def seeded_sshd(
    docker_client: Any, ssh_image: str, network: str, keys: Path, name: str | None = None
) -> Iterator[SeededSshd]:
    """Start the ssh upstream on `network` with fresh keys in `keys`, seed its repository once
    sshd listens, and remove it afterwards whatever happens."""
    identity = keypair(keys, "identity")
    host_key = keypair(keys, "host_key")
    container = run_sshd(docker_client, ssh_image, identity, host_key, name=name, network=network)
    try:
        wait_for_log(container, "Server listening")
        seeded = container.exec_run(["sh", "-c", SEED], user="git")
        assert seeded.exit_code == 0, seeded.output
        yield SeededSshd(container, container_ip(container, network), identity, host_key)
    finally:
        _force_remove(container)


@dataclass
class Bottle:
    agent: Any
    upstream: Any
    gate_url: str

    def agent_sh(self, script: str) -> tuple[int, str]:
        result = self.agent.exec_run(["sh", "-c", script], environment={"HOME": "/tmp"})
        return int(result.exit_code), bytes(result.output).decode("utf-8", "replace")

    def upstream_ref(self, ref: str) -> str | None:
        result = self.upstream.exec_run(
            ["git", "--git-dir=/home/git/repo.git", "rev-parse", "--verify", "--quiet", ref],
            user="git",
        )
        return bytes(result.output).decode().strip() if result.exit_code == 0 else None


@contextlib.contextmanager
def gated_bottle(
    docker_client: Any, bundle_image: str, ssh_image: str, workdir: Path, **upstream: Any
) -> Iterator[Bottle]:
    """A bundle whose gate pushes `agent/*` to our sshd's repository (with `upstream`'s other
    GitUpstreamConfig fields), an agent beside it, the state dir in `workdir`/state."""
    with bottle_networks(docker_client) as networks, contextlib.ExitStack() as stack:
        sshd = stack.enter_context(
            seeded_sshd(
                docker_client,
                ssh_image,
                networks.egress,
                workdir,
                name=f"bb-test-{networks.run_id}-sshd",
            )
        )
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(f"{sshd.ip} {sshd.host_key.with_suffix('.pub').read_text()}")
        bundle_ip = str(networks.subnet[2])
        config = BundleConfig(
            slug=f"test-{networks.run_id}",
            bundle_ip=bundle_ip,
            agent_subnet=str(networks.subnet),
            git=(
                GitUpstreamConfig(
                    name="origin",
                    url=f"ssh://git@{sshd.ip}/home/git/repo.git",
                    push_branches=("agent/*",),
                    identity_file=IDENTITY,
                    known_hosts_file=KNOWN_HOSTS,
                    **upstream,
                ),
            ),
        )
        _, agent = start_bundle_and_agent(
            stack,
            docker_client,
            bundle_image,
            networks,
            config,
            workdir / "state",
            readonly_files={IDENTITY: sshd.identity, KNOWN_HOSTS: known_hosts},
        )
        yield Bottle(agent, sshd.container, f"git://{bundle_ip}:{GIT_GATE_PORT}/origin")


@pytest.fixture(scope="module")
def bottle(
    docker_client: Any,
    bundle_image: str,
    ssh_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bottle]:
    workdir = tmp_path_factory.mktemp("gate-bundle")
    with gated_bottle(docker_client, bundle_image, ssh_image, workdir) as gated:
        yield gated


def test_agent_clones_pushes_an_allowed_branch_and_it_arrives_upstream(bottle: Bottle) -> None:
    git = " ".join(AGENT_GIT)
    # The push's messages (the gate's "remote:" line) go to stdout too, so that they cannot
    # arrive after the hash: Docker does not keep the order across an exec's two streams.
    code, output = bottle.agent_sh(
        f"set -e; git clone -q {bottle.gate_url} /tmp/work && cd /tmp/work"
        f" && echo change > change.txt && git add change.txt && {git} commit -q -m change"
        " && git push -q origin HEAD:refs/heads/agent/change 2>&1 && git rev-parse HEAD"
    )

    assert code == 0, output
    assert bottle.upstream_ref("refs/heads/agent/change") == output.strip().splitlines()[-1]


def test_refused_pushes_name_the_rule_or_finding_and_nothing_arrives(bottle: Bottle) -> None:
    git = " ".join(AGENT_GIT)
    main_before = bottle.upstream_ref("refs/heads/main")
    _, to_main = bottle.agent_sh(
        f"git clone -q {bottle.gate_url} /tmp/refused && cd /tmp/refused"
        f" && {git} commit -q --allow-empty -m x && git push origin HEAD:main"
    )
    _, with_key = bottle.agent_sh(
        f"cd /tmp/refused && printf 'id = {AWS_KEY}\\n' > aws.cfg && git add aws.cfg"
        f" && {git} commit -q -m key && git push origin HEAD:refs/heads/agent/key"
    )

    assert "push_branches" in to_main
    assert "aws.cfg:1: AWS Access Key" in with_key
    assert bottle.upstream_ref("refs/heads/main") == main_before
    assert bottle.upstream_ref("refs/heads/agent/key") is None


def test_the_agent_has_neither_the_identity_nor_a_route_to_the_upstream(bottle: Bottle) -> None:
    code, _ = bottle.agent_sh(f"test -e {GIT_KEYS_MOUNT}")
    assert code != 0
    [address] = [
        network["IPAddress"]
        for network in bottle.upstream.attrs["NetworkSettings"]["Networks"].values()
    ]
    code, output = bottle.agent_sh(
        "git -c core.sshCommand='ssh -o BatchMode=yes -o ConnectTimeout=3"
        f" -o StrictHostKeyChecking=no' ls-remote ssh://git@{address}/home/git/repo.git"
    )
    assert code != 0
    assert f"ssh: connect to host {address} port 22" in output  # never reached sshd
