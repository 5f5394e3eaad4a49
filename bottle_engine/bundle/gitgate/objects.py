"""What a push brings, asked of git: the objects it stores that the gate did not have, their
types and sizes, their bytes, and the paths each new commit changes.

Nothing here parses diff text. ``rev-list --objects`` over the pushed values, minus everything
reachable from the gate's refs (the upstream's branches and tags), is exactly what a forwarding
``git push`` sends the upstream: objects the pack carried but no pushed ref reaches stay in the
quarantine and are never forwarded (a test holds this). Its path column is no record of names:
it shows each object once, at the first path that reaches it, and cuts a path at a newline; the
names a push brings are the entries of its new trees (`tree_entries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bottle_engine.git import ObjectInfo, batch_check, object_infos, output_lines, run_git


@dataclass(frozen=True)
class NewObject:
    """One object the push brings, with the first new commit that reaches it (itself, for a
    commit) and the path it has there ("" for commits and the root tree)."""

    oid: str
    commit: str
    path: str


def new_objects(git_dir: Path, tips: list[str]) -> list[NewObject]:
    """Every object reachable from `tips` that no ref of the gate reaches, commit by commit."""
    if not tips:
        return []
    listing = run_git(
        ["rev-list", "--objects", "--in-commit-order", *tips, "--not", "--all"],
        doing="listing the pushed objects",
        git_dir=git_dir,
    ).stdout
    objects = []
    commit = ""
    for line in output_lines(listing):
        oid, separator, path = line.partition(" ")
        if not separator:  # a commit has no path column; the trees and blobs after it are its own
            commit = oid
            objects.append(NewObject(oid, oid, ""))
        else:
            objects.append(NewObject(oid, commit, path))
    return objects


GITLINK_MODE = "160000"  # a submodule's commit: its id is 20 bytes the pusher chose freely
# The modes git writes, as it writes them. A mode is octal digits read into 32 bits, so digits
# before the last eleven vanish: "1<the key in octal>00000100644" is 100644 to every tool, fsck
# --strict included, and the tree object carries the key. Any other spelling is refused.
GIT_MODES = frozenset({"100644", "100755", "120000", "40000", GITLINK_MODE})


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a tree object: `name` as stored (any bytes but NUL and '/'), `oid` in hex."""

    mode: str
    name: bytes
    oid: str


def tree_entries(data: bytes) -> list[TreeEntry]:
    """The entries of a raw tree object (``<mode> <name>\\0<20-byte id>`` each); a tree
    receive-pack's fsck passed is well formed, anything else raises ValueError."""
    entries = []
    position = 0
    while position < len(data):
        space = data.index(b" ", position)
        nul = data.index(b"\0", space)
        end = nul + 21
        if end > len(data):
            raise ValueError("truncated tree object")
        mode = data[position:space].decode("ascii")
        entries.append(TreeEntry(mode, data[space + 1 : nul], data[nul + 1 : end].hex()))
        position = end
    return entries


def infos(git_dir: Path, oids: list[str]) -> dict[str, ObjectInfo]:
    return {info.oid: info for info in object_infos(git_dir, oids)}


def changed_paths(git_dir: Path, commit: str) -> list[str]:
    """The paths `commit` changes: all its files for a root commit, those that differ from every
    parent for a merge (what the merge itself introduces), renames as delete plus add."""
    output = run_git(
        [
            "diff-tree",
            "-r",
            "-z",
            "-c",
            "--root",
            "--name-only",
            "--no-renames",
            "--no-commit-id",
            "--no-ext-diff",
            "--no-textconv",
            commit,
        ],
        doing=f"listing the paths commit {commit[:12]} changes",
        git_dir=git_dir,
    ).stdout
    return [path for path in output.split("\0") if path]


def tree_values(git_dir: Path, names: list[tuple[str, str]]) -> list[str | None]:
    """The object id at each (commit, path), None where the commit has no such path."""
    queries = [f"{commit}:{path}" for commit, path in names]
    lines = batch_check(git_dir, "%(objectname)", queries, doing="reading paths in commits")
    # Found: the id alone. Not found: what was asked, then " missing" (a path may hold spaces).
    return [None if " " in line else line for line in lines]


def paths_between(git_dir: Path, old: str | None, new: str) -> list[str]:
    """The paths that differ between two commits, or every file of `new` when `old` is None."""
    if old is None:
        args = ["ls-tree", "-r", "-z", "--name-only", new]
    else:
        args = ["diff-tree", "-r", "-z", "--name-only", "--no-renames", old, new]
    output = run_git(args, doing=f"listing the paths of {new[:12]}", git_dir=git_dir).stdout
    return [path for path in output.split("\0") if path]


def branch_tips(git_dir: Path) -> dict[str, str]:
    """Ref name to commit of every branch the gate has (the upstream's, as last mirrored)."""
    output = run_git(
        ["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/"],
        doing="listing the gate's branches",
        git_dir=git_dir,
    ).stdout
    tips = {}
    for line in output_lines(output):
        ref, _, oid = line.partition(" ")
        tips[ref] = oid
    return tips
