"""Taking a directory name atomically: the one step two launches can never both win.

A bottle's state dir is its claim on a slug, and a warm pool member's dir is its claim on the
member: `move_noreplace(source, target)` renames `source` to `target` only when nothing is at
`target` (Linux `renameat2(RENAME_NOREPLACE)`). A plain `rename` would silently replace an
empty directory at `target`, so two launches could share a state dir.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

from bottle_engine.errors import BottleError

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _renameat2() -> object | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    function = getattr(libc, "renameat2", None)
    if function is not None:
        function.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        function.restype = ctypes.c_int
    return function


_RENAME = _renameat2()


def move_noreplace(source: Path, target: Path) -> None:
    """Rename `source` to `target`; FileExistsError when `target` exists, FileNotFoundError
    when `source` is gone (another process took it first)."""
    if _RENAME is None:  # no renameat2 (not Linux): check, then rename (a narrow race remains)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target))
        os.rename(source, target)
        return
    result = _RENAME(  # type: ignore[operator]
        _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
    )
    if result != 0:
        code = ctypes.get_errno()
        if code == errno.EEXIST or code == errno.ENOTEMPTY:
            raise FileExistsError(code, os.strerror(code), str(target))
        if code == errno.ENOENT:
            raise FileNotFoundError(code, os.strerror(code), str(source))
        if code in (errno.EINVAL, errno.ENOSYS):  # NFS, some FUSE and overlay filesystems
            raise BottleError(
                f"{target.parent}: this filesystem cannot rename without replacing "
                f"(renameat2 RENAME_NOREPLACE: {os.strerror(code)}), which bot-bottle needs so "
                "that two launches never share a bottle's state",
                fix="put the state dir on a local filesystem: set BOTTLE_STATE_DIR",
            )
        raise OSError(code, os.strerror(code), str(source))
