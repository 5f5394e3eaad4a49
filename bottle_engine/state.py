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
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bottle_engine import settings
from bottle_engine.errors import BottleError


def cache_dir() -> Path:
    """Root of the content-addressed caches (artifacts, packs): `EngineSettings.cache_dir`,
    once `owned_root` has found it the engine user's alone."""
    return owned_root(settings.cache_dir_from_env(), settings.ENV_CACHE_DIR)


def state_dir() -> Path:
    """Root of per-bottle state (metadata, audit logs, approvals): `EngineSettings.state_dir`,
    once `owned_root` has found it the engine user's alone."""
    return owned_root(settings.state_dir_from_env(), settings.ENV_STATE_DIR)


_OWNED_ROOTS: set[Path] = set()


def owned_root(root: Path, variable: str) -> Path:
    """`root`, refused (`BottleError`) unless no other user can change what it is.

    0700 protects a root only if it is ours, and so is every dir above it, or root's (those
    others may write must be sticky, as /tmp is). Otherwise its owner, who may have made it
    (or a link to it) first in a shared place, reads or plants records (an artifact key naming
    their image, a trust record for a wider manifest), or renames it away and puts their own
    in its place between two writes. A root that does not exist yet is checked again at the
    next call (`private_dir` makes it); one that passed once is not checked again."""
    root = root.absolute()
    if root in _OWNED_ROOTS:
        return root
    me = os.geteuid()
    resolved = root.resolve()
    links = [path for path in (*reversed(root.parents), root) if path.is_symlink()]
    for path in [*links, *resolved.parents]:
        info = _lstat(path)
        if info is None:
            continue  # made later, by `private_dir`, which checks what it made
        if info.st_uid not in (me, 0):
            raise _not_ours(path, info.st_uid, variable)
        if path in links:
            continue
        if _others_may_write(info) and not info.st_mode & stat.S_ISVTX:
            raise BottleError(
                f"{root} is under {path}, where others may rename what it holds "
                f"({stat.S_IMODE(info.st_mode):04o}, not sticky)",
                fix=f"set {variable} to a directory under ones only you (or root) may write",
            )
    info = _lstat(resolved)
    if info is None:
        return root
    if info.st_uid != me:
        raise _not_ours(root, info.st_uid, variable)
    _OWNED_ROOTS.add(root)
    return root


def _others_may_write(info: os.stat_result) -> bool:
    """Writable by all, or by a group other than our own (a home dir 0775 with a group of one,
    the user's own, as user-private groups make it, is not open to others)."""
    group_write = info.st_mode & stat.S_IWGRP and info.st_gid not in (os.getegid(), 0)
    return bool(info.st_mode & stat.S_IWOTH or group_write)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _not_ours(path: Path, uid: int, variable: str) -> BottleError:
    return BottleError(
        f"{path} belongs to another user (uid {uid}): bot-bottle keeps records, secrets and "
        "images under it, which that user could read, plant or swap",
        fix=f"set {variable} to a directory of your own (remove {path} if you made it)",
    )


def state_id() -> str:
    """A short name for this state dir, put on every resource it records (label
    ``bot-bottle.state``): `gc` removes only orphans of its own state dir, so a test suite or a
    second user with another ``BOTTLE_STATE_DIR`` never removes someone else's bottles."""
    return hashlib.sha256(str(state_dir().resolve()).encode()).hexdigest()[:16]


def records_dir() -> Path:
    """The engine's records of its bottles (records.py): never mounted into a container."""
    return state_dir() / "records"


def write_private_text(path: Path, text: str) -> None:
    """`text` in `path` (its dir made private), atomically (a crash never leaves half a file)
    and 0600 (the temporary file is made by mkstemp: its own name, never a planted link)."""
    private_dir(path.parent)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
            remove_tree(target)
        return
    remove_tree(path)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def remove_tree(path: Path) -> None:
    """`path` and everything in it, no link followed, whatever its depth; errors ignored (as
    `shutil.rmtree(..., ignore_errors=True)`). For a dir a bundle wrote, once it is stopped:
    `shutil.rmtree` recurses once per level, and a bundle that nested a few thousand dirs
    made it raise RecursionError, so `stop --rm` failed and left the dir, secrets and all.

    One dir is open at a time: down by name without following a link, up by "..", with the
    names on a list (nothing else changes the tree meanwhile)."""
    with contextlib.suppress(OSError):
        try:
            fd = os.open(path, _DIR_FLAGS | os.O_NOFOLLOW)
        except OSError:
            path.unlink()  # a link or a file in the dir's place; missing: nothing to do
            return
        names: list[str] = []
        try:
            while True:
                inner = _empty_but_one_dir(fd)
                if inner is not None:
                    deeper = _open_inner(inner, fd)
                    os.close(fd)
                    fd = deeper
                    names.append(inner)
                elif names:
                    upper = os.open("..", _DIR_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = upper
                    os.rmdir(names.pop(), dir_fd=fd)
                else:
                    break
        finally:
            os.close(fd)
        os.rmdir(path)


def _open_inner(name: str, parent: int) -> int:
    """Dir `name` in `parent`, opened without following a link; a dir the bundle took the
    engine's rights to (as the same user: the engine is not root) is given them back first."""
    try:
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=parent)
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)


def _empty_but_one_dir(fd: int) -> str | None:
    """Unlink everything in the dir open at `fd` but dirs; the name of one dir left, if any."""
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o700)  # entries of a dir without write rights cannot be unlinked
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=fd)
    return None


PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700, or take group and other rights away
    from it if it exists; returns it."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        owner = directory.lstat().st_uid
        if owner != os.geteuid():  # another user made it between our look and our mkdir
            raise _not_ours(directory, owner, "BOTTLE_STATE_DIR or BOTTLE_CACHE_DIR")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & ~0o077)
    return path


def make_bottle_dir(slug: str) -> Path:
    """`bottle_dir(slug)`, created private, with the state root and its bottles/ dir private."""
    private_dir(state_dir())
    private_dir(state_dir() / "bottles")
    return private_dir(bottle_dir(slug))


@contextlib.contextmanager
def launching() -> Iterator[None]:
    """Held while a launch (or a pool fill) makes resources that no record names yet, shared
    with other launches: `gc` would take them for a crashed launch's and remove them."""
    with _orphans_lock(fcntl.LOCK_SH):
        yield


@contextlib.contextmanager
def collecting(waiting: Callable[[], None]) -> Iterator[None]:
    """Held while `gc` looks for orphans and removes them: it waits for the launches under way
    (`waiting()` is told first), and launches that start meanwhile wait for it."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(_orphans_lock(fcntl.LOCK_EX | fcntl.LOCK_NB))
        except BlockingIOError:
            waiting()
            held.enter_context(_orphans_lock(fcntl.LOCK_EX))
        yield


@contextlib.contextmanager
def _orphans_lock(operation: int) -> Iterator[None]:
    private_dir(state_dir())
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(state_dir() / "launch.lock", flags, 0o600)
    try:
        fcntl.flock(descriptor, operation)  # released when the descriptor closes
        yield
    finally:
        os.close(descriptor)


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
