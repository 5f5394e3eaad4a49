"""The base image every bottle image builds FROM, and how to get one without a registry.

The default base is Debian bookworm-slim pinned by digest. Machines without a reachable
registry bootstrap a Debian base themselves (`ensure_base_image`: debootstrap, then a normalized
root file system tar imported into Docker, so this base is reproducible too) and select it with
``BOTTLE_BASE_IMAGE=bot-bottle/base:bookworm``.

A base image's *content digest* (`image_content_digest`) covers its layers, runtime config and
ONBUILD triggers, not the image ID: a ``docker import`` of the same tar gets a new ID (its
creation time) but the same content digest, so input keys agree across machines.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bottle_engine.artifacts.normalize import NormalizeRules, write_rootfs_tar
from bottle_engine.artifacts.oci import RUNTIME_CONFIG_KEYS, canonical_json
from bottle_engine.dockerapi import images
from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress, QuietProgress
from bottle_engine.settings import ENV_BASE_IMAGE, EngineSettings

DEFAULT_BASE_TAG = "bot-bottle/base:bookworm"
# debian:bookworm-slim as published on Docker Hub, pinned so that the default never moves.
PINNED_DEFAULT_BASE = (
    "debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251"
)
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_ENV = ENV_BASE_IMAGE


def resolve_base_image(manifest_value: str | None, settings: EngineSettings | None = None) -> str:
    """``BOTTLE_BASE_IMAGE`` (`settings`), else the manifest's value, else the pin."""
    settings = settings or EngineSettings.from_env()
    return settings.base_image or manifest_value or PINNED_DEFAULT_BASE


# What of a base image's config shapes a build FROM it: its runtime config, and its ONBUILD
# triggers, which run in every such build and add no layer to the base itself.
BUILD_CONFIG_KEYS = (*RUNTIME_CONFIG_KEYS, "OnBuild")


def image_content_digest(attrs: dict[str, Any]) -> str:
    """A digest of what an image holds (layers, platform, the config a build FROM it reads),
    from its inspect."""
    runtime = attrs.get("Config") or {}
    content = {
        "os": attrs.get("Os", "linux"),
        "architecture": attrs.get("Architecture", "amd64"),
        "diff_ids": (attrs.get("RootFS") or {}).get("Layers", []),
        "config": {key: runtime[key] for key in BUILD_CONFIG_KEYS if runtime.get(key)},
    }
    return "sha256:" + hashlib.sha256(canonical_json(content)).hexdigest()


def base_image_digest(client: Any, ref: str, progress: Progress | None = None) -> str:
    """The content digest of `ref`; bootstraps the default base or pulls others when absent."""
    if ref == DEFAULT_BASE_TAG:
        ensure_base_image(client, ref, progress=progress)
    return image_digest(client, ref, progress, what="base image", fix=_NO_BASE_FIX)


def image_digest(
    client: Any,
    ref: str,
    progress: Progress | None = None,
    *,
    what: str = "image",
    fix: str | None = None,
) -> str:
    """The content digest of `ref`, pulled first when Docker lacks it (as `docker build` would)."""
    fix = fix or f"make Docker hold {ref}: `docker pull {ref}`, or `docker load` it offline"
    attrs = images.inspect_image(client, ref)
    if attrs is None:
        (progress or QuietProgress()).stage(f"pull {what} {ref}")
        images.pull_image(client, ref, fix=fix)
        attrs = images.inspect_image(client, ref)
        if attrs is None:
            raise BottleError(f"{what} {ref} is not in the Docker daemon", fix=fix)
    return image_content_digest(attrs)


_NO_BASE_FIX = (
    f"without a registry, run `bottle-engine base bootstrap` and set {BASE_ENV}={DEFAULT_BASE_TAG}"
    " (or `base_image` in bottle.toml)"
)


def ensure_base_image(
    client: Any, tag: str = DEFAULT_BASE_TAG, *, progress: Progress | None = None
) -> str:
    """`tag`, bootstrapping a Debian bookworm minbase image under it if Docker lacks it."""
    if images.inspect_image(client, tag) is None:
        bootstrap_base_image(client, tag, progress=progress)
    return tag


def check_bootstrap_tools() -> None:
    """A `BottleError` naming the fix when debootstrap cannot run here."""
    if shutil.which("debootstrap") is None:
        raise BottleError(
            "cannot bootstrap the base image: debootstrap is not installed",
            fix="install it (`apt-get install debootstrap`), or set "
            f"{BASE_ENV} to a Debian image your Docker daemon already has",
        )
    if os.geteuid() != 0:
        raise BottleError(
            "cannot bootstrap the base image: debootstrap needs root",
            fix="run `sudo bottle-engine base bootstrap` once",
        )


def bootstrap_base_image(client: Any, tag: str, *, progress: Progress | None = None) -> str:
    """debootstrap bookworm (minbase), normalize the tree into a tar, `docker import` it."""
    progress = progress or QuietProgress()
    check_bootstrap_tools()
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        raise BottleError(
            f"base image tag {tag!r} has no ':TAG' part", fix="use e.g. bot-bottle/base:bookworm"
        )
    rules = NormalizeRules(source_date_epoch=EngineSettings.from_env().clamp_time() or 0)
    work = Path(tempfile.mkdtemp(prefix="bot-bottle-base-"))
    try:
        rootfs = work / "rootfs"
        progress.stage("debootstrap Debian bookworm (minbase)")
        _run_debootstrap(rootfs, progress)
        progress.stage(f"import base image {tag}")
        rootfs_tar = work / "rootfs.tar"
        write_rootfs_tar(rootfs, rootfs_tar, rules)
        images.import_rootfs(client, rootfs_tar, repository, version)
    finally:
        _unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    return tag


def _run_debootstrap(rootfs: Path, progress: Progress) -> None:
    command = ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR]
    tail: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail = [*tail[-30:], line.rstrip()]
            progress.detail(line.rstrip())
    if process.returncode != 0:
        raise BottleError(
            "debootstrap failed:\n" + "\n".join(tail),
            fix=f"check that {DEBIAN_MIRROR} is reachable and the disk has ~500 MB free",
        )


def _unmount_under(directory: Path) -> None:
    """Unmount anything a killed debootstrap left mounted (/proc, /sys) before deleting."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(directory.resolve()) + "/"
    targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
