"""The ephemeral registry: a throw-away `registry:2` on 127.0.0.1 for smolvm releases that pack
only from a registry reference.

`ephemeral_registry` is a context manager: the container exists only inside the ``with`` block
and is force-removed on the way out, also on errors and Ctrl-C. Every registry gets its own
random host port and a unique label, so two concurrent packs never share or remove each
other's registry, and a container created in the instant before an interrupt is still found
and removed.

Pushing: the OCI image layout's blobs and manifest are uploaded over the registry HTTP API as
they are, byte for byte, rather than loading the image into Docker and ``docker push``-ing it.
Docker would re-compress layers and rewrite the manifest, so the registry's digest would differ
from the artifact digest; pushing the stored bytes keeps the pushed manifest digest equal to the
artifact digest, which `EphemeralRegistry.push_layout` checks against the registry's
``Docker-Content-Digest`` answer.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottle_engine.artifacts.registry_api import RepositoryClient
from bottle_engine.dockerapi.client import LABEL_REGISTRY_ID
from bottle_engine.dockerapi.registry_container import (
    list_registries,
    registry_image,
    registry_logs,
    remove_registry,
    start_registry,
)
from bottle_engine.errors import BottleError
from bottle_engine.settings import ENV_REGISTRY_IMAGE, EngineSettings

READY_TIMEOUT_S = 30.0
REPOSITORY = "bot-bottle"
_PLAIN_REGISTRY = f"check the registry image ({ENV_REGISTRY_IMAGE}) is a plain registry:2"
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


@dataclass(frozen=True)
class EphemeralRegistry:
    """A running registry on ``127.0.0.1:port``; valid only inside `ephemeral_registry`."""

    container_id: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reference(self, digest: str) -> str:
        """How clients on this host name an image here: by digest
        (``localhost:<port>/bot-bottle@sha256:...``), never by tag. Every local account can
        reach the registry, and a tag is a name any of them could point at an image of its
        own between our push and smolvm's pull; a digest names these bytes alone."""
        return f"localhost:{self.port}/{REPOSITORY}@{digest}"

    def push_layout(self, layout_dir: Path, digest: str) -> str:
        """Push the image `digest` from the OCI layout at `layout_dir` (by digest: no tag is
        made); return its `reference`.

        Raises `BottleError` when the layout lacks that manifest or the registry stores it
        under another digest.
        """
        blobs = layout_dir / "blobs"
        index = json.loads((layout_dir / "index.json").read_text())
        descriptor = next((m for m in index.get("manifests", []) if m["digest"] == digest), None)
        if descriptor is None:
            raise BottleError(
                f"the OCI layout {layout_dir} has no manifest {digest}",
                fix="rebuild the artifact (`bottle-engine build AGENT`); the store is damaged",
            )
        _push_manifest(_EphemeralRepository(self.base_url), blobs, descriptor)
        return self.reference(digest)


def _push_manifest(repository: RepositoryClient, blobs: Path, descriptor: dict[str, Any]) -> None:
    body = _blob_path(blobs, descriptor["digest"]).read_bytes()
    manifest = json.loads(body)
    media_type = manifest.get("mediaType") or descriptor.get("mediaType")
    if media_type in _INDEX_TYPES:
        for child in manifest["manifests"]:
            _push_manifest(repository, blobs, child)
    else:
        for blob in [manifest["config"], *manifest["layers"]]:
            repository.push_blob(_blob_path(blobs, blob["digest"]), blob["digest"])
    stored = repository.put_manifest(
        descriptor["digest"],
        body,
        str(media_type),
        doing=f"push manifest {descriptor['digest']}",
    )
    if stored != descriptor["digest"]:
        raise BottleError(
            f"the ephemeral registry stored manifest {descriptor['digest']} as {stored}",
            fix=f"use an unmodified registry:2 image ({ENV_REGISTRY_IMAGE})",
        )


class _EphemeralRepository(RepositoryClient):
    """The ephemeral registry's one repository. It is our pinned registry:2 (or the person's
    `BOTTLE_REGISTRY_IMAGE`), so an answer other than the spec's is an error."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, REPOSITORY, timeout=300, opener=_loopback_opener())

    def _answered(self, exc: urllib.error.HTTPError, doing: str) -> BottleError:
        detail = exc.read().decode("utf-8", "replace")[:300]
        return BottleError(
            f"{doing}: the ephemeral registry answered {exc.code}: {detail}",
            fix=_PLAIN_REGISTRY,
        )

    def _unreachable(self, exc: OSError, doing: str) -> BottleError:
        return BottleError(
            f"{doing}: cannot reach the ephemeral registry on {self.base_url}: {exc}",
            fix="check that nothing on this host blocks connections to 127.0.0.1",
        )

    def _unexpected(self, status: int, expected: int, doing: str) -> BottleError:
        return BottleError(
            f"{doing}: the ephemeral registry answered {status}, expected {expected}",
            fix=_PLAIN_REGISTRY,
        )

    def _upload_elsewhere(self, digest: str) -> BottleError:
        return BottleError(
            f"push blob {digest[:19]}: the ephemeral registry sent the upload to another host",
            fix=_PLAIN_REGISTRY,
        )


def _loopback_opener() -> urllib.request.OpenerDirector:
    """The registry is on 127.0.0.1: never reached through `HTTP_PROXY` (a build host behind a
    proxy often sets it without `NO_PROXY`, and the proxy cannot reach this host's loopback)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _blob_path(blobs: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    path = blobs / algorithm / hex_digest
    if not path.is_file():
        raise BottleError(
            f"the OCI layout lacks blob {digest} ({path})",
            fix="rebuild the artifact (`bottle-engine build AGENT`); the store is damaged",
        )
    return path


@contextmanager
def ephemeral_registry(
    client: Any, labels: dict[str, str] | None = None, settings: EngineSettings | None = None
) -> Iterator[EphemeralRegistry]:
    """A fresh registry on 127.0.0.1:<random>, removed when the block exits (however it exits);
    its image is the settings' (``BOTTLE_REGISTRY_IMAGE``) or the pinned one."""
    image = registry_image(settings or EngineSettings.from_env())
    registry_id = uuid.uuid4().hex
    all_labels = {**(labels or {}), LABEL_REGISTRY_ID: registry_id}
    container_id: str | None = None
    try:
        started = start_registry(client, all_labels, image)
        container_id = started.container_id
        registry = EphemeralRegistry(container_id=container_id, port=started.port)
        _wait_ready(client, registry)
        yield registry
    finally:
        if container_id is not None:
            remove_registry(client, container_id)
        else:
            # Interrupted between create and return: find it by the label only it carries.
            for container in list_registries(client, {LABEL_REGISTRY_ID: registry_id}):
                remove_registry(client, container.id)


def _wait_ready(client: Any, registry: EphemeralRegistry) -> None:
    """Poll ``/v2/`` until the registry answers 200 (it serves API version 2)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = ""
    while time.monotonic() < deadline:
        try:
            with _loopback_opener().open(registry.base_url + "/v2/", timeout=2) as response:
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"status {exc.code}"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.1)
    logs = registry_logs(client, registry.container_id)
    raise BottleError(
        f"the ephemeral registry did not become ready on {registry.base_url} within "
        f"{READY_TIMEOUT_S:.0f} s ({last_error})" + (f"; its log ends:\n{logs}" if logs else ""),
        fix=f"check the registry image ({ENV_REGISTRY_IMAGE}) serves plain HTTP on 5000/tcp "
        "without authentication",
    )
