"""OCI image layouts: writing one from a `docker save` archive, reading, archiving, comparing.

The artifact digest is the sha256 of the layout's image manifest. The manifest, the config and
every JSON document here are serialized canonically (sorted keys, no spaces), the config keeps
only what changes how a container runs (no build host, container ID or times: ``created`` is the
clamp time, history entries keep their commands and lose their timestamps).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from bottle_engine.artifacts.normalize import (
    LayerBlob,
    NormalizeRules,
    layer_entries,
    write_layer_blob,
)
from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress
from bottle_engine.regular_files import load_json

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# The parts of a Docker image config that shape a container; everything else is build noise.
RUNTIME_CONFIG_KEYS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
)
ArchiveFormat = Literal["oci", "docker-save"]
# A PAX or GNU long-name header a layer may carry; ours hold paths and xattrs, a few KiB.
MAX_TAR_HEADER_BYTES = 1 << 20
# The paths `layer_listing` keeps of one layer (about 400 bytes each): an agent image's largest
# layer holds a few hundred thousand.
MAX_LAYER_ENTRIES = 1_000_000
_LONG_HEADERS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def normalized_config(
    docker_config: dict[str, Any], diff_ids: list[str], sde: int
) -> dict[str, Any]:
    """The OCI config of an image built by Docker, without anything that varies per build."""
    runtime = docker_config.get("config") or {}
    history = [
        {
            "created_by": item.get("created_by", ""),
            **({"empty_layer": True} if item.get("empty_layer") else {}),
        }
        for item in docker_config.get("history", [])
    ]
    return {
        "architecture": docker_config.get("architecture", "amd64"),
        "os": docker_config.get("os", "linux"),
        "created": datetime.fromtimestamp(sde, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {key: runtime[key] for key in RUNTIME_CONFIG_KEYS if runtime.get(key)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }


def _write_blob(blobs_dir: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = blobs_dir / digest
    if not path.exists():
        path.write_bytes(data)
    return "sha256:" + digest


def layout_from_docker_save(
    save_stream: Iterable[bytes], layout_dir: Path, rules: NormalizeRules, progress: Progress
) -> str:
    """Normalize the image in a `docker save` stream into an OCI layout at `layout_dir`;
    returns the manifest digest (the artifact digest).

    Each layer is spooled next to the layout as it arrives and normalized in a worker while the
    daemon is still exporting the next one (two workers: the machines we target have 2 cores).
    """
    blobs_dir = layout_dir / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    spool_dir = layout_dir.parent / "spool"
    spool_dir.mkdir(exist_ok=True)
    documents: dict[str, bytes] = {}
    pending: dict[str, Future[LayerBlob]] = {}
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        tarfile.open(fileobj=cast(IO[bytes], ChunkReader(save_stream)), mode="r|") as outer,
    ):
        for member in outer:
            handle = outer.extractfile(member) if member.isreg() else None
            if handle is None:
                continue
            if member.name.endswith(".tar"):
                progress.detail(f"exported layer {len(pending) + 1}, normalizing")
                spool = spool_dir / f"layer-{len(pending)}.tar"
                with spool.open("wb") as out:
                    shutil.copyfileobj(handle, out, 1024 * 1024)
                pending[member.name] = pool.submit(_normalize_spooled, spool, blobs_dir, rules)
            elif member.name.endswith(".json"):
                documents[member.name] = handle.read()
    shutil.rmtree(spool_dir, ignore_errors=True)
    if "manifest.json" not in documents:
        raise BottleError("the image exported by Docker has no manifest.json")
    manifest = json.loads(documents["manifest.json"])[0]
    docker_config = json.loads(documents[manifest["Config"]])
    layers = [pending[name].result() for name in manifest["Layers"]]
    config = normalized_config(
        docker_config, [layer.diff_id for layer in layers], rules.source_date_epoch
    )
    config_bytes = canonical_json(config)
    image_manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {
            "mediaType": MEDIA_CONFIG,
            "digest": _write_blob(blobs_dir, config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    manifest_bytes = canonical_json(image_manifest)
    digest = _write_blob(blobs_dir, manifest_bytes)
    write_layout_index(layout_dir, digest, len(manifest_bytes))
    return digest


def write_layout_index(layout_dir: Path, digest: str, manifest_size: int) -> None:
    """Write the layout's ``index.json`` (naming the one image manifest) and ``oci-layout``."""
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": digest, "size": manifest_size}],
    }
    (layout_dir / "index.json").write_bytes(canonical_json(index))
    (layout_dir / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))


def _normalize_spooled(spool: Path, blobs_dir: Path, rules: NormalizeRules) -> LayerBlob:
    try:
        with tarfile.open(spool, "r:") as layer:
            return write_layer_blob(layer_entries(layer), blobs_dir, rules)
    finally:
        spool.unlink(missing_ok=True)


class ChunkReader:
    """A readable file over an iterator of byte chunks (for streaming tar reads)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


@dataclass(frozen=True)
class LayoutImage:
    """The parsed documents of a layout's one image."""

    layout_dir: Path
    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]

    def blob(self, digest: str) -> Path:
        return self.layout_dir / "blobs" / "sha256" / digest.removeprefix("sha256:")

    @property
    def config_digest(self) -> str:
        return str(self.manifest["config"]["digest"])

    @property
    def layer_digests(self) -> list[str]:
        return [str(layer["digest"]) for layer in self.manifest["layers"]]


def blob_upload_completion(location: str, digest: str, path: Path) -> tuple[str, dict[str, str]]:
    """The URL and headers of the PUT that finishes a registry blob upload in one piece (OCI
    distribution spec: the upload `location` the POST answered, plus `digest=`; `location`
    may already carry a query), for the blob stored at `path`."""
    separator = "&" if "?" in location else "?"
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(path.stat().st_size),
    }
    return f"{location}{separator}digest={urllib.parse.quote(digest)}", headers


def read_layout(layout_dir: Path) -> LayoutImage:
    """The layout's image. Its config may come from the shared cache, where anyone who may push
    chose its bytes: parsed without recursion past the parser's depth (`load_json`)."""
    index = load_json((layout_dir / "index.json").read_bytes())
    digest = str(index["manifests"][0]["digest"])
    blobs = layout_dir / "blobs" / "sha256"
    manifest = load_json((blobs / digest.removeprefix("sha256:")).read_bytes())
    config_digest = str(manifest["config"]["digest"])
    config = load_json((blobs / config_digest.removeprefix("sha256:")).read_bytes())
    return LayoutImage(layout_dir, digest, manifest, config)


def layout_is_complete(layout_dir: Path, digest: str) -> bool:
    """True when the layout holds the image `digest` with every blob at its recorded size."""
    try:
        image = read_layout(layout_dir)
    except (OSError, ValueError, KeyError, IndexError):
        return False
    if image.digest != digest:
        return False
    described = [image.manifest["config"], *image.manifest["layers"]]
    for descriptor in described:
        path = image.blob(str(descriptor["digest"]))
        if not path.is_file() or path.stat().st_size != descriptor["size"]:
            return False
    return True


def write_image_archive(
    layout_dir: Path, dest: Path, fmt: ArchiveFormat, repo_tag: str | None = None
) -> Path:
    """A tar of the image in `layout_dir`, written to `dest` (temp + rename).

    ``oci``: the OCI layout as a tar. ``docker-save``: the same plus the ``manifest.json`` that
    `docker load` reads (the shape Docker 25+ writes itself), so both kinds of reader accept it.
    """
    image = read_layout(layout_dir)
    temp = dest.with_name(f".{dest.name}.partial")
    try:
        with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
            members: list[tuple[str, Path | bytes]] = [
                ("oci-layout", layout_dir / "oci-layout"),
                ("index.json", layout_dir / "index.json"),
            ]
            for digest in [image.digest, image.config_digest, *image.layer_digests]:
                members.append(
                    (f"blobs/sha256/{digest.removeprefix('sha256:')}", image.blob(digest))
                )
            if fmt == "docker-save":
                docker_manifest = [
                    {
                        "Config": f"blobs/sha256/{image.config_digest.removeprefix('sha256:')}",
                        "RepoTags": [repo_tag] if repo_tag else [],
                        "Layers": [
                            f"blobs/sha256/{d.removeprefix('sha256:')}" for d in image.layer_digests
                        ],
                    }
                ]
                members.append(("manifest.json", canonical_json(docker_manifest)))
            for name, source in sorted(dict(members).items()):
                _add_archive_member(tar, name, source)
        temp.replace(dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return dest


def _add_archive_member(tar: tarfile.TarFile, name: str, source: Path | bytes) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uname, info.gname = 0o644, 0, "", ""
    if isinstance(source, bytes):
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source))
    else:
        info.size = source.stat().st_size
        with source.open("rb") as handle:
            tar.addfile(info, handle)


@dataclass(frozen=True)
class EntrySummary:
    """What `--verify` compares for one path of a layer."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    content: str  # sha256 of a file's contents, a link's target, or ""

    def brief(self) -> str:
        return (
            f"{self.kind} {self.mode:04o} {self.uid}:{self.gid} {self.size}B "
            f"mtime={self.mtime} {self.content[:16]}"
        )


_NOT_OURS = (
    "the layer was not written by bot-bottle; if it came from the shared cache, delete its "
    "tag there"
)


class _BoundedHeaders(tarfile.TarInfo):
    """A member whose PAX or GNU long-name header is refused past `MAX_TAR_HEADER_BYTES`.

    tarfile reads such a header whole into memory before it looks at it, and a header of zeros
    compresses to almost nothing: `--verify` lists the layers of the artifact the shared cache
    holds, which whoever may push chose, so one small layer could take all the host's memory.
    (`_proc_member` is where tarfile says a subclass hooks in.)"""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _LONG_HEADERS and self.size > MAX_TAR_HEADER_BYTES:
            raise BottleError(
                f"a layer holds a tar header of {self.size} bytes, more than "
                f"{MAX_TAR_HEADER_BYTES}: not read",
                fix=_NOT_OURS,
            )
        member: tarfile.TarInfo = cast(Any, super())._proc_member(archive)  # not in the stubs
        return member


def layer_listing(blob: Path) -> dict[str, EntrySummary]:
    """Every path in a gzip layer blob with its summary (headers bounded: `_BoundedHeaders`).

    tarfile reads the member a PAX or GNU header applies to by recursing, once per header: a
    few kilobytes of such headers in a row raise `RecursionError`, refused here as a layer
    bot-bottle did not write. Headers of empty files compress to a few bytes each, so the
    paths are bounded too (`MAX_LAYER_ENTRIES`): a pushed layer of 1.2 MB took 159 MB to list."""
    listing: dict[str, EntrySummary] = {}
    try:
        with (
            gzip.open(blob, "rb") as raw,
            tarfile.open(fileobj=raw, mode="r|", tarinfo=_BoundedHeaders) as layer,
        ):
            for member in layer:
                # Stream mode keeps every member read (`members`, not in the stubs): let go.
                cast(Any, layer).members.clear()
                if len(listing) >= MAX_LAYER_ENTRIES and member.name not in listing:
                    raise BottleError(
                        f"a layer lists more than {MAX_LAYER_ENTRIES} paths: not read on",
                        fix=_NOT_OURS,
                    )
                content = ""
                if member.isreg():
                    handle = layer.extractfile(member)
                    assert handle is not None
                    content = _stream_sha256(handle)
                elif member.issym() or member.islnk():
                    content = hashlib.sha256(member.linkname.encode()).hexdigest()
                listing[member.name] = EntrySummary(
                    _kind(member),
                    member.mode,
                    member.uid,
                    member.gid,
                    member.size,
                    int(member.mtime),
                    content,
                )
    except RecursionError as exc:  # tarfile reads the first member in `open`
        raise BottleError(
            "a layer holds more PAX or GNU tar headers in a row than tarfile can read",
            fix=_NOT_OURS,
        ) from exc
    return listing


def _stream_sha256(handle: Any) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def _kind(member: tarfile.TarInfo) -> str:
    kinds = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}
    return kinds.get(member.type, "file" if member.isreg() else "special")


@dataclass(frozen=True)
class Difference:
    """One path (or config field) that differs between two builds."""

    where: str  # "config" or "layer N"
    path: str
    first: str  # summary in the first build, or "(absent)"
    second: str


def diff_layouts(first_dir: Path, second_dir: Path) -> list[Difference]:
    """Differences between two layouts' configs and layers, path by path."""
    first, second = read_layout(first_dir), read_layout(second_dir)
    differences = list(_diff_config(first.config, second.config))
    first_layers, second_layers = first.layer_digests, second.layer_digests
    for number in range(max(len(first_layers), len(second_layers))):
        where = f"layer {number + 1}"
        if number >= len(first_layers) or number >= len(second_layers):
            differences.append(
                Difference(where, "(whole layer)", str(len(first_layers)), str(len(second_layers)))
            )
            continue
        if first_layers[number] == second_layers[number]:
            continue
        a = layer_listing(first.blob(first_layers[number]))
        b = layer_listing(second.blob(second_layers[number]))
        for path in sorted(set(a) | set(b)):
            left, right = a.get(path), b.get(path)
            if left != right:
                differences.append(
                    Difference(
                        where,
                        "/" + path,
                        left.brief() if left else "(absent)",
                        right.brief() if right else "(absent)",
                    )
                )
    return differences


def _diff_config(first: dict[str, Any], second: dict[str, Any]) -> Iterator[Difference]:
    first_copy = {k: v for k, v in first.items() if k != "rootfs"}
    second_copy = {k: v for k, v in second.items() if k != "rootfs"}
    for key in sorted(set(first_copy) | set(second_copy)):
        if first_copy.get(key) != second_copy.get(key):
            yield Difference(
                "config", key, json.dumps(first_copy.get(key)), json.dumps(second_copy.get(key))
            )
