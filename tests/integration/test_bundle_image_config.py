"""What the bundle image's config may not bring to the bundle container.

The bundle image is built FROM the bottle's base image, and so carries whatever config that
base set:

* a HEALTHCHECK: Docker accepts `--interval=1ms`, and the daemon, containerd and the shim then
  start a probe in the container as fast as they can, on the host's CPUs outside the bundle's
  CPU bound, for as long as the bottle lives;
* a label the engine finds its resources by: Docker gives the container its image's labels
  beneath the ones it is created with, and a bundle carrying `bot-bottle.pool` is one the warm
  pool takes for an orphaned member's, which `gc` removes from under a live bottle.

Real daemon; the images (FROM the bundle image), networks and containers are made here and
removed. The bundles make no connection: a pool member's waits for a config that never comes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import BundleConfig
from bottle_engine.dockerapi.bundle_container import (
    BundlePlacement,
    run_bundle_container,
    run_pool_bundle_container,
)
from bottle_engine.dockerapi.client import LABEL_POOL
from bottle_engine.dockerapi.containers import containers_with_label, remove_container
from bottle_engine.dockerapi.images import image_config, inspect_image
from bottle_engine.errors import BottleError
from tests.bundle_helpers import TEST_LABELS
from tests.integration.test_gitgate_support import BottleNetworks, bottle_networks

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def networks(docker_client: Any) -> Iterator[BottleNetworks]:
    with bottle_networks(docker_client) as made:
        yield made


def _derived(client: Any, bundle_image: str, instruction: str) -> Iterator[str]:
    dockerfile = io.BytesIO(f"FROM {bundle_image}\n{instruction}\n".encode())
    image, _ = client.images.build(fileobj=dockerfile, rm=True, labels=TEST_LABELS)
    try:
        yield str(image.id)
    finally:
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def probing_image(docker_client: Any, bundle_image: str) -> Iterator[str]:
    """Each probe appends a line to a file in the container's /tmp."""
    yield from _derived(
        docker_client, bundle_image, "HEALTHCHECK --interval=1ms CMD echo probe >> /tmp/probes"
    )


@pytest.fixture(scope="module")
def labelled_image(docker_client: Any, bundle_image: str) -> Iterator[str]:
    yield from _derived(docker_client, bundle_image, f"LABEL {LABEL_POOL}=m-1")


def _placement(networks: BottleNetworks, image: str, state_dir: Path) -> BundlePlacement:
    return BundlePlacement(
        name=f"bb-test-{networks.run_id}-bundle",
        image=image,
        state_dir=state_dir,
        internal_network=networks.internal,
        bundle_ip=str(networks.subnet[2]),
        egress_network=networks.egress,
        labels=TEST_LABELS,
    )


def _pool_bundle(client: Any, placement: BundlePlacement, networks: BottleNetworks) -> Any:
    return run_pool_bundle_container(
        client, placement, member="m-test", agent_ip=str(networks.subnet[3])
    )


def _bottle_bundle(client: Any, placement: BundlePlacement, networks: BottleNetworks) -> Any:
    config = BundleConfig(
        slug=f"test-{networks.run_id}",
        bundle_ip=placement.bundle_ip,
        agent_subnet=str(networks.subnet),
        agent_ip=str(networks.subnet[3]),
    )
    return run_bundle_container(
        client,
        name=placement.name,
        image=placement.image,
        config=config,
        state_dir=placement.state_dir,
        secret_files={},
        internal_network=placement.internal_network,
        bundle_ip=placement.bundle_ip,
        egress_network=placement.egress_network,
        labels=placement.labels,
    )


def test_the_base_images_healthcheck_runs_no_probe_in_the_bundle(
    docker_client: Any, probing_image: str, networks: BottleNetworks, tmp_path: Path
) -> None:
    placement = _placement(networks, probing_image, tmp_path / "state")
    try:
        bundle = _pool_bundle(docker_client, placement, networks)
        time.sleep(2)
        bundle.reload()
        assert bundle.status == "running", bundle.logs()
        probes = bundle.exec_run(["sh", "-c", "cat /tmp/probes 2>/dev/null | wc -l"])
        assert int(bytes(probes.output).decode().strip() or 0) == 0, probes.output
        assert bundle.attrs["State"].get("Health") is None, bundle.attrs["State"]
    finally:
        remove_container(docker_client, placement.name)


@pytest.mark.parametrize("run", [_bottle_bundle, _pool_bundle], ids=["bottle", "pool"])
def test_a_bundle_image_carrying_the_engines_own_labels_is_refused(
    docker_client: Any,
    labelled_image: str,
    networks: BottleNetworks,
    tmp_path: Path,
    run: Any,
) -> None:
    """Refused before any container exists: none answers to the pool member's id."""
    placement = _placement(networks, labelled_image, tmp_path / "state")
    try:
        with pytest.raises(BottleError) as refused:
            run(docker_client, placement, networks)
        assert f"LABEL {LABEL_POOL}" in refused.value.message
        assert "base image" in (refused.value.fix or "")
        assert containers_with_label(docker_client, LABEL_POOL, "m-1") == []
    finally:
        remove_container(docker_client, placement.name)


def test_the_config_of_an_image_the_daemon_lacks_is_an_error_naming_it(
    docker_client: Any, bundle_image: str
) -> None:
    """`inspect_image` answers None for a missing image; `image_config`, which every container
    the engine creates reads first, says which image is gone and how to get it back."""
    gone = "bot-bottle-test/gone:never-built"
    assert inspect_image(docker_client, gone) is None
    with pytest.raises(BottleError) as missing:
        image_config(docker_client, gone)
    assert gone in missing.value.message and "image not found" in missing.value.message
    assert "bottle-engine build" in (missing.value.fix or "")
    assert (
        image_config(docker_client, bundle_image)["Labels"]
        == (inspect_image(docker_client, bundle_image) or {})["Config"]["Labels"]
    )
