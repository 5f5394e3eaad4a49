"""Docker side of the ephemeral registry: run one `registry:2` container on loopback, remove it.

The registry's port is published on ``127.0.0.1`` with a port the daemon picks, never on
``0.0.0.0``: it holds the agent image for the few seconds a pack takes, and nothing else on the
network should reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker.errors

from bottle_engine.dockerapi.client import LABEL_MANAGED, LABEL_ROLE, docker_errors
from bottle_engine.errors import BottleError
from bottle_engine.settings import ENV_REGISTRY_IMAGE, EngineSettings

# registry:2.8.3, the multi-arch index, pinned so a re-tag upstream cannot change what runs.
DEFAULT_REGISTRY_IMAGE = (
    "registry:2.8.3@sha256:a3d8aaa63ed8681a604f1dea0aa03f100d5895b6a58ace528858a7b332415373"
)
REGISTRY_PORT = "5000/tcp"
ROLE_REGISTRY = "registry"


@dataclass(frozen=True)
class RegistryContainer:
    container_id: str
    host: str
    port: int


def registry_image(settings: EngineSettings) -> str:
    """The registry image to run: ``$BOTTLE_REGISTRY_IMAGE`` or the pinned registry:2.8.3."""
    return settings.registry_image or DEFAULT_REGISTRY_IMAGE


def start_registry(client: Any, labels: dict[str, str], image: str) -> RegistryContainer:
    """Start a registry container of `image` (`registry_image`) published on
    127.0.0.1:<random>; the caller removes it.

    If the container starts but its port cannot be read, it is removed before raising.
    """
    all_labels = {LABEL_MANAGED: "1", LABEL_ROLE: ROLE_REGISTRY, **labels}
    with docker_errors(f"start the ephemeral registry ({image})"):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise BottleError(
                f"the registry image {image} is not in the local Docker daemon",
                fix=f"`docker pull {image}`, or set {ENV_REGISTRY_IMAGE} to a registry:2 image "
                "you have (e.g. one built from Debian's docker-registry package)",
            ) from exc
        container = client.containers.run(
            image,
            detach=True,
            labels=all_labels,
            ports={REGISTRY_PORT: ("127.0.0.1", None)},
        )
    try:
        with docker_errors("read the ephemeral registry's port"):
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get(REGISTRY_PORT) or []
        if not bindings:
            raise BottleError(
                "the ephemeral registry container published no port",
                fix="check that the registry image listens on 5000/tcp "
                f"({ENV_REGISTRY_IMAGE}={image})",
            )
        binding = bindings[0]
        return RegistryContainer(container.id, binding["HostIp"], int(binding["HostPort"]))
    except BaseException:
        remove_registry(client, container.id)
        raise


def registry_logs(client: Any, container_id: str) -> str:
    """The last lines of the registry's log, for error messages; empty if unavailable."""
    try:
        raw: bytes = client.containers.get(container_id).logs(tail=20)
        return raw.decode("utf-8", "replace").strip()
    except docker.errors.DockerException:
        return ""


def remove_registry(client: Any, container_id: str) -> None:
    """Force-remove the registry container (and its anonymous volume); gone already is fine."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise BottleError(
                f"could not remove the ephemeral registry container {container_id[:12]}: {exc}",
                fix=f"remove it by hand: `docker rm -f {container_id[:12]}`",
            ) from exc


def list_registries(client: Any, labels: dict[str, str]) -> list[Any]:
    """Registry containers (running or not) carrying all of `labels`."""
    wanted = [f"{LABEL_ROLE}={ROLE_REGISTRY}", *(f"{k}={v}" for k, v in labels.items())]
    with docker_errors("list ephemeral registries"):
        found: list[Any] = client.containers.list(all=True, filters={"label": wanted})
    return found
