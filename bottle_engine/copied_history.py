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

import hashlib
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bottle_engine import git, state
from bottle_engine.bundle import secret_forms
from bottle_engine.bundle.secret_forms import Needle, ValueSearch

# A file git reads objects from, in an object directory of any name (`.git/objects`, a bare
# repository's, one an alternates file names): a loose object (SHA-1 or SHA-256 names) or a
# pack's index.
_LOOSE = r"[0-9a-f]{2}/(?:[0-9a-f]{38}|[0-9a-f]{62})"
_OBJECT_FILE = re.compile(rf"^(?:(?P<store>.*)/)?(?:pack/[^/]+\.idx|{_LOOSE})$")
# What git reads objects from, relative to an object directory.
_STORED = re.compile(rf"^(?:pack/[^/]+\.(?:pack|idx)|{_LOOSE})$")
# What else a pack directory holds beside packs and their indexes: no object of its own.
_PACK_SIDECARS = (".idx", ".keep", ".promisor", ".rev", ".bitmap", ".mtimes")
_SHA256_LOOSE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{62}$")
CLEAN_PACKS_DIR = "history-clean"  # in the cache dir (`CleanPacks`)
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
    (`object_dirs`), and the config of each one's repository (`_repository_config`): what
    `search_history` reads, for a copy not yet made into one tar."""
    listed = list(names)
    directories = object_dirs(listed)
    configs = {_repository_config(directory) for directory in directories}
    unindexed = set(_unindexed(listed, directories))
    return [
        name
        for name in listed
        if _stores_objects(name, directories) or name in configs or name in unindexed
    ]


def _unindexed(names: Iterable[str], directories: Iterable[str]) -> Iterator[str]:
    """Those of `names` in the pack directory of one of the object `directories` that may be
    a pack git has no index of (a `tmp_pack_*` an interrupted fetch left, a `.pack` alone)."""
    listed = {name.removeprefix("./") for name in names}
    packs = {str(PurePosixPath(directory) / "pack") for directory in directories}
    for name in sorted(listed):
        if "pack/" not in name:  # in no pack directory (and no path to make: 5,000 took 70 ms)
            continue
        path = PurePosixPath(name)
        if str(path.parent) not in packs or path.name.startswith("multi-pack-index"):
            continue
        if name.endswith(_PACK_SIDECARS) or f"{name.removesuffix('.pack')}.idx" in listed:
            continue
        yield name


def _repository_config(objects_dir: str) -> str:
    """The config of the repository whose object directory is `objects_dir` (its parent's)."""
    return str(PurePosixPath(objects_dir).parent / "config")


def _object_format(objects_dir: str, names: Iterable[str], scratch: Path) -> str:
    """The hash git names the objects in `objects_dir` by (of a copy with the file `names`,
    taken out into `scratch`): its repository's `extensions.objectFormat`, else that of a
    loose object's name. A pack does not say."""
    config = _repository_config(objects_dir)
    if (scratch / config).is_file():
        said = git.run_git(
            ["config", "--file", str(scratch / config), "--get", "extensions.objectformat"],
            doing="reading a copied repository's object format",
            check=False,
        ).stdout.strip()
        if said:
            return said.lower()
    prefix = "" if objects_dir == "." else f"{objects_dir}/"
    for name in names:
        inner = name.removeprefix("./").removeprefix(prefix)
        if _SHA256_LOOSE.match(inner):
            return "sha256"
    return "sha1"


@dataclass(frozen=True)
class CleanPacks:
    """Packs searched for a set of values and found to hold none, an empty file each. A pack
    never changes once written (a new one comes with a fetch or a `git gc`), so a launch after
    the first reads only the packs and the loose objects that came since. An entry is named by
    a digest of the pack's bytes, of the values' forms and how each is matched, and of the
    search's version (one found clean by an older search, which found less, is searched again;
    one-way: no value can be read from it; the cache dir is the engine user's alone)."""

    directory: Path

    @classmethod
    def in_cache_dir(cls) -> CleanPacks:
        return cls(state.make_cache_dir() / CLEAN_PACKS_DIR)

    def holds(self, pack: str, search: ValueSearch) -> bool:
        return self._entry(pack, search).exists()

    def add(self, packs: Iterable[str], search: ValueSearch) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        for pack in packs:
            self._entry(pack, search).touch()

    def _entry(self, pack: str, search: ValueSearch) -> Path:
        forms = sorted(
            b"%d%d" % (needle.word, needle.indented) + needle.data for needle in search.needles
        )
        values = hashlib.sha256(b"\0".join(forms)).hexdigest()
        entry = f"{pack}:{values}:{secret_forms.SEARCH_VERSION}"
        return self.directory / hashlib.sha256(entry.encode()).hexdigest()


def search_history(
    archive: tarfile.TarFile, search: ValueSearch, clean: CleanPacks | None = None
) -> HistoryHit | None:
    """The first object of a git history in the copy `archive` (an open tar: its listing is
    read once, by whichever check reads it first) that holds a value of `search`; None when
    there is none (or no history at all). A history git cannot read raises
    `HistoryUnreadable`. Packs `clean` holds are passed over; those searched are added to it
    when nothing is found."""
    members = archive.getmembers()
    directories = object_dirs(member.name for member in members if member.isfile())
    if not directories:
        return None
    files = {m.name.removeprefix("./"): m for m in members if m.isfile()}
    for name in _unindexed(files, directories):
        if _head(archive, files[name]) == b"PACK":
            raise HistoryUnreadable(
                str(PurePosixPath(name).parent.parent),
                f"{name} is a pack without its index (an interrupted fetch leaves one), "
                "which git reads back in one command (`git unpack-objects`); remove it",
            )
    inside = [m for m in members if m.isfile() and _stores_objects(m.name, directories)]
    configs = {_repository_config(directory) for directory in directories}
    settings = [m for m in members if m.isfile() and m.name.removeprefix("./") in configs]
    # A pack with its index, which says what git (the search's and the agent's) finds in it.
    by_name = {m.name: m for m in inside}
    digests = {
        name: _digest(archive, [member, by_name.get(name.removesuffix(".pack") + ".idx")])
        for name, member in by_name.items()
        if name.endswith(".pack")
    }
    passed = {
        name.removesuffix(".pack")
        for name, digest in digests.items()
        if clean is not None and clean.holds(digest, search)
    }
    inside = [m for m in inside if m.name.rpartition(".")[0] not in passed]
    with tempfile.TemporaryDirectory(prefix="bottle-history-") as scratch:
        archive.extractall(scratch, members=inside + settings, filter="data")
        for directory in directories:
            (Path(scratch) / directory).mkdir(parents=True, exist_ok=True)  # all passed over
            hashed = _object_format(directory, (m.name for m in inside), Path(scratch))
            try:
                hit = _first_hit(Path(scratch) / directory, search, hashed)
            except git.GitError as exc:
                raise HistoryUnreadable(directory, exc.stderr.strip() or exc.message) from exc
            if hit is not None:
                info, needle = hit
                return HistoryHit(directory, info.oid, info.type, needle)
    if clean is not None:
        clean.add((d for n, d in digests.items() if n.removesuffix(".pack") not in passed), search)
    return None


def _stores_objects(name: str, directories: Iterable[str]) -> bool:
    """Is `name` a file git reads objects from (a loose object, a pack or its index) in one of
    the object `directories`? Nothing else is taken out for git: `info/alternates` names the
    host's object stores, a multi-pack index names packs that may be passed over."""
    path = PurePosixPath(name.removeprefix("./"))
    for directory in directories:
        store = PurePosixPath(directory)
        if store != PurePosixPath(".") and store not in path.parents:
            continue
        inner = path.relative_to(store).as_posix()
        if _STORED.match(inner):
            return True
    return False


def _head(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    reader = archive.extractfile(member)
    return reader.read(4) if reader is not None else b""


def _digest(archive: tarfile.TarFile, members: list[tarfile.TarInfo | None]) -> str:
    digest = hashlib.sha256()
    for member in members:
        reader = archive.extractfile(member) if member is not None else None
        while reader is not None and (piece := reader.read(1 << 20)):
            digest.update(piece)
        digest.update(b"\0")
    return digest.hexdigest()


def _first_hit(
    objects_dir: Path, search: ValueSearch, object_format: str
) -> tuple[git.ObjectInfo, Needle] | None:
    stored = git.read_stored_objects(
        objects_dir, max_size=MAX_OBJECT_BYTES, object_format=object_format
    )
    with closing(stored) as objects:
        return next(search.finds(objects), None)
