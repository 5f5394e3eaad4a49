"""Other host users for attack tests (the suite runs as root): run a command as one, and make a
directory they may reach, as a home or /tmp is (pytest's own tmp dirs are 0700)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

NOBODY = 65534


def as_user(uid: int, command: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`command` as uid (and gid) `uid` with no supplementary groups, from /."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        check=False,
    )


@contextlib.contextmanager
def open_tmp_dir(mode: int) -> Iterator[Path]:
    """A fresh dir under /tmp with `mode` (0o1777: anyone creates in it, as in /tmp), removed
    afterwards whoever made what is in it."""
    directory = Path(tempfile.mkdtemp(prefix="bb-host-users-", dir="/tmp"))
    directory.chmod(mode)
    try:
        yield directory
    finally:
        subprocess.run(["rm", "-rf", str(directory)], check=False)
