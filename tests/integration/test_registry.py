"""The ephemeral registry against the real daemon, with a registry:2 built from Debian's
docker-registry package (through BOTTLE_REGISTRY_IMAGE, as users without Docker Hub do)."""

from __future__ import annotations

import hashlib
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts.registry import ephemeral_registry
from bottle_engine.dockerapi.client import LABEL_REGISTRY_ID
from bottle_engine.dockerapi.registry_container import list_registries
from bottle_engine.errors import BottleError
from tests.fakes.oci_layout import OCI_MANIFEST, make_layout

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.usefixtures("use_test_registry")]

TEST_LABEL = {"bot-bottle.test": "1"}


def port_bindings(docker_client: Any, container_id: str) -> list[dict[str, str]]:
    attrs = docker_client.api.inspect_container(container_id)
    published = attrs["NetworkSettings"]["Ports"]
    configured = attrs["HostConfig"]["PortBindings"]
    return [b for bindings in (*published.values(), *configured.values()) for b in bindings or []]


def test_registry_is_published_on_loopback_only(docker_client: Any) -> None:
    with ephemeral_registry(docker_client, TEST_LABEL) as registry:
        bindings = port_bindings(docker_client, registry.container_id)
        assert bindings
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}
        assert {int(b["HostPort"]) for b in bindings if b["HostPort"]} == {registry.port}


def test_pushed_manifest_keeps_the_artifact_digest(docker_client: Any, tmp_path: Path) -> None:
    artifact = make_layout(tmp_path, "digest")
    with ephemeral_registry(docker_client, TEST_LABEL) as registry:
        reference = registry.push_layout(artifact.layout_dir, artifact.digest)
        assert reference == f"localhost:{registry.port}/bot-bottle@{artifact.digest}"
        request = urllib.request.Request(
            f"{registry.base_url}/v2/bot-bottle/manifests/{artifact.digest}",
            headers={"Accept": OCI_MANIFEST},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            assert response.headers["Docker-Content-Digest"] == artifact.digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == artifact.digest


def test_registry_is_removed_when_the_block_fails(docker_client: Any) -> None:
    with pytest.raises(RuntimeError), ephemeral_registry(docker_client, TEST_LABEL) as registry:
        container_id = registry.container_id
        raise RuntimeError("pack failed")
    assert not docker_client.containers.list(all=True, filters={"id": container_id})


def test_registry_is_removed_after_success(docker_client: Any) -> None:
    with ephemeral_registry(docker_client, TEST_LABEL) as registry:
        labels = docker_client.api.inspect_container(registry.container_id)["Config"]["Labels"]
    assert not list_registries(docker_client, {LABEL_REGISTRY_ID: labels[LABEL_REGISTRY_ID]})


def test_two_registries_at_once_get_their_own_ports(docker_client: Any) -> None:
    ports: list[int] = []
    both_up = threading.Barrier(2, timeout=120)

    def hold_one() -> None:
        with ephemeral_registry(docker_client, TEST_LABEL) as registry:
            ports.append(registry.port)
            both_up.wait()

    threads = [threading.Thread(target=hold_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert len(ports) == 2
    assert ports[0] != ports[1]


def test_missing_registry_image_names_the_override(
    docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTLE_REGISTRY_IMAGE", "bot-bottle/no-such-registry:none")
    with (
        pytest.raises(BottleError, match="not in the local Docker daemon") as caught,
        ephemeral_registry(docker_client, TEST_LABEL),
    ):
        pass
    assert "BOTTLE_REGISTRY_IMAGE" in str(caught.value.fix)
