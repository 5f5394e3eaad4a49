"""Invariant 6: what the agent's container makes the Docker host keep for it stays bounded.

* disk: a path the agent's image declares with VOLUME. Docker gives each an anonymous volume, a
  directory under /var/lib/docker/volumes on the host's disk: outside the container's writable
  layer (so outside `--storage-opt size`), outside its memory limit and outside every tmpfs.
  Images FROM postgres, mysql, mongo or redis declare one, postgres's world-writable.
* log space: the daemon's own log. Docker's embedded DNS (127.0.0.11) forwards a name it does
  not know to the container's DNS servers, from the host's namespace; before Moby 26 for
  internal networks too, and a lookup over TCP it cannot forward is a warning line in the
  daemon's log on the host (here a file nothing rotates, elsewhere the journal): an agent
  looking names up in a loop wrote there without end.
* CPU: the image's HEALTHCHECK. Docker accepts `--interval=1ms`, and the daemon, containerd
  and the shim then start a probe in the container as fast as they can, on the host's CPUs
  outside the container's CPU bound, for as long as it runs.

Real daemon; the image, network and container are made here and removed. The only traffic is
the agent's lookups of `.invalid` names.
"""

from __future__ import annotations

import io
import ipaddress
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.dockerapi.client import LABEL_POOL
from bottle_engine.dockerapi.containers import (
    AgentContainerSpec,
    containers_with_label,
    create_agent_container,
    remove_container,
)
from bottle_engine.dockerapi.networks import create_internal_network, remove_network
from bottle_engine.errors import BottleError
from bottle_engine.limits import MIB, agent_disk
from tests.bundle_helpers import TEST_LABELS, pick_subnet

pytestmark = pytest.mark.docker

NETWORK = "bb-test-agent-share"
CONTAINER = "bb-test-agent-share-agent"
MEMORY = 64 * MIB
DATA = "/var/lib/data"
# As postgres's image leaves its data dir: made world-writable, then declared a volume.
DOCKERFILE = f"""FROM {{base}}
RUN mkdir -p {DATA} /workspace && chmod 1777 {DATA}
VOLUME {DATA}
VOLUME /workspace/
"""
AGENT_USER = "4242:4242"
# One DNS query over TCP to Docker's embedded DNS, for a name nobody may answer (perl: the base
# image has no other scripting language).
TCP_LOOKUP = r"""
use IO::Socket::INET;
my $name = join("", map { chr(length $_) . $_ } split /\./, "agent-lookup.bottle.invalid");
my $query = pack("n6", 0x4242, 0x0100, 1, 0, 0, 0) . $name . "\0" . pack("n2", 1, 1);
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.11:53", Proto => "tcp") or die "tcp: $!";
print $s pack("n", length $query) . $query;
my $answer;
$s->recv($answer, 512);
print "asked\n";
"""


@pytest.fixture(scope="module")
def volume_image(docker_client: Any, base_image: str) -> Iterator[str]:
    dockerfile = io.BytesIO(DOCKERFILE.format(base=base_image).encode())
    image, _ = docker_client.images.build(fileobj=dockerfile, rm=True, labels=TEST_LABELS)
    try:
        yield str(image.id)
    finally:
        docker_client.images.remove(image.id, force=True)


@pytest.fixture
def network(docker_client: Any) -> Iterator[ipaddress.IPv4Network]:
    subnet = pick_subnet(docker_client)
    create_internal_network(docker_client, NETWORK, subnet, str(subnet[1]), dict(TEST_LABELS))
    try:
        yield subnet
    finally:
        remove_container(docker_client, CONTAINER)  # with its anonymous volumes, if it has any
        remove_network(docker_client, NETWORK)


def _spec(image: str, subnet: ipaddress.IPv4Network, filled: tuple[str, ...] = ()) -> Any:
    """The agent's container as the docker backend makes it, on the test's network."""
    return AgentContainerSpec(
        name=CONTAINER,
        image=image,
        command=["sleep", "infinity"],
        env={},
        network=NETWORK,
        ip=str(subnet[3]),
        user=AGENT_USER,
        workdir="/",
        runtime=None,
        nano_cpus=int(1e9),
        memory_bytes=MEMORY,
        labels=TEST_LABELS,
        disk=agent_disk(MEMORY, layer_bounded=False),
        tty=False,
        filled=filled,
    )


def _started(client: Any, spec: AgentContainerSpec) -> Any:
    container = create_agent_container(client, spec)
    container.start()
    container.reload()
    return container


def test_the_agent_cannot_write_past_its_memory_into_a_volume_its_image_declares(
    docker_client: Any, volume_image: str, network: ipaddress.IPv4Network
) -> None:
    container = _started(docker_client, _spec(volume_image, network))
    on_disk = [m["Destination"] for m in container.attrs["Mounts"] if m["Type"] == "volume"]
    assert on_disk == [], f"Docker keeps {on_disk} on the host's disk, outside every bound"
    fill = 3 * MEMORY
    script = (
        f"head -c {fill} /dev/zero > {DATA}/fill; "
        f"echo kept=$(stat -c %s {DATA}/fill 2>/dev/null || echo 0)"
    )
    result = container.exec_run(["sh", "-c", script], user=AGENT_USER)
    output = bytes(result.output).decode(errors="replace")
    kept = int(output.rsplit("kept=", 1)[1].split()[0]) if "kept=" in output else 0
    assert kept <= MEMORY, f"the agent wrote {kept} bytes into {DATA}: {output}"


def test_an_image_volume_over_what_the_launch_fills_is_refused(
    docker_client: Any, volume_image: str, network: ipaddress.IPv4Network
) -> None:
    """A tmpfs over /workspace would hide the workspace copy the launch puts there before the
    first start: the launch is refused, naming the VOLUME, rather than start an empty one."""
    spec = _spec(volume_image, network, filled=("/workspace", "/home/agent"))
    with pytest.raises(BottleError) as refused:
        create_agent_container(docker_client, spec)
    assert "VOLUME /workspace" in refused.value.message
    assert docker_client.containers.list(all=True, filters={"name": CONTAINER}) == []


def test_an_image_carrying_the_engines_own_labels_is_refused(
    docker_client: Any, base_image: str, network: ipaddress.IPv4Network
) -> None:
    """Docker gives a container its image's labels under the ones it is created with. An image
    with `LABEL bot-bottle.pool=…` made its agent container answer to the warm pool's lookups:
    `gc` took it for a failed gateway's leftover and removed the bottle, and so did a `pool
    drain` of the member it named. The engine's labels on a container are the engine's."""
    dockerfile = io.BytesIO(f"FROM {base_image}\nLABEL {LABEL_POOL}=m-1234\n".encode())
    image, _ = docker_client.images.build(fileobj=dockerfile, rm=True, labels=TEST_LABELS)
    try:
        with pytest.raises(BottleError) as refused:
            create_agent_container(docker_client, _spec(str(image.id), network))
        assert f"LABEL {LABEL_POOL}" in refused.value.message
        assert containers_with_label(docker_client, LABEL_POOL, "m-1234") == []
    finally:
        remove_container(docker_client, CONTAINER)
        docker_client.images.remove(image.id, force=True)


def test_an_images_healthcheck_runs_no_probe_in_the_agents_container(
    docker_client: Any, base_image: str, network: ipaddress.IPv4Network
) -> None:
    """Each probe appends a line to a file in the container: after two seconds there is none,
    and the daemon keeps no health state for the container."""
    dockerfile = io.BytesIO(
        f"FROM {base_image}\nHEALTHCHECK --interval=1ms CMD echo probe >> /tmp/probes\n".encode()
    )
    image, _ = docker_client.images.build(fileobj=dockerfile, rm=True, labels=TEST_LABELS)
    try:
        container = _started(docker_client, _spec(str(image.id), network))
        time.sleep(2)
        container.reload()
        probes = container.exec_run(["sh", "-c", "cat /tmp/probes 2>/dev/null | wc -l"])
        assert int(bytes(probes.output).decode().strip() or 0) == 0, probes.output
        assert container.attrs["State"].get("Health") is None, container.attrs["State"]
    finally:
        remove_container(docker_client, CONTAINER)
        docker_client.images.remove(image.id, force=True)


def _daemon_log() -> Path | None:
    """The file the Docker daemon on this machine writes its log to, if it is one this test
    can read (a daemon under systemd writes to the journal)."""
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            if (process / "comm").read_text().strip() != "dockerd":
                continue
            log = Path(os.readlink(process / "fd" / "2"))
        except OSError:
            continue
        if log.is_file() and os.access(log, os.R_OK):
            return log
    return None


def _resolver_lines(log: Path, start: int, servers: list[str]) -> list[str]:
    """The daemon's embedded-DNS lines written since `start` that name one of `servers`."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
    return [
        line
        for line in text.splitlines()
        if "[resolver]" in line and any(server in line for server in servers)
    ]


def test_the_agents_lookups_write_nothing_into_the_docker_daemons_log(
    docker_client: Any, base_image: str, network: ipaddress.IPv4Network
) -> None:
    container = _started(docker_client, _spec(base_image, network))
    servers = list(container.attrs["HostConfig"]["Dns"])
    # What the embedded DNS forwards to, from the host's namespace: IPv4 servers only.
    assert [s for s in servers if ipaddress.ip_address(s).version == 4] == [], servers
    log = _daemon_log()
    if log is None:
        pytest.skip("the Docker daemon's log is not a file this test can read")
    start = log.stat().st_size
    result = container.exec_run(["perl", "-e", TCP_LOOKUP], user=AGENT_USER)
    assert b"asked" in bytes(result.output), result.output
    assert _resolver_lines(log, start, servers) == []
