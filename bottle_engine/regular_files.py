"""Reading a file that another party can replace at any time.

A bottle's state dir is mounted read-write into its bundle, and the bundle parses the agent's
traffic: the engine treats every file there as possibly planted. Such a file is opened without
following a link (a link would name any host file), without blocking (a FIFO would hang the
reader), checked to be a regular file, and read only up to a bound (a sparse file of any size
costs nothing to make). The bundle reads the host's approvals answers the same way.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

# Open flags for reading a file that may have been planted: never follow, never block.
READ_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# O_PATH (Linux): a directory on the way needs search permission only, as for a path lookup.
_DIR_LOOKUP = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


@contextlib.contextmanager
def parent_beneath(root: Path, relative: PurePosixPath) -> Iterator[int]:
    """A descriptor of the directory holding `root`/`relative`, reached one name at a time
    without following a link below `root`: a directory swapped for a link to elsewhere raises
    OSError (ELOOP, ENOTDIR) instead of leading out. Closed when the block ends."""
    fd = os.open(root, _DIR_LOOKUP)
    try:
        for part in relative.parts[:-1]:
            inner = os.open(part, _DIR_LOOKUP | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        yield fd
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def read_regular(path: Path | str, limit: int, *, dir_fd: int | None = None) -> bytes:
    """The bytes of the regular file at `path` (a name in `dir_fd` when given), at most
    `limit` of them. OSError when it is a link (ELOOP), not a regular file (EINVAL), larger
    than `limit` (EFBIG) or missing."""
    return read_open_regular(os.open(path, READ_NO_FOLLOW, dir_fd=dir_fd), limit)


def read_open_regular(fd: int, limit: int) -> bytes:
    """`read_regular` for a file already open at `fd` (closed here)."""
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data


def load_json(raw: bytes | str) -> Any:
    """A JSON document such a file holds; `ValueError` for anything that is not one.

    The parser recurses once per nested array or object, so a few kilobytes of brackets raise
    `RecursionError`, which handlers written for damaged files (`ValueError`) let through. It
    also takes `NaN` and `Infinity`, which no JSON writer of ours makes and strict readers of
    what we print (`jq`, the editor) refuse."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON number")
