"""Files known by identity, not name: what a copy into the sandbox (the workspace copy, the agent
image's build context) leaves out is left out under any name, a hard link or a parent's link."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

FileId = tuple[int, int]  # (st_dev, st_ino): one file whatever its name, hard links too


def same_files(paths: Iterable[Path]) -> frozenset[FileId]:
    """The identities of the files at `paths` (links followed, as their reader follows them);
    a missing one is left out."""
    found = set()
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return frozenset(found)


def withheld_place(path: Path, withheld: frozenset[FileId]) -> Path | None:
    """The directory among `path` (resolved) and its parents that is in `withheld`, if any:
    leaving out what lies in a copy does not cover a copy made from within a withheld place."""
    for directory in (resolved := path.resolve(), *resolved.parents):
        if same_files([directory]) & withheld:
            return directory
    return None
