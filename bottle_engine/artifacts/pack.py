"""``.smolmachine`` packing for the smolmachines backend, and the pack cache.

A pack is what ``smolvm pack create`` writes: a launcher at the output path and the artifact in a
``.smolmachine`` sidecar beside it (the sidecar is what ``machine create --from`` takes). Packs
are cached under ``cache_dir()/"packs"/<artifact digest hex>-<smolvm id>``, keyed by the
artifact digest (the normalized OCI manifest digest, not a Docker image ID) and by the smolvm
binary that made it (a hash of its bytes: another smolvm may not read the pack), so a cache hit
runs neither Docker nor smolvm. Entries are assembled in a temporary directory and renamed into
place last.

Two ways to pack, chosen by what the installed smolvm can do (`choose_method`):

* ``direct``: smolvm takes a local archive, so the artifact is written as an OCI layout tar and
  passed as ``pack create --image <tar>``;
* ``registry``: smolvm takes only registry references (0.8-era releases), or the caller forces it
  (``--via-registry``): the layout is pushed to an `ephemeral_registry` on 127.0.0.1 and smolvm
  pulls ``localhost:<port>/bot-bottle@<artifact digest>`` (by digest: any local account can
  reach the registry and could re-point a tag before smolvm pulls it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bottle_engine.artifacts.spec import Artifact
from bottle_engine.dockerapi.client import LABEL_PACK
from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress, QuietProgress
from bottle_engine.settings import EngineSettings
from bottle_engine.smolvm import Smolvm, SmolvmInfo, find_binary
from bottle_engine.state import cache_dir

PackMethod = Literal["direct", "registry"]
LAUNCHER_NAME = "bottle"
METADATA_NAME = "pack.json"


@dataclass(frozen=True)
class Pack:
    """A packed artifact in the cache; `sidecar` is what ``machine create --from`` takes."""

    artifact_digest: str
    directory: Path
    method: PackMethod
    smolvm_version: str
    cache_hit: bool = False

    @property
    def launcher(self) -> Path:
        return self.directory / LAUNCHER_NAME

    @property
    def sidecar(self) -> Path:
        return self.directory / f"{LAUNCHER_NAME}.smolmachine"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(directory=str(self.directory), sidecar=str(self.sidecar))
        data["launcher"] = str(self.launcher)
        return data


def packs_dir() -> Path:
    return cache_dir() / "packs"


def digest_hex(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64 or not _is_hex(hex_digest):
        raise BottleError(
            f"{digest!r} is not an artifact digest (sha256:<64 hex digits>)",
            fix="pass the digest `bottle-engine build AGENT --json` prints",
        )
    return hex_digest


def choose_method(info: SmolvmInfo, *, via_registry: bool) -> PackMethod:
    """Direct archive when smolvm takes one and the caller did not force the registry hop."""
    return "direct" if info.accepts_archives and not via_registry else "registry"


_IDENTITIES: dict[tuple[str, int, int], str] = {}


def smolvm_identity(binary: Path) -> str:
    """A short hash of the smolvm binary's bytes (once per file version and process)."""
    info = binary.stat()
    key = (str(binary), info.st_mtime_ns, info.st_size)
    if key not in _IDENTITIES:
        digest = hashlib.sha256()
        with binary.open("rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
        _IDENTITIES[key] = digest.hexdigest()[:12]
    return _IDENTITIES[key]


def pack_dir(digest: str, binary: Path) -> Path:
    """Where the pack of `digest` made by the smolvm at `binary` is cached."""
    return packs_dir() / f"{digest_hex(digest)}-{smolvm_identity(binary)}"


def cached_pack(digest: str, binary: Path | None = None) -> Pack | None:
    """The cached pack for `digest` made by `binary` (default: the smolvm the engine would run),
    or None; runs no docker and no smolvm command."""
    directory = pack_dir(digest, binary or find_binary(EngineSettings.from_env()))
    try:
        metadata = json.loads((directory / METADATA_NAME).read_text())
    except (OSError, ValueError):
        return None
    pack = Pack(
        artifact_digest=digest,
        directory=directory,
        method=metadata.get("method", "direct"),
        smolvm_version=str(metadata.get("smolvm_version", "")),
        cache_hit=True,
    )
    if metadata.get("artifact_digest") != digest or not pack.sidecar.is_file():
        return None
    return pack


def pack_artifact(
    artifact: Artifact,
    *,
    via_registry: bool = False,
    progress: Progress | None = None,
    smolvm: Smolvm | None = None,
    docker_client: Any = None,
    settings: EngineSettings | None = None,
) -> Pack:
    """The `.smolmachine` pack of `artifact`, from the cache or made now (then cached).

    Everything made on the way (archive, registry container, half-written pack) is removed on
    failure and on Ctrl-C; only a complete pack is ever renamed into the cache.
    """
    progress = progress or QuietProgress()
    settings = settings or EngineSettings.from_env()
    binary = smolvm.info.binary if smolvm is not None else find_binary(settings)
    hit = cached_pack(artifact.digest, binary)
    if hit is not None:
        progress.stage("pack: cached")
        progress.detail(str(hit.sidecar))
        return hit

    progress.stage("pack: probe smolvm")
    smolvm = smolvm or Smolvm(settings=settings)
    method = choose_method(smolvm.info, via_registry=via_registry)
    progress.detail(
        f"smolvm {smolvm.info.version}; "
        + ("packing from a local archive" if method == "direct" else "packing via a registry")
    )
    final = pack_dir(artifact.digest, smolvm.info.binary)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Absolute: smolvm reads `--image` as a local archive only when it starts with / or ./
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name[:12]}-", dir=final.parent)).resolve()
    try:
        output = work / LAUNCHER_NAME
        if method == "direct":
            _pack_direct(artifact, smolvm, work, output, progress)
        else:
            _pack_via_registry(artifact, smolvm, output, progress, docker_client, settings)
        if not Path(f"{output}.smolmachine").is_file():
            raise BottleError(
                f"`smolvm pack create` wrote no {output.name}.smolmachine sidecar",
                fix="install a smolvm that writes the sidecar (1.x) or check its output above",
            )
        metadata = {
            "artifact_digest": artifact.digest,
            "method": method,
            "smolvm_version": smolvm.info.version,
        }
        (work / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
        try:
            os.rename(work, final)
        except OSError:
            # Someone else packed the same artifact meanwhile; theirs is as good as ours.
            existing = cached_pack(artifact.digest, smolvm.info.binary)
            if existing is None:
                raise
            return existing
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Pack(artifact.digest, final, method, smolvm.info.version)


def _pack_direct(
    artifact: Artifact, smolvm: Smolvm, work: Path, output: Path, progress: Progress
) -> None:
    from bottle_engine.artifacts.builder import write_image_archive

    progress.stage("pack: write image archive")
    archive = work / "image.tar"
    # The docker-save shape is an OCI layout plus manifest.json: `pack create --help` promises
    # docker-save archives, and newer releases read the OCI layout in the same file.
    write_image_archive(artifact, archive, "docker-save")
    progress.stage("pack: smolvm pack create")
    try:
        smolvm.pack_create(str(archive), output)
    finally:
        archive.unlink(missing_ok=True)


def _pack_via_registry(
    artifact: Artifact,
    smolvm: Smolvm,
    output: Path,
    progress: Progress,
    docker_client: Any,
    settings: EngineSettings,
) -> None:
    from bottle_engine.artifacts.registry import ephemeral_registry
    from bottle_engine.dockerapi import connect

    progress.stage("pack: start ephemeral registry")
    client = docker_client or connect()
    label = digest_hex(artifact.digest)[:12]
    with ephemeral_registry(client, {LABEL_PACK: label}, settings) as registry:
        progress.detail(f"registry on 127.0.0.1:{registry.port}")
        progress.stage("pack: push image")
        reference = registry.push_layout(artifact.layout_dir, artifact.digest)
        progress.detail(reference)
        progress.stage("pack: smolvm pack create")
        smolvm.pack_create(reference, output)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
