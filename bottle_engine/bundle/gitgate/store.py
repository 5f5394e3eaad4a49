"""What the gate keeps of accepted pushes: a budget per upstream (`max_stored_bytes`).

Each push's pack stays in the gate's repository, which lives in the bottle's state dir on the
host; receive.maxInputSize bounds one pack, nothing bounded how many. The budget counts the
bytes receive-pack wrote for each push (its quarantine: the pack and its index, before git moves
them into the repository), kept in a ledger file beside the repository. The repository and the
ledger are made afresh at each start of the bundle, so a stop and resume frees the budget (the
gate mirrors the upstream again, which holds every push it forwarded).

A new ref costs no pack but a file, and each part of its name before the last a directory,
in the same repository: a push is charged a file system block for each (`ref_bytes`), so
pushes of new names at one commit meet the same budget as pushes of packs.

A push is counted before it is scanned or forwarded (so that concurrent pushes cannot each fit
alone and all pass together) and uncounted if it is refused: git then drops its quarantine.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LEDGER_NAME = "gate-stored-bytes"
QUARANTINE_ENV = "GIT_QUARANTINE_PATH"
REF_BLOCK_BYTES = 4096  # what a small file or a directory takes on ext4 and xfs
REFS_ROOT_PARTS = 2  # refs/heads: made with the repository, never by a push


def over_budget(stored: int, incoming: int, budget: int) -> bool:
    """Would keeping `incoming` more bytes beside `stored` pass `budget`?"""
    return stored + incoming > budget


def incoming_bytes(environ: dict[str, str] | None = None) -> int:
    """The bytes receive-pack wrote for the push being decided: its quarantine directory. It
    makes none for a push without a pack (only deletions): 0. (Git before 2.11 had no
    quarantine at all; the bundle image's has.)"""
    quarantine = (os.environ if environ is None else environ).get(QUARANTINE_ENV)
    if not quarantine or not os.path.isdir(quarantine):
        return 0
    total = 0
    for root, _dirs, files in os.walk(quarantine):  # os.walk never follows directory links
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def ref_bytes(new_refs: list[str]) -> int:
    """What creating `new_refs` may take on disk: a block per part of each name past
    refs/heads/ (a directory each, the last the ref's file). An upper bound (directories two
    refs share are counted twice): the budget errs towards keeping less."""
    return sum(REF_BLOCK_BYTES * max(ref.count("/") + 1 - REFS_ROOT_PARTS, 1) for ref in new_refs)


@contextmanager
def _ledger(git_dir: Path) -> Iterator[tuple[int, int]]:
    """The ledger's descriptor, locked, and the bytes it holds now."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
    descriptor = os.open(git_dir / LEDGER_NAME, flags, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        text = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip()
        yield descriptor, int(text) if text.isdigit() else 0
    finally:
        os.close(descriptor)  # drops the lock


def _write(descriptor: int, stored: int) -> None:
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, str(max(stored, 0)).encode(), 0)


def reserve(git_dir: Path, incoming: int, budget: int) -> int | None:
    """Count `incoming` bytes against `budget`; returns None when they fit (now counted), else
    the bytes already kept (nothing counted)."""
    with _ledger(git_dir) as (descriptor, stored):
        if over_budget(stored, incoming, budget):
            return stored
        _write(descriptor, stored + incoming)
    return None


def release(git_dir: Path, incoming: int) -> None:
    """Uncount a push that was refused after `reserve` (git drops what it wrote)."""
    with _ledger(git_dir) as (descriptor, stored):
        _write(descriptor, stored - incoming)


def stored_bytes(git_dir: Path) -> int:
    """The bytes of accepted pushes the ledger counts."""
    with _ledger(git_dir) as (_descriptor, stored):
        return stored
