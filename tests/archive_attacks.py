"""A real value kept inside a compressed file or an archive of a project (no tests in here):
an archived `.env` is a common accident, and the agent unpacks it in one command (`tar xzf`,
`unzip`, `xz -d`). Shared by the launch's workspace copy and the agent image's build context."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from collections.abc import Callable, Mapping


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
}
