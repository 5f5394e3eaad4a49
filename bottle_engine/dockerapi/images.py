"""Images: build from a prepared context, save, load, import, tag, remove, inspect.

The artifact builder (`bottle_engine.artifacts`) decides *what* to build and keeps the results;
this module only speaks to the daemon. Build contexts are sent as tar streams the caller made
(`custom_context`), so the files Docker sees are exactly the files the input key covers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import docker.errors
from docker.utils.build import PatternMatcher

from bottle_engine.dockerapi.client import docker_errors
from bottle_engine.errors import BottleError

_CHUNK = 1024 * 1024


def dockerignore_included(root: Path, patterns: Iterable[str], always: Iterable[str]) -> set[str]:
    """Paths under `root` (files and directories, relative, POSIX) that `.dockerignore` keeps.

    Uses the SDK's matcher, which follows Docker's rules (`**`, `!` exceptions, last match
    wins). Paths in `always` (the Dockerfile, `.dockerignore`) are kept whatever the patterns say,
    as the Docker CLI does.
    """
    rules = list(patterns) + [f"!{path}" for path in always]
    try:
        return set(PatternMatcher(rules).walk(str(root)))
    except RecursionError:  # the SDK's walk recurses once a level: a loop of mkdir ends it
        raise BottleError(
            f"the build context {root} holds directories nested deeper than the listing of "
            f"a context goes (about {sys.getrecursionlimit()} levels)",
            fix="move them out of the context, or exclude them in its .dockerignore",
        ) from None


def image_attrs(client: Any, ref: str) -> dict[str, Any]:
    """The daemon's `docker image inspect` of `ref`; a `BottleError` saying how to get the
    image when it has none."""
    with docker_errors(f"inspecting image {ref}"):
        attrs: dict[str, Any] = client.api.inspect_image(ref)
    return attrs


def inspect_image(client: Any, ref: str) -> dict[str, Any] | None:
    """The daemon's `docker image inspect` of `ref`, or None when it has no such image."""
    try:
        return image_attrs(client, ref)
    except BottleError as exc:
        if isinstance(exc.__cause__, docker.errors.ImageNotFound):
            return None
        raise


def image_config(client: Any, ref: str) -> dict[str, Any]:
    """The config a container of `ref` starts from (labels, volumes, user, ...)."""
    config: dict[str, Any] = image_attrs(client, ref).get("Config") or {}
    return config


def build_image(
    client: Any,
    context_tar: IO[bytes],
    *,
    dockerfile: str,
    build_args: Mapping[str, str],
    labels: Mapping[str, str],
    no_cache: bool,
    on_output: Callable[[str], None],
    what: str,
) -> str:
    """Build from the tar stream `context_tar`; returns the image ID.

    Every output line goes to `on_output`. A failing step raises a `BottleError` that carries
    that step's output (the part of the log since its ``Step N/M`` line).
    """
    step_lines: list[str] = []
    image_id: str | None = None
    with docker_errors(f"building {what}"):
        stream = client.api.build(
            fileobj=context_tar,
            custom_context=True,
            dockerfile=dockerfile,
            buildargs=dict(build_args),
            labels=dict(labels),
            nocache=no_cache,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for event in stream:
            if "aux" in event and isinstance(event["aux"], dict) and "ID" in event["aux"]:
                image_id = str(event["aux"]["ID"])
            text = event.get("stream")
            if isinstance(text, str):
                for line in text.splitlines():
                    if not line.strip():
                        continue
                    if line.startswith("Step "):
                        step_lines = []
                    step_lines.append(line)
                    on_output(line)
            if "error" in event:
                detail = "\n".join(step_lines[-40:])
                message = str(event.get("error", "")).strip()
                raise BottleError(
                    f"building {what} failed: {message}\n{detail}".rstrip(),
                    fix="read the failing step's output above; fix the Dockerfile or the "
                    "build context, then build again",
                )
    if image_id is None:
        raise BottleError(f"building {what}: the Docker daemon reported no image ID")
    return image_id


def step_times(client: Any, ref: str) -> list[int]:
    """Creation time (Unix seconds) of each history step of `ref`, newest first."""
    with docker_errors(f"reading the history of image {ref}"):
        return [int(step.get("Created", 0)) for step in client.api.history(ref)]


def export_image(client: Any, ref: str) -> Iterator[bytes]:
    """`docker save` of `ref` as a stream of chunks (a tar in Docker's save format)."""
    with docker_errors(f"exporting image {ref}"):
        yield from client.api.get_image(ref, chunk_size=_CHUNK)


def load_image(client: Any, archive: Path) -> None:
    """`docker load` the docker-save archive `archive` (its RepoTags name the image)."""
    with docker_errors(f"loading {archive} into Docker"), archive.open("rb") as data:
        for event in client.api.load_image(data):
            if isinstance(event, dict) and "error" in event:
                raise BottleError(f"loading {archive} into Docker failed: {event['error']}")


def import_rootfs(client: Any, rootfs_tar: Path, repository: str, tag: str) -> str:
    """`docker import` a root file system tar as `repository:tag`; returns the image ID."""
    with docker_errors(f"importing {rootfs_tar} as {repository}:{tag}"):
        client.api.import_image_from_file(
            str(rootfs_tar), repository=repository, tag=tag, changes=['CMD ["bash"]']
        )
        image_id: str = client.api.inspect_image(f"{repository}:{tag}")["Id"]
        return image_id


def tag_image(client: Any, image_id: str, repository: str, tag: str) -> None:
    with docker_errors(f"tagging {image_id} as {repository}:{tag}"):
        client.api.tag(image_id, repository, tag=tag, force=True)


def remove_image(client: Any, ref: str) -> bool:
    """Remove `ref` (and its untagged parents); False when absent or still in use."""
    try:
        client.api.remove_image(ref, force=False, noprune=False)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # used by a container, or tagged elsewhere: leave it
            return False
        raise BottleError(f"removing image {ref}: {exc.explanation or exc}") from exc
    return True


def pull_image(client: Any, ref: str, *, fix: str) -> None:
    """Pull `ref` from its registry; a `BottleError` with `fix` when that is impossible."""
    try:
        client.api.pull(ref)
    except docker.errors.DockerException as exc:
        raise BottleError(f"cannot pull image {ref}: {exc}", fix=fix) from exc
