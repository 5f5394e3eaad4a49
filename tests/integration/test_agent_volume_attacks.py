"""Invariant 6, disk: a path the agent's image declares with VOLUME is no way past its bounds.

Docker gives each such path an anonymous volume, a directory under /var/lib/docker/volumes on
the host's disk: outside the container's writable layer (so outside `--storage-opt size`),
outside its memory limit and outside every tmpfs. Images FROM postgres, mysql, mongo or redis
declare one, postgres's world-writable. Real daemon; the image, network and container are made
here and removed, no traffic.
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from bottle_engine.dockerapi.containers import AgentContainerSpec, create_agent_container
from bottle_engine.dockerapi.networks import create_internal_network, remove_network
from bottle_engine.errors import BottleError
from bottle_engine.limits import MIB, agent_disk
from tests.bundle_helpers import TEST_LABELS, pick_subnet

pytestmark = pytest.mark.docker

NETWORK = "bb-test-agent-volume"
CONTAINER = "bb-test-agent-volume-agent"
MEMORY = 64 * MIB
DATA = "/var/lib/data"
# As postgres's image leaves its data dir: made world-writable, then declared a volume.
DOCKERFILE = f"""FROM {{base}}
RUN mkdir -p {DATA} /workspace && chmod 1777 {DATA}
VOLUME {DATA}
VOLUME /workspace/
"""
AGENT_USER = "4242:4242"


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
        _remove(docker_client)
        remove_network(docker_client, NETWORK)


def _remove(client: Any) -> None:
    from bottle_engine.dockerapi.containers import remove_container

    remove_container(client, CONTAINER)  # with its anonymous volumes, if it has any


def _spec(image: str, subnet: ipaddress.IPv4Network, filled: tuple[str, ...] = ()) -> Any:
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
        dns_servers=(str(subnet[2]),),
        disk=agent_disk(MEMORY, layer_bounded=False),
        tty=False,
        filled=filled,
    )


def test_the_agent_cannot_write_past_its_memory_into_a_volume_its_image_declares(
    docker_client: Any, volume_image: str, network: ipaddress.IPv4Network
) -> None:
    container = create_agent_container(docker_client, _spec(volume_image, network))
    container.start()
    container.reload()
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
