"""The objects the gate forwards upstream: encoded by the gate, never as the agent packed them.

The scan reads each pushed object's content. A pack's encoding of that content is the sender's
free choice (where a deflate stream cuts its blocks, which bytes a delta copies from its base
and which it inserts), and ``git push`` copies an object's compressed bytes and deltas from
whatever pack holds it: forwarded from the agent's pack, that choice carried a key upstream
around a file of harmless text, and a forge serves it so to every clone.

So a forwarding push reads objects from two stores only: a pack the gate writes from the scanned
objects' content (``pack-objects --no-reuse-object``: fresh deflate streams, deltas of its own
search), and the upstream store, where `mirror` fetches the upstream's objects. The gate
repository the agent pushes to borrows the latter as an alternate; its own packs (every push
the agent ever sent, with whatever else rode in them) are never read by the forwarding push.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bottle_engine.bundle.gitgate.store import QUARANTINE_ENV
from bottle_engine.git import run_git

UPSTREAM_STORES = ".upstream"  # no upstream name starts with "." (gate.check_upstreams)


def upstream_store(git_dir: Path) -> Path:
    """The bare repository holding the upstream's objects for the gate repository `git_dir`."""
    return git_dir.parent / UPSTREAM_STORES / git_dir.name


def borrow_upstream_store(git_dir: Path, store: Path | None = None) -> None:
    """Make the repository `git_dir` read the objects of `store` (the upstream store of the gate
    repository `git_dir`) as its own."""
    alternates = git_dir / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text(f"{((store or upstream_store(git_dir)) / 'objects').resolve()}\n")


@contextmanager
def forwarding_objects(git_dir: Path, oids: list[str]) -> Iterator[dict[str, str]]:
    """The environment for a git command that forwards `oids` (the scanned new objects): it
    sees them only as the gate packed them, and everything else only as the upstream sent it."""
    # In the push's quarantine when there is one: receive-pack removes that with the push if
    # the hook dies (the CPU bound), where a pack left in the repository outlived it unbudgeted.
    where = os.environ.get(QUARANTINE_ENV) or git_dir
    with tempfile.TemporaryDirectory(prefix="forward-", dir=where) as temporary:
        objects = Path(temporary)
        (objects / "pack").mkdir()
        if oids:
            run_git(
                ["pack-objects", "--quiet", "--no-reuse-object", str(objects / "pack" / "pack")],
                doing="packing the pushed objects to forward",
                git_dir=git_dir,
                input_text="".join(f"{oid}\n" for oid in oids),
            )
        yield {
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(upstream_store(git_dir) / "objects"),
        }
