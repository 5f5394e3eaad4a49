"""The input key: a sha256 over everything a build reads, so that a stored artifact can stand in
for the build.

Covered: the Dockerfile, the build context as `.dockerignore` filters it (paths, kinds, modes,
contents; not mtimes or owners), the effective build args, the base image reference and its
content digest, the extra CA bundle, labels, the clamp time (``SOURCE_DATE_EPOCH``) and the
version of the normalization rules. `BuildInputs.explain()` prints each part, so "why did this
rebuild" has an answer.

The context sent to Docker is written from the same entry list (`write_context_tar`), with every
mtime set to the clamp time and owners zeroed: what the key covers is exactly what Docker sees.
The agent may still be changing its workspace while the person builds, so the context is read
without following a link below its resolved path (a directory swapped for a link to the home
directory leads nowhere), without blocking (a FIFO), and each file is hashed again as it is
written to the tar: a file changed since it was hashed stops the build instead of being built
under the old key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from bottle_engine.artifacts.dockerfile import referenced_images
from bottle_engine.artifacts.spec import (
    BASE_IMAGE_BUILD_ARG,
    EXTRA_CA_BUILD_ARG,
    EXTRA_CA_NAME,
    BuildSpec,
)
from bottle_engine.display import safe_text
from bottle_engine.dockerapi.images import dockerignore_included
from bottle_engine.errors import BottleError
from bottle_engine.file_ids import FileId, same_files, withheld_place
from bottle_engine.git import GitError, run_git
from bottle_engine.progress import Progress
from bottle_engine.regular_files import (
    READ_NO_FOLLOW,
    parent_beneath,
    read_open_regular,
    read_regular,
)
from bottle_engine.settings import EngineSettings

# Bump when the normalization rules or the key's shape change: old store entries stop matching.
INPUT_KEY_VERSION = "bot-bottle-artifact/7"
# Files the engine reads whole into memory: far above any real Dockerfile or CA bundle, far
# below what a link to /dev/zero or a sparse file would take.
MAX_DOCKERFILE_BYTES = 4 * 1024 * 1024
MAX_CA_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_DOCKERIGNORE_BYTES = 1024 * 1024
# Where a Dockerfile that lives outside its context is placed inside the context tar.
OUTSIDE_DOCKERFILE_NAME = "Dockerfile.bot-bottle"
_PATHS_PER_GIT_CALL = 500

EntryKind = Literal["dir", "file", "symlink"]
# Given each context entry's path and bytes as it is read (`ContextCheck.entry`).
EntryLook = Callable[[str, bytes], None]
# The content digest of an image a Dockerfile reads, by its reference (Docker answers it).
ImageDigest = Callable[[str], str]


@dataclass(frozen=True)
class ContextEntry:
    """One path of the build context as Docker will see it."""

    path: str  # relative, POSIX
    kind: EntryKind
    mode: int  # permission bits only
    size: int
    sha256: str  # of the contents (files), of the link target (symlinks), "" for directories
    source: Path | None  # the file on disk; None when `data` holds the contents
    data: bytes | None = None
    link_target: str = ""

    def key_line(self) -> str:
        return f"{self.kind} {self.mode:04o} {self.size} {self.sha256} {self.path}"


@dataclass(frozen=True)
class BuildInputs:
    """Everything one build reads, resolved and hashed. Built by `prepare_inputs`."""

    spec: BuildSpec
    dockerfile_path: str  # inside the context tar
    dockerfile_sha256: str
    entries: tuple[ContextEntry, ...]
    build_args: tuple[tuple[str, str], ...]
    base_image_digest: str
    ca_bundle_sha256: str | None
    # The other images the Dockerfile reads (FROM, COPY --from) and their content digests.
    images: tuple[tuple[str, str], ...]
    source_date_epoch: int

    @property
    def context_sha256(self) -> str:
        # JSON, not the key lines: a file name may hold a newline and so forge a line of its
        # own, and one that is not UTF-8 (a surrogate here) has no other encoding.
        fields = [[e.kind, e.mode, e.size, e.sha256, e.path] for e in self.entries]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()

    def key_parts(self) -> dict[str, object]:
        """The printable parts the input key is the hash of."""
        return {
            "version": INPUT_KEY_VERSION,
            "name": self.spec.name,
            "dockerfile": f"{self.dockerfile_path} sha256:{self.dockerfile_sha256}",
            "context": f"{len(self.entries)} entries sha256:{self.context_sha256}",
            "build_args": dict(self.build_args),
            "base_image": self.spec.base_image,
            "base_image_digest": self.base_image_digest,
            "images": dict(self.images),
            "ca_bundle": f"sha256:{self.ca_bundle_sha256}" if self.ca_bundle_sha256 else None,
            "labels": dict(sorted(self.spec.labels.items())),
            "source_date_epoch": self.source_date_epoch,
        }

    @property
    def input_key(self) -> str:
        canonical = json.dumps(self.key_parts(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def explain(self) -> list[str]:
        """One line per part of the key, then one per context entry."""
        lines = [f"input key {self.input_key}"]
        lines += [f"  {name}: {json.dumps(value)}" for name, value in self.key_parts().items()]
        # The context's file names are the project's, which an agent may have committed.
        lines += [f"    {safe_text(entry.key_line())}" for entry in self.entries]
        return lines


def compute_input_key(
    spec: BuildSpec, base_image_digest: str, image_digest: ImageDigest | None = None
) -> str:
    """The input key of `spec` (pure given the files' contents, the images and the clamp time)."""
    return prepare_inputs(spec, base_image_digest, image_digest).input_key


def prepare_inputs(
    spec: BuildSpec,
    base_image_digest: str,
    image_digest: ImageDigest | None = None,
    progress: Progress | None = None,
) -> BuildInputs:
    """Read and hash the Dockerfile, the filtered context and the CA bundle of `spec`.

    `image_digest` gives the content digest of an image other than the base that the Dockerfile
    reads (a stage FROM another image, a COPY --from one): a key that left them out would
    answer a build from them with what older images built. `progress` is told the check's
    warning.
    """
    context = spec.context.resolve()
    dockerfile = spec.dockerfile.resolve()
    if not context.is_dir():
        raise BottleError(
            f"build context {spec.context} of the {spec.name} image is not a directory",
            fix="point `context` in bottle.toml at the directory the Dockerfile copies from",
        )
    if not dockerfile.is_file():
        raise BottleError(
            f"Dockerfile {spec.dockerfile} of the {spec.name} image does not exist",
            fix="point `dockerfile` in bottle.toml at an existing file",
        )
    withheld = same_files(spec.withheld)
    if (place := withheld_place(context, withheld)) is not None:
        raise BottleError(
            f"the build context {safe_text(str(spec.context))} of the {spec.name} image lies "
            f"inside {safe_text(str(place))} (the engine's state, a place that holds "
            "credentials or a secret's file), which no image is built from",
            fix="point `context` in bottle.toml at the project's directory",
        )
    dockerfile_bytes = _read_named_file(dockerfile, MAX_DOCKERFILE_BYTES, "Dockerfile")
    inside = dockerfile.is_relative_to(context)
    dockerfile_path = (
        dockerfile.relative_to(context).as_posix() if inside else OUTSIDE_DOCKERFILE_NAME
    )
    look = spec.check.entry if spec.check is not None else None
    entries = {
        entry.path: entry
        for entry in context_entries(context, dockerfile_path, withheld=withheld, look=look)
    }
    if not inside:
        entries[dockerfile_path] = _data_entry(dockerfile_path, dockerfile_bytes)
        if look is not None:
            look(dockerfile_path, dockerfile_bytes)
    ca_bytes = _read_ca_bundle(spec.ca_bundle) if spec.ca_bundle is not None else None
    # The engine owns this name: whatever the context holds there is replaced.
    entries[EXTRA_CA_NAME] = _data_entry(EXTRA_CA_NAME, ca_bytes or b"")
    build_args = dict(spec.build_args)
    build_args[BASE_IMAGE_BUILD_ARG] = spec.base_image
    build_args[EXTRA_CA_BUILD_ARG] = EXTRA_CA_NAME if ca_bytes is not None else ""
    others = [
        ref for ref in referenced_images(dockerfile_bytes, build_args) if ref != spec.base_image
    ]
    if others and image_digest is None:
        raise ValueError(f"the Dockerfile reads {', '.join(others)}: pass `image_digest`")
    images = tuple((ref, image_digest(ref)) for ref in others) if image_digest else ()
    ordered = tuple(entries[path] for path in sorted(entries))
    if spec.check is not None:
        spec.check.build_args(spec.build_args)
        warning = spec.check.done(
            [entry.path for entry in ordered if entry.kind == "file"],
            lambda paths: _entries_tar([entries[path] for path in paths]),
        )
        if warning is not None and progress is not None:
            progress.warn(warning)
    return BuildInputs(
        spec=spec,
        dockerfile_path=dockerfile_path,
        dockerfile_sha256=hashlib.sha256(dockerfile_bytes).hexdigest(),
        entries=ordered,
        build_args=tuple(sorted(build_args.items())),
        base_image_digest=base_image_digest,
        images=images,
        ca_bundle_sha256=hashlib.sha256(ca_bytes).hexdigest() if ca_bytes is not None else None,
        source_date_epoch=resolve_source_date_epoch(
            spec.source_date_epoch, context, [e.path for e in entries.values() if e.kind != "dir"]
        ),
    )


def context_entries(
    context: Path,
    dockerfile_path: str,
    *,
    withheld: frozenset[FileId] = frozenset(),
    look: EntryLook | None = None,
) -> list[ContextEntry]:
    """The context's files, directories and symlinks that `.dockerignore` keeps, sorted, but
    for those in `withheld` (and what lies in such a directory) under any name: a pattern's
    exception (`!`) cannot bring one back. `look` is given each entry as it is read."""
    patterns = _read_dockerignore(context / ".dockerignore")
    kept = dockerignore_included(context, patterns, always=(dockerfile_path, ".dockerignore"))
    # A kept path inside an ignored directory still needs its parents in the tar.
    for path in list(kept):
        parts = path.split("/")
        kept.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
    entries = []
    left_out: list[str] = []
    for relative in sorted(kept):
        if any(relative.startswith(f"{directory}/") for directory in left_out):
            continue
        if not (context / relative).exists() and not (context / relative).is_symlink():
            continue
        entry = _disk_entry(context, relative, withheld, look)
        if entry is None:
            left_out.append(relative)
        else:
            entries.append(entry)
    return entries


def _disk_entry(
    context: Path, relative: str, withheld: frozenset[FileId], look: EntryLook | None
) -> ContextEntry | None:
    """The entry at `relative`; None when it is `withheld`. The bytes `look` is given are the
    bytes hashed (a file read once)."""
    path = context / relative
    try:
        with _parent_of(path) as parent:
            info = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
            if (info.st_dev, info.st_ino) in withheld:
                return None
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(path.name, dir_fd=parent)
                if look is not None:
                    look(relative, os.fsencode(target))
                digest = hashlib.sha256(os.fsencode(target)).hexdigest()
                return ContextEntry(relative, "symlink", mode, 0, digest, path, link_target=target)
            if stat.S_ISDIR(info.st_mode):
                if look is not None:
                    look(relative, b"")
                return ContextEntry(relative, "dir", mode, 0, "", path)
            if not stat.S_ISREG(info.st_mode):
                raise _special_file(path)
            with _open_context_file(parent, path) as handle:
                opened = os.fstat(handle.fileno())
                if (opened.st_dev, opened.st_ino) in withheld:  # swapped in since the stat
                    return None
                if look is None:
                    digest, size = _sha256_of(handle, opened.st_size)
                else:
                    data = handle.read(opened.st_size)
                    look(relative, data)
                    digest, size = hashlib.sha256(data).hexdigest(), len(data)
    except OSError as exc:
        raise _changed(path, exc) from exc
    return ContextEntry(relative, "file", mode, size, digest, path)


def _parent_of(path: Path) -> AbstractContextManager[int]:
    """A descriptor of the directory holding `path` (absolute, symlinks resolved), reached from
    / one name at a time without following a link (`parent_beneath`)."""
    return parent_beneath(Path("/"), PurePosixPath(path).relative_to("/"))


@contextmanager
def _open_context_file(parent: int, path: Path) -> Iterator[IO[bytes]]:
    """The regular file `path` (its name in the directory `parent`), never a link or a FIFO."""
    with os.fdopen(os.open(path.name, READ_NO_FOLLOW, dir_fd=parent), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise _special_file(path)
        yield handle


def _sha256_of(handle: IO[bytes], size: int) -> tuple[str, int]:
    """sha256 and length of the first `size` bytes (fewer if the file is shorter): a file that
    keeps growing is read only as far as it was long when it was opened."""
    digest, done = hashlib.sha256(), 0
    while done < size and (chunk := handle.read(min(1024 * 1024, size - done))):
        digest.update(chunk)
        done += len(chunk)
    return digest.hexdigest(), done


def _special_file(path: Path) -> BottleError:
    return BottleError(
        f"{path}: the build context holds a special file (socket, device or FIFO)",
        fix="remove it or list it in .dockerignore",
    )


def _changed(path: Path, exc: OSError | None = None) -> BottleError:
    why = f" ({exc.strerror})" if exc is not None and exc.strerror else ""
    return BottleError(
        f"{path} changed while the build read it{why}: it is no longer the file that was "
        "hashed, or a directory on its way became a symbolic link",
        fix="build again once nothing writes to the workspace (stop the bottle using it first)",
    )


def _data_entry(path: str, data: bytes) -> ContextEntry:
    return ContextEntry(
        path, "file", 0o644, len(data), hashlib.sha256(data).hexdigest(), None, data
    )


def _read_dockerignore(path: Path) -> list[str]:
    """The patterns of the context's `.dockerignore` (none when there is none). Read like the
    context's files: a link would make a host file the filter, a FIFO would hang."""
    try:
        with _parent_of(path) as parent:
            data = read_regular(path.name, MAX_DOCKERIGNORE_BYTES, dir_fd=parent)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BottleError(
            f"cannot read {path}: {exc.strerror or exc}",
            fix="make it a regular file of at most "
            f"{MAX_DOCKERIGNORE_BYTES} bytes (not a symbolic link), or remove it",
        ) from exc
    # Names that are not UTF-8 are listed with surrogates; their patterns are decoded alike.
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _read_named_file(path: Path, limit: int, what: str, *, fix: str | None = None) -> bytes:
    """A file bottle.toml names (links followed: the trust check saw where they lead), read
    without blocking on a FIFO and only if it is a regular file of at most `limit` bytes."""
    try:
        return read_open_regular(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), limit)
    except OSError as exc:
        raise BottleError(
            f"cannot read the {what} {path}: {exc.strerror or exc}",
            fix=fix or f"point bottle.toml at a readable regular file of at most {limit} bytes",
        ) from exc


def _read_ca_bundle(path: Path) -> bytes:
    data = _read_named_file(
        path,
        MAX_CA_BUNDLE_BYTES,
        "extra CA bundle",
        fix="pass a readable PEM file (--ca-bundle, BOTTLE_CA_BUNDLE or `ca_bundle` in "
        "bottle.toml), e.g. /etc/ssl/certs/ca-certificates.crt",
    )
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise BottleError(
            f"the extra CA bundle {path} holds no PEM certificate",
            fix="pass a PEM file with one or more `-----BEGIN CERTIFICATE-----` blocks",
        )
    return data


def resolve_ca_bundle(
    option: str | Path | None, manifest_value: Path | None, settings: EngineSettings | None = None
) -> Path | None:
    """The extra CA bundle: `--ca-bundle`, else ``BOTTLE_CA_BUNDLE``, else the manifest's."""
    return (settings or EngineSettings.from_env()).ca_bundle_for(option, manifest_value)


def resolve_source_date_epoch(
    explicit: int | None,
    context: Path,
    paths: Sequence[str] = (".",),
    settings: EngineSettings | None = None,
) -> int:
    """The clamp time: `explicit`, else $SOURCE_DATE_EPOCH, else the newest commit of `paths`
    (the context's files, so a commit elsewhere in the repository changes nothing)."""
    if explicit is not None:
        return explicit
    from_settings = (settings or EngineSettings.from_env()).clamp_time()
    if from_settings is not None:
        return from_settings
    return newest_commit_time(context, paths)


def newest_commit_time(directory: Path, paths: Sequence[str] = (".",)) -> int:
    """Time of the newest commit touching any of `paths` (relative to `directory`), or 0
    outside git or for files git does not track."""
    newest = 0
    for start in range(0, len(paths), _PATHS_PER_GIT_CALL):
        pathspecs = [f":(literal){path}" for path in paths[start : start + _PATHS_PER_GIT_CALL]]
        try:
            done = run_git(
                ["log", "-1", "--format=%ct", "--", *pathspecs],
                doing="reading the context's newest commit time",
                cwd=directory,
                check=False,
            )
        except GitError:  # no git on this machine: no clamp time from history
            return 0
        if done.returncode != 0:
            return 0
        text = done.stdout.strip()
        if text.isdigit():
            newest = max(newest, int(text))
    return newest


def _entries_tar(entries: Sequence[ContextEntry]) -> bytes:
    """Some context entries as an in-memory tar, each file read again and checked to be the
    file that was hashed (`_add_entry`)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            _add_entry(tar, entry, 0)
    return buffer.getvalue()


def write_context_tar(inputs: BuildInputs, out: IO[bytes]) -> None:
    """Write the build context as a tar: sorted, mtimes = clamp time, owners root."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in inputs.entries:
            # The daemon would apply .dockerignore a second time and remove the files the engine
            # added (extra-ca.crt); the filtering is done, so it stays out of the tar (not the key).
            if entry.path != ".dockerignore":
                _add_entry(tar, entry, inputs.source_date_epoch)


def _add_entry(tar: tarfile.TarFile, entry: ContextEntry, mtime: int) -> None:
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link_target
        tar.addfile(info)
    elif entry.data is not None:
        info.size = len(entry.data)
        tar.addfile(info, io.BytesIO(entry.data))
    else:
        assert entry.source is not None
        info.size = entry.size
        _add_hashed_file(tar, info, entry, entry.source)


def _add_hashed_file(
    tar: tarfile.TarFile, info: tarfile.TarInfo, entry: ContextEntry, source: Path
) -> None:
    """The file's bytes into the tar, read the way they were hashed and hashed again: what
    Docker is sent is what the input key covers, or the build stops."""
    try:
        with (
            _parent_of(source) as parent,
            _open_context_file(parent, source) as handle,
        ):
            reader = _HashingReader(handle)
            tar.addfile(info, reader)  # OSError when the file is now shorter
    except OSError as exc:
        raise _changed(source, exc) from exc
    if reader.digest.hexdigest() != entry.sha256:
        raise _changed(source)


class _HashingReader(io.RawIOBase):
    """Passes reads through and hashes what they returned."""

    def __init__(self, handle: IO[bytes]) -> None:
        super().__init__()
        self._handle = handle
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self.digest.update(chunk)
        return chunk
