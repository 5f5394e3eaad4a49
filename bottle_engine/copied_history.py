"""The git histories a launch copies into the sandbox, searched for real values.

A value committed once and taken out in the next commit is in no file of the project any
more, but in `.git/objects`: zlib-compressed in a loose object, or in pieces of a delta in a
pack, where no stored form of it is found in the bytes. The agent reads it back in one line
(`git log -p --all`). So every object directory a copy holds is read back through git itself,
which inflates and resolves deltas: every object, reachable or not (an amended commit, a
dropped stash), as the agent's git would read it.

What is searched is what is copied: the object directories are taken out of the copy's tar,
not read where they lie on the host.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bottle_engine import git
from bottle_engine.bundle.secret_forms import Needle, ValueSearch

# A file git reads objects from, in an object directory of any name (`.git/objects`, a bare
# repository's, one an alternates file names): a loose object (SHA-1 or SHA-256 names) or a
# pack's index.
_OBJECT_FILE = re.compile(
    r"^(?:(?P<store>.*)/)?(?:pack/[^/]+\.idx|[0-9a-f]{2}/(?:[0-9a-f]{38}|[0-9a-f]{62}))$"
)
# Not copied out for git: it would read the host's object stores the file names.
_ALTERNATES = "info/alternates"
# An object is read whole (and copied twice by the search); a larger one is refused rather
# than searched in part: git stores a file of zeros of any size in a few kilobytes. Hosts such
# as GitHub refuse files over 100 MB.
MAX_OBJECT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class HistoryHit:
    """A stored git object that holds a real value in one of its forms."""

    objects_dir: str  # relative to the copy's root, e.g. ".git/objects"
    oid: str
    type: str  # "blob", "commit", "tree" or "tag"
    needle: Needle


class HistoryUnreadable(Exception):
    """git could not read an object directory of the copy: what is not read is not known to
    hold no value."""

    def __init__(self, objects_dir: str, detail: str) -> None:
        super().__init__(f"{objects_dir}: {detail}")
        self.objects_dir = objects_dir
        self.detail = detail


def object_dirs(names: Iterable[str]) -> list[str]:
    """The git object directories that the file `names` of a copy show, shallowest first."""
    found = set()
    for name in names:
        match = _OBJECT_FILE.match(name.removeprefix("./"))
        if match is not None:
            found.add(match["store"] or ".")
    return sorted(found, key=lambda directory: (directory.count("/"), directory))


def history_files(names: Iterable[str]) -> list[str]:
    """Those of the file `names` of a copy that lie in one of its git object directories
    (`object_dirs`): what `search_history` reads, for a copy not yet made into one tar."""
    listed = list(names)
    directories = object_dirs(listed)
    return [name for name in listed if _in_history(name, directories)]


def search_history(tree: bytes, search: ValueSearch) -> HistoryHit | None:
    """The first object of a git history in the copy `tree` (a tar) that holds a value of
    `search`; None when there is none (or no history at all). A history git cannot read
    raises `HistoryUnreadable`."""
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        members = archive.getmembers()
        directories = object_dirs(member.name for member in members if member.isfile())
        if not directories:
            return None
        with tempfile.TemporaryDirectory(prefix="bottle-history-") as scratch:
            inside = [member for member in members if _in_history(member.name, directories)]
            archive.extractall(scratch, members=inside, filter="data")
            for directory in directories:
                try:
                    hit = _first_hit(Path(scratch) / directory, search)
                except git.GitError as exc:
                    raise HistoryUnreadable(directory, exc.stderr.strip() or exc.message) from exc
                if hit is not None:
                    info, needle = hit
                    return HistoryHit(directory, info.oid, info.type, needle)
    return None


def _in_history(name: str, directories: Iterable[str]) -> bool:
    return any(_lies_in(name, directory) for directory in directories) and not name.endswith(
        _ALTERNATES
    )


def _lies_in(name: str, directory: str) -> bool:
    path, store = PurePosixPath(name.removeprefix("./")), PurePosixPath(directory)
    return store == PurePosixPath(".") or path == store or store in path.parents


def _first_hit(objects_dir: Path, search: ValueSearch) -> tuple[git.ObjectInfo, Needle] | None:
    with closing(git.read_stored_objects(objects_dir, max_size=MAX_OBJECT_BYTES)) as objects:
        return next(search.finds(objects), None)
