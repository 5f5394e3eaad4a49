"""Where bot-bottle keeps things on disk.

Caches (artifacts, packs) live under the platformdirs cache dir, per-bottle state (metadata,
audit logs, approvals, secrets handed to the bundle) under the state dir. Both can be moved with
``BOTTLE_CACHE_DIR`` / ``BOTTLE_STATE_DIR`` so that tests run in temporary directories.

Both are private to the user running the engine: `private_dir` makes (or tightens) them and
every bottle's directory 0700, so no other host account reads a record, an audit log, an
approval or a secret, whatever the modes of the files inside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bottle_engine import settings


def cache_dir() -> Path:
    """Root of the content-addressed caches (artifacts, packs): `EngineSettings.cache_dir`."""
    return settings.cache_dir_from_env()


def state_dir() -> Path:
    """Root of per-bottle state (metadata, audit logs, approvals): `EngineSettings.state_dir`."""
    return settings.state_dir_from_env()


def state_id() -> str:
    """A short name for this state dir, put on every resource it records (label
    ``bot-bottle.state``): `gc` removes only orphans of its own state dir, so a test suite or a
    second user with another ``BOTTLE_STATE_DIR`` never removes someone else's bottles."""
    return hashlib.sha256(str(state_dir().resolve()).encode()).hexdigest()[:16]


def records_dir() -> Path:
    """The engine's records of its bottles (records.py): never mounted into a container."""
    return state_dir() / "records"


@contextlib.contextmanager
def staged(data: bytes) -> Iterator[Path]:
    """`data` in a 0600 file, for a tool that takes a file by path (smolvm copying a tar into
    a guest), in a fresh private dir no container mounts; removed afterwards. In a dir a bundle
    can write, the file could be swapped for a link to a host file before the tool reads it."""
    private_dir(state_dir())
    staging = Path(tempfile.mkdtemp(prefix="staged-", dir=private_dir(state_dir() / "staging")))
    try:
        path = staging / "file"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(data)
        yield path
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def bottle_dir(slug: str) -> Path:
    """The state directory of one bottle instance."""
    return state_dir() / "bottles" / slug


def remove_bottle_dir(slug: str) -> None:
    """Remove a bottle's state dir (see `remove_bottle_path`)."""
    remove_bottle_path(bottle_dir(slug))


def remove_bottle_path(path: Path) -> None:
    """Remove a bottle's state dir; for a bottle from the warm pool, `bottles/<slug>` is a link
    to its member's dir (bottle_engine/pool.py), and both go."""
    if path.is_symlink():
        target = path.resolve()
        path.unlink()
        if target.parent == state_dir().resolve() / "pool" / "members":
            shutil.rmtree(target, ignore_errors=True)
        return
    shutil.rmtree(path, ignore_errors=True)


PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700, or take group and other rights away
    from it if it exists; returns it."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & ~0o077)
    return path


def make_bottle_dir(slug: str) -> Path:
    """`bottle_dir(slug)`, created private, with the state root and its bottles/ dir private."""
    private_dir(state_dir())
    private_dir(state_dir() / "bottles")
    return private_dir(bottle_dir(slug))


def make_cache_dir() -> Path:
    """`cache_dir()`, created private."""
    return private_dir(cache_dir())


def exposed_dirs() -> list[tuple[Path, int]]:
    """Directories of the state and cache roots that other host users may enter or read:
    (path, mode) for the roots, records/, bottles/ and each bottle's dir (doctor's check)."""
    candidates = [cache_dir(), state_dir(), records_dir(), state_dir() / "bottles"]
    bottles = state_dir() / "bottles"
    if bottles.is_dir():
        candidates += sorted(child for child in bottles.iterdir() if child.is_dir())
    found = []
    for directory in candidates:
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append((directory, mode))
    return found
