"""Normalizing file system layers so that the same inputs give the same bytes.

Docker's own layer tars differ between two builds of the same Dockerfile (mtimes of files the
build wrote, log files, caches, password-age days, entry order). `write_normalized_layer` rewrites
one layer with the rules in `NormalizeRules`:

* entries sorted by path; hard links re-pointed at the first path of their group in that order;
* mtimes clamped to the clamp time (``SOURCE_DATE_EPOCH``); numeric uid/gid only, no names;
  no atime/ctime or other PAX records except extended attributes (file capabilities);
* volatile paths dropped (`VOLATILE_PATTERNS`): logs, package-manager caches and lists, /tmp;
  directories matching a pattern are kept (empty), so the tree stays valid;
* Python byte code kept only when it is hash-based (PEP 552): a timestamp-based ``.pyc`` records
  its source's build-time mtime, which the clamp changes, so Python would ignore it anyway;
* the "last password change" day in /etc/shadow set to the clamp day;
* gzip with fixed parameters: no file name, mtime 0, a fixed level, 1 MiB deflate blocks.

The rules are data: `describe_rules()` prints them for `bottle-engine build --explain`.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import io
import os
import re
import stat
import struct
import tarfile
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

# Paths (relative to /, fnmatch syntax where `*` also crosses `/`) whose files are dropped.
VOLATILE_PATTERNS: tuple[str, ...] = (
    "dev/*",  # Docker mounts its own /dev, /proc, /sys
    "proc/*",
    "sys/*",
    "run/*",
    "tmp/*",
    "var/tmp/*",
    "var/log/*",  # apt/dpkg/alternatives logs, lastlog, faillog, wtmp
    "var/cache/apt/*",  # pkgcache.bin, archives
    "var/cache/debconf/*-old",
    "var/cache/ldconfig/*",  # aux-cache holds inode numbers and mtimes
    "var/cache/man/*",
    "var/lib/apt/lists/*",  # index files of whatever day the build ran
    "var/lib/dpkg/*-old",
    "etc/*-",  # passwd-/shadow-/group- backups written by useradd with the build's state
    "root/.npm/*",  # npm cache and _logs
    "home/*/.npm/*",
    "root/.cache/*",
    "home/*/.cache/*",
    "root/.wget-hsts",
)
SHADOW_FILES = ("etc/shadow",)
GZIP_LEVEL = 1  # fixed; speed matters more than a few percent of size for a local cache
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class NormalizeRules:
    source_date_epoch: int
    drop_patterns: tuple[str, ...] = VOLATILE_PATTERNS
    gzip_level: int = GZIP_LEVEL
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        joined = "|".join(fnmatch.translate(pattern) for pattern in self.drop_patterns)
        object.__setattr__(self, "_compiled", re.compile(joined or "(?!)"))

    def drops(self, path: str, is_dir: bool) -> bool:
        return not is_dir and self._compiled.match(path) is not None

    @property
    def shadow_day(self) -> int:
        # Day 0 means "must change the password now": PAM then refuses chfn, and so adduser in
        # package scripts (docker-registry's, for one). Day 1 is as reproducible and harmless.
        return max(1, self.source_date_epoch // 86400)


def describe_rules(rules: NormalizeRules) -> list[str]:
    return [
        f"mtimes clamped to {rules.source_date_epoch} (SOURCE_DATE_EPOCH)",
        "entries sorted by path; numeric uid/gid; PAX records other than xattrs dropped",
        f"/etc/shadow last-change day set to {rules.shadow_day}",
        f"gzip level {rules.gzip_level} in 1 MiB sync-flushed blocks, no name, mtime 0",
        "files dropped: " + " ".join(rules.drop_patterns),
        "*.pyc dropped unless hash-based (PEP 552: no source mtime inside)",
    ]


@dataclass
class SourceEntry:
    """One entry of a layer or tree before normalization."""

    info: tarfile.TarInfo  # name already relative, without "./" or "/"
    opener: Callable[[], IO[bytes]] | None  # contents of a regular file
    link_group: str | None = None  # entries sharing one inode share a group
    content_size: int = 0  # size of what `opener` returns (a hard link's is its target's)


@dataclass(frozen=True)
class LayerBlob:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the gzip blob
    size: int  # of the blob


def clean_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/").rstrip("/")


def layer_entries(layer: tarfile.TarFile) -> Iterator[SourceEntry]:
    """The entries of a layer tar, hard links grouped with their targets."""
    members = {clean_name(member.name): member for member in layer.getmembers()}
    for name, member in members.items():
        if not name:
            continue
        member.name = name
        if member.islnk():
            target = clean_name(member.linkname)
            original = members.get(target)
            if original is None or not original.isreg():
                yield SourceEntry(member, None)  # target in a lower layer: keep as is
                continue
            opener = _member_opener(layer, original)
            yield SourceEntry(member, opener, link_group=target, content_size=original.size)
        elif member.isreg():
            opener = _member_opener(layer, member)
            yield SourceEntry(member, opener, link_group=name, content_size=member.size)
        else:
            yield SourceEntry(member, None)


def _member_opener(layer: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        handle = layer.extractfile(member)
        assert handle is not None
        return handle

    return opener


def tree_entries(root: Path) -> Iterator[SourceEntry]:
    """The entries of a directory tree (a root file system), hard links grouped by inode."""
    stack = [""]
    while stack:
        relative = stack.pop()
        directory = root / relative if relative else root
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda item: item.name)
        for child in children:
            name = f"{relative}/{child.name}" if relative else child.name
            info = child.stat(follow_symlinks=False)
            entry = _stat_entry(Path(child.path), name, info)
            if entry is not None:
                yield entry
            if stat.S_ISDIR(info.st_mode):
                stack.append(name)


def _stat_entry(path: Path, name: str, info: os.stat_result) -> SourceEntry | None:
    tar_info = tarfile.TarInfo(name)
    tar_info.mode = stat.S_IMODE(info.st_mode)
    tar_info.uid, tar_info.gid = info.st_uid, info.st_gid
    tar_info.mtime = int(info.st_mtime)
    mode = info.st_mode
    group = None
    opener: Callable[[], IO[bytes]] | None = None
    if stat.S_ISREG(mode):
        tar_info.type, tar_info.size = tarfile.REGTYPE, info.st_size
        opener = functools.partial(_open_binary, path)
        group = f"inode:{info.st_dev}:{info.st_ino}" if info.st_nlink > 1 else name
    elif stat.S_ISDIR(mode):
        tar_info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        tar_info.type, tar_info.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        tar_info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        tar_info.devmajor, tar_info.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
    elif stat.S_ISFIFO(mode):
        tar_info.type = tarfile.FIFOTYPE
    else:
        return None  # sockets cannot live in a tar
    return SourceEntry(tar_info, opener, link_group=group, content_size=tar_info.size)


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def write_normalized_tar(
    entries: Iterator[SourceEntry], out: IO[bytes], rules: NormalizeRules
) -> int:
    """Write `entries` as a normalized tar stream to `out`; returns the number of entries."""
    kept = {
        entry.info.name: entry
        for entry in entries
        if not rules.drops(entry.info.name, entry.info.isdir()) and _keeps_byte_code(entry)
    }
    names = sorted(kept)
    group_holder: dict[str, str] = {}
    for name in names:
        group = kept[name].link_group
        if group is not None and kept[name].opener is not None:
            group_holder.setdefault(group, name)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            entry = kept[name]
            info = _normalized_info(entry.info, rules)
            group = entry.link_group
            if entry.opener is None or group is None:
                tar.addfile(info)
                continue
            holder = group_holder[group]
            if holder != name:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, holder, 0
                tar.addfile(info)
                continue
            info.type = tarfile.REGTYPE
            with entry.opener() as content:
                if name in SHADOW_FILES:
                    data = _normalize_shadow(content.read(), rules.shadow_day)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    info.size = entry.content_size
                    tar.addfile(info, content)
    return len(names)


def _normalized_info(source: tarfile.TarInfo, rules: NormalizeRules) -> tarfile.TarInfo:
    info = tarfile.TarInfo(source.name)
    info.type = source.type
    info.mode = source.mode & 0o7777
    info.uid, info.gid = source.uid, source.gid
    info.uname = info.gname = ""
    info.mtime = min(int(source.mtime), rules.source_date_epoch)
    if source.issym() or source.islnk():
        info.linkname = source.linkname
    if source.ischr() or source.isblk():
        info.devmajor, info.devminor = source.devmajor, source.devminor
    info.pax_headers = {
        key: value
        for key, value in sorted(source.pax_headers.items())
        if key.startswith("SCHILY.xattr.")
    }
    return info


def _keeps_byte_code(entry: SourceEntry) -> bool:
    """False for a timestamp-based ``.pyc``; True for hash-based ones and for other files.

    The header's second word holds the PEP 552 flags: bit 0 set means "validated by source hash",
    so no build-time mtime is recorded. Images that want fast Python start-up compile with
    ``compileall --invalidation-mode unchecked-hash`` (and PYTHONHASHSEED=0: set constants).
    """
    if not entry.info.name.endswith(".pyc") or not entry.info.isfile():
        return True
    if entry.opener is None:
        return False
    with entry.opener() as content:
        header = content.read(8)
    return len(header) == 8 and bool(int.from_bytes(header[4:8], "little") & 1)


def _normalize_shadow(data: bytes, day: int) -> bytes:
    """Set field 3 (days since 1970 of the last password change) where it is set."""
    lines = []
    for line in data.split(b"\n"):
        fields = line.split(b":")
        if len(fields) >= 3 and fields[2].isdigit():
            fields[2] = str(day).encode()
        lines.append(b":".join(fields))
    return b"\n".join(lines)


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class HashingWriter:
    """A write-only stream that hashes and counts what passes through to `sink` (if any)."""

    def __init__(self, sink: Writable | None) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


def write_layer_blob(
    entries: Iterator[SourceEntry], blobs_dir: Path, rules: NormalizeRules
) -> LayerBlob:
    """Normalize `entries` into a gzip layer blob in `blobs_dir` (named by its digest)."""
    blobs_dir.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=blobs_dir, prefix=".layer-")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as raw:
            blob = HashingWriter(raw)
            # Compressing is most of the work: worker threads deflate blocks while this one
            # writes the tar.
            with BlockGzipWriter(blob, rules.gzip_level) as compressed:
                uncompressed = HashingWriter(compressed)
                write_normalized_tar(entries, uncompressed, rules)  # type: ignore[arg-type]
        final = blobs_dir / blob.sha256.hexdigest()
        temp.replace(final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return LayerBlob(diff_id=uncompressed.digest, digest=blob.digest, size=blob.size)


class BlockGzipWriter:
    """gzip made of independent 1 MiB deflate blocks (as pigz does), compressed by threads.

    Each block is deflated with the previous block's last 32 KiB as its dictionary and ends on a
    sync flush, so the blocks join into one ordinary deflate stream that any gunzip reads. The
    bytes depend only on the data, the level and the block size, never on thread timing; the
    header has no file name and mtime 0.
    """

    def __init__(
        self, sink: Writable, level: int, *, workers: int = 2, block: int = _CHUNK
    ) -> None:
        self._sink = sink
        self._level = level
        self._block = block
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        extra_flags = 4 if level == 1 else 2 if level == 9 else 0
        sink.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([extra_flags, 255]))

    def __enter__(self) -> BlockGzipWriter:
        return self

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= self._block:
            self._submit(bytes(self._buffer[: self._block]))
            del self._buffer[: self._block]
        return len(data)

    def _submit(self, chunk: bytes) -> None:
        self._crc = zlib.crc32(chunk, self._crc)
        self._size += len(chunk)
        self._pending.append(
            self._pool.submit(_deflate_block, chunk, self._dictionary, self._level)
        )
        self._dictionary = chunk[-32768:]
        while len(self._pending) > 2 * self._workers:
            self._sink.write(self._pending.popleft().result())

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                if self._buffer:
                    self._submit(bytes(self._buffer))
                    self._buffer.clear()
                while self._pending:
                    self._sink.write(self._pending.popleft().result())
                self._sink.write(zlib.compressobj(self._level, zlib.DEFLATED, -15).flush())
                self._sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(cancel_futures=True)


def _deflate_block(chunk: bytes, dictionary: bytes, level: int) -> bytes:
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)


def write_rootfs_tar(root: Path, dest: Path, rules: NormalizeRules) -> None:
    """A normalized, uncompressed tar of the tree at `root` (for `docker import`)."""
    with dest.open("wb") as out:
        write_normalized_tar(tree_entries(root), out, rules)
