"""A real value kept inside a compressed file or an archive of a project (no tests in here):
an archived `.env` is a common accident, and the agent unpacks it in one command (`tar xzf`,
`unzip`, `xz -d`). Shared by the launch's workspace copy and the agent image's build context."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path


def tar_of(files: Mapping[str, bytes], mode: str = "w") -> bytes:
    """A tar (compressed as `mode` says: "w:gz", "w:xz") of the regular files `files`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def tar_gz(name: str, content: bytes) -> bytes:
    """A .tar.gz holding `name`."""
    return tar_of({name: content}, "w:gz")


def deflated_zip(name: str, content: bytes) -> bytes:
    """A .zip holding `name` deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def gzip_in_zip(name: str, content: bytes) -> bytes:
    """A .zip holding `name`.gz stored: an archive inside an archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.gz", gzip.compress(content))
    return buffer.getvalue()


def xz(name: str, content: bytes) -> bytes:
    return lzma.compress(content)


def bzip2(name: str, content: bytes) -> bytes:
    return bz2.compress(content)


def pdf(name: str, content: bytes) -> bytes:
    """A PDF with `name` attached (an embedded file stream, FlateDecode as every PDF writer
    compresses it): ``pdfdetach -saveall`` writes it out."""
    stream = zlib.compress(content)
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(%s) 3 0 R] >> >> >>"
        % name.encode(),
        b"<< /Type /Pages /Kids [] /Count 0 >>",
        b"<< /Type /Filespec /F (%s) /EF << /F 4 0 R >> >>" % name.encode(),
        b"<< /Type /EmbeddedFile /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
        % (len(stream), stream),
    ]
    document, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(document))
        document += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(document)
    document += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    document += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    document += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1,
        xref,
    )
    return bytes(document)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk (length, type, data, CRC-32 over type and data)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(keyword: str, text: bytes) -> bytes:
    """A 1x1 grey PNG whose compressed text chunk (zTXt) `keyword` holds `text`, deflated as the
    PNG standard requires: ``exiftool``, ``identify -verbose`` and PIL's ``Image.text`` show it."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"zTXt", keyword.encode("latin-1") + b"\0\0" + zlib.compress(text))
        + png_chunk(b"IDAT", zlib.compress(b"\0\x80"))  # one row: filter 0, one grey pixel
        + png_chunk(b"IEND", b"")
    )


def _git(repo: Path, *args: str, stdin: bytes = b"") -> bytes:
    identity = ("-c", "user.name=Person", "-c", "user.email=person@example.invalid")
    command = ["git", "-C", str(repo), *identity, *args]
    return subprocess.run(command, input=stdin, capture_output=True, check=True).stdout


def _history(repo: Path, name: str, content: bytes) -> None:
    """A repository whose `name` held `content` with its middle line (where `dot_env` puts
    the value) left out and a longer tail, then `content`: git stores the larger version
    whole and the later one as a delta on it, whose insert carries the middle line."""
    lines = content.splitlines(keepends=True)
    earlier = b"".join(lines[: len(lines) // 2] + lines[len(lines) // 2 + 1 :]) * 2
    _git(repo, "init", "-q")
    for version in (earlier, content):
        (repo / name).write_bytes(version)
        _git(repo, "add", name)
        _git(repo, "commit", "-q", "-m", "settings")


def git_bundle(name: str, content: bytes) -> bytes:
    """A `git bundle` (``# v2 git bundle``, its refs, then a pack) of a history in which
    `name` held `content`: ``git clone x.bundle`` reads it."""
    with tempfile.TemporaryDirectory() as scratch:
        _history(Path(scratch), name, content)
        _git(Path(scratch), "bundle", "create", f"{scratch}/x.bundle", "--all")
        return (Path(scratch) / "x.bundle").read_bytes()


def git_pack(name: str, content: bytes) -> bytes:
    """A `.pack` of a history in which `name` held `content`, as ``git pack-objects`` writes
    it: ``git index-pack`` reads it anywhere (a backup of a repository's objects)."""
    with tempfile.TemporaryDirectory() as scratch:
        _history(Path(scratch), name, content)
        objects = _git(Path(scratch), "rev-list", "--objects", "--all")
        return _git(Path(scratch), "pack-objects", "--stdout", "-q", stdin=objects)


def zlib_file(name: str, content: bytes) -> bytes:
    """A raw zlib stream (``zlib-flate -compress``, ``pigz -z``: a .zz)."""
    return zlib.compress(content)


def dot_env(line: str) -> bytes:
    """A `.env` holding `line`, with enough around it that each format compresses it (xz
    keeps a short incompressible input as it is)."""
    settings = "".join(f"SETTING_{n}=default\n" for n in range(40))
    return f"{settings}{line}\n{settings}".encode()


# (file name in the project, how it is made from a file's name and content, the streams a
# search finds the file's content in)
ARCHIVED: dict[str, tuple[str, Callable[[str, bytes], bytes], str]] = {
    "tar.gz": ("backup.tar.gz", tar_gz, "gzip"),
    "zip": ("config.zip", deflated_zip, "zip"),
    "gzip in zip": ("bundle.zip", gzip_in_zip, "zip > gzip"),
    "xz": (".env.xz", xz, "xz"),
    "bzip2": (".env.bz2", bzip2, "bzip2"),
    "zlib": (".env.zz", zlib_file, "zlib"),
    "pdf": ("settings.pdf", pdf, "pdf"),
    "git bundle": ("repo.bundle", git_bundle, "git pack"),
    "git pack": ("backup.pack", git_pack, "git pack"),
}
