"""Compressed files and archives in what a launch copies, opened and searched for real values.

A value kept only inside a `backup.tar.gz` or a zipped config (an archived `.env` is a common
accident) is in no stored form in the copy's bytes, yet the agent unpacks it in one command.
So every regular file of the copy (the workspace, skills, the agent image's build context) is
read through the git gate's inflater (`bundle.inflate`: gzip, bzip2, xz, zip entries, git
pack objects (a bundle's, a `.pack` outside the object directories) and PDF FlateDecode streams
anywhere, zlib and lzma at the start, nested `inflate.MAX_NESTING` deep) and each content is
searched with the launch's `ValueSearch`.

Only files that hold a zip entry header, a magic number or a format at their start are
inflated. The files of git object directories are left to `copied_history`, which reads them
through git. What cannot be opened here is not refused, unlike at the gate (a person's
project may hold a .zst or a .7z): a format with no decompressor here, an encrypted zip entry,
nesting deeper than the gate reads, content past `MAX_FILE_INFLATED_BYTES` a level, or past
`MAX_COPY_INFLATED_BYTES` for the whole copy is named in one warning line instead.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bottle_engine.bundle.inflate import (
    Budget,
    Unscannable,
    inflated,
    may_hold_streams,
    may_hold_streams_in,
)
from bottle_engine.bundle.secret_forms import Needle, ValueSearch
from bottle_engine.copied_history import history_files
from bottle_engine.display import safe_text

MIB = 1024 * 1024
MAX_FILE_INFLATED_BYTES = 64 * MIB  # what one level of one file's streams inflate to
MAX_COPY_INFLATED_BYTES = 256 * MIB  # all that one launch inflates (a few seconds of search)
MAX_NAMED = 5  # unopened files the warning names; the rest are counted


@dataclass(frozen=True)
class ArchiveHit:
    """A file of the copy whose inflated content holds a real value."""

    name: str
    formats: tuple[str, ...]  # the streams it lies in, outermost first: ("zip", "gzip")
    needle: Needle
    entry: str | None = None  # the tar member or zip entry holding it, when one is found

    def describe(self) -> str:
        """The file and where in it, for a person (never the value)."""
        inside = " > ".join(self.formats)
        entry = f"entry {safe_text(self.entry)}, " if self.entry is not None else ""
        return f"{safe_text(self.name)} ({entry}in its {inside}-inflated content)"


@dataclass
class ArchiveSearch:
    """The inflated content of a copy's files, searched for the values of `search` within
    one `budget`; what it cannot open is kept in `unopened` as (file, why)."""

    search: ValueSearch
    budget: Budget = field(default_factory=lambda: Budget(MAX_COPY_INFLATED_BYTES))
    unopened: list[tuple[str, str]] = field(default_factory=list)

    def first(self, files: Iterable[tuple[str, bytes]]) -> ArchiveHit | None:
        """The first of the (name, content) `files` whose inflated content holds a value."""
        for name, data in files:
            hit = self.file(name, data)
            if hit is not None:
                return hit
        return None

    def file(self, name: str, data: bytes) -> ArchiveHit | None:
        if not may_hold_streams(data):
            return None
        if self.budget.left <= 0:
            self.unopened.append((name, "the bound of inflated content was spent before it"))
            return None
        opened = [data]  # what each level of the streams so far was inflated from
        try:
            for formats, content in inflated(data, MAX_FILE_INFLATED_BYTES, budget=self.budget):
                del opened[len(formats) :]
                needle = self.search.first(content)
                if needle is not None:
                    entry = _entry_holding(self.search, formats[-1], opened[-1], content)
                    return ArchiveHit(name, formats, needle, entry)
                opened.append(content)
        except Unscannable as exc:
            self.unopened.append((name, str(exc)))
        return None

    def warning(self, what: str) -> str | None:
        """One line naming the files of `what` not searched inside, and why (None: none)."""
        if not self.unopened:
            return None
        named = "; ".join(
            f"{safe_text(name)}: {safe_text(why)}" for name, why in self.unopened[:MAX_NAMED]
        )
        more = len(self.unopened) - MAX_NAMED
        return (
            f"{what} holds files that could not be opened to search them for real values (a "
            f"value inside one reaches the agent unfound): {named}"
            + (f"; and {more} more" if more > 0 else "")
        )


def _entry_holding(search: ValueSearch, stream: str, packed: bytes, content: bytes) -> str | None:
    """For the message only: the name of the zip entry of `packed`, or of the tar member of
    `content` (the inflated `stream`), that holds a value of `search`; None when none is
    found this way (the inflater walks local headers, `zipfile` the central directory)."""
    try:
        if stream == "zip":
            with zipfile.ZipFile(io.BytesIO(packed)) as archive:
                for info in archive.infolist():
                    with archive.open(info) as reader:
                        held = reader.read(MAX_FILE_INFLATED_BYTES)
                    if search.first(info.filename.encode(errors="surrogateescape") + b"\0" + held):
                        return info.filename
            return None
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as archive:
            for name, held in tar_files(archive):
                if search.first(name.encode(errors="surrogateescape") + b"\0" + held):
                    return name
    except (zipfile.BadZipFile, tarfile.TarError, *_BROKEN):
        return None
    return None


# What reading a damaged or encrypted zip entry raises besides `BadZipFile`.
_BROKEN = (RuntimeError, NotImplementedError, OSError, EOFError, zlib.error, ValueError)


def tar_files(archive: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
    """(name, content) of the regular files of the tar `archive` that lie in no git object
    directory (`copied_history` reads those through git)."""
    members = [member for member in archive.getmembers() if member.isfile()]
    left_to_history = set(history_files(member.name for member in members))
    for member in members:
        if member.name in left_to_history:
            continue
        reader = archive.extractfile(member)
        if reader is not None:
            yield member.name, reader.read()


def packed_files(archive: tarfile.TarFile, tree: bytes) -> Iterator[tuple[str, bytes]]:
    """Those of `tar_files(archive)` that may hold a compressed stream or a zip entry, found in
    the tar's bytes `tree` (`inflate.may_hold_streams_in`), where it stores each file whole:
    most files of a project hold none, and looking at each one cost more than the search."""
    members = [member for member in archive.getmembers() if member.isfile()]
    left_to_history = set(history_files(member.name for member in members))
    kept = [member for member in members if member.name not in left_to_history]
    whole = [member for member in kept if member.sparse is None]
    spans = [(member.offset_data, member.offset_data + member.size) for member in whole]
    for index in may_hold_streams_in(tree, spans):
        start, end = spans[index]
        yield whole[index].name, tree[start:end]
    for member in kept:
        if member.sparse is not None and (reader := archive.extractfile(member)) is not None:
            yield member.name, reader.read()
