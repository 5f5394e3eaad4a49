"""This machine's Docker, for the commands about images and runtimes rather than bottles.

`build`, `base bootstrap`, `gvisor install` and `doctor` work on the daemon itself: images by
input key, the base image, the registered runtimes. They reach it through one `Host` object
(a daemon connection made on first use) instead of importing `dockerapi` and passing an SDK
client around; bottles are reached through `lifecycle` and the `Backend` protocol.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bottle_engine import gvisor
from bottle_engine.artifacts import BuildSpec, VerifyResult, build, verify_artifact
from bottle_engine.artifacts.base import bootstrap_base_image, ensure_base_image
from bottle_engine.artifacts.builder import BuildResult, resolve_inputs
from bottle_engine.artifacts.inputs import BuildInputs
from bottle_engine.dockerapi import connect
from bottle_engine.dockerapi.containers import writable_layer_bounded
from bottle_engine.dockerapi.images import inspect_image
from bottle_engine.progress import Progress
from bottle_engine.settings import EngineSettings


class Host:
    """The local Docker daemon (connected on first use; `BottleError` with the fix when it is
    down)."""

    def __init__(self, client: Any | None = None) -> None:
        if client is not None:
            self._docker = client

    @functools.cached_property
    def _docker(self) -> Any:
        return connect()

    # -- what doctor asks ------------------------------------------------------------------
    def version(self) -> str:
        return str(self._docker.version().get("Version", "?"))

    def info(self) -> dict[str, Any]:
        """The daemon's ``docker info``: runtimes, storage driver, ..."""
        return dict(self._docker.info())

    def image_id(self, tag: str) -> str | None:
        """The local image's id, or None when the daemon does not have `tag`."""
        found = inspect_image(self._docker, tag)
        return str(found["Id"]) if found else None

    def gvisor_passes(self, image: str, runtime: Mapping[str, Any] | None) -> bool:
        """Does the registered runsc pass the engine's self-test with `image`?"""
        return gvisor.self_test(self._docker, image, runtime)

    def writable_layer_bounded(self, image: str) -> bool:
        """Can a container's writable layer be given a size here (`--storage-opt size`)?"""
        return writable_layer_bounded(self._docker, image)

    # -- images ----------------------------------------------------------------------------
    def inputs(self, spec: BuildSpec) -> BuildInputs:
        """What `spec`'s input key covers (the base image's digest asked of the daemon)."""
        return resolve_inputs(self._docker, spec)

    def build(
        self,
        spec: BuildSpec,
        *,
        settings: EngineSettings,
        progress: Progress,
        no_cache: bool = False,
        require_cache: bool = False,
    ) -> BuildResult:
        """`artifacts.build` on this daemon: the artifact for `spec`, built or reused."""
        return build(
            self._docker,
            spec,
            progress=progress,
            settings=settings,
            no_cache=no_cache,
            require_cache=require_cache,
        )

    def verify(
        self, spec: BuildSpec, *, settings: EngineSettings, progress: Progress
    ) -> VerifyResult:
        return verify_artifact(self._docker, spec, progress=progress, settings=settings)

    def make_base_image(self, tag: str, *, force: bool, progress: Progress) -> None:
        """Bootstrap the base image `tag` (again with `force`, else only when missing)."""
        if force:
            bootstrap_base_image(self._docker, tag, progress=progress)
        else:
            ensure_base_image(self._docker, tag, progress=progress)

    # -- runtimes --------------------------------------------------------------------------
    def install_gvisor(
        self, image: str, *, deb: Path | None, say: Callable[[str], None]
    ) -> gvisor.SetupReport:
        return gvisor.ensure_gvisor(self._docker, image, deb=deb, say=say)
