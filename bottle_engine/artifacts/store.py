"""The artifact store: OCI layouts by digest, and an index from input key to digest.

Layout on disk (under ``state.cache_dir()/"artifacts"``)::

    layouts/<digest hex>/     one OCI image layout per artifact digest
    keys/<input key hex>.json {input_key, digest, name, origin, created, last_used}
    tmp/<pid>-<random>/       builds in progress

A build writes its layout under ``tmp/`` and renames it into ``layouts/`` only when complete,
then writes the key record (temp + rename). A killed build therefore leaves at most a temp
directory, which no lookup reads and `gc` removes; a key record is trusted only when the
layout it names is complete (`layout_is_complete`).

A record says where its artifact came from (`origin`): "built" on this machine, or "pulled"
from the shared cache, whose content whoever may push to the registry chose. A lookup for an
artifact that must be built here (the bundle, which holds the bottles' real values) trusts
only a built one; a record without an origin (an older engine's) is not known to be built.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bottle_engine import state
from bottle_engine.artifacts.oci import layout_is_complete
from bottle_engine.artifacts.spec import Artifact, image_tag_for, is_artifact_name, is_digest
from bottle_engine.errors import BottleError
from bottle_engine.regular_files import load_json

BUILT, PULLED = "built", "pulled"  # a record's origin


@dataclass(frozen=True)
class StoreEntry:
    input_key: str
    digest: str
    name: str
    origin: str  # BUILT, PULLED, or "" (recorded before records said)
    created: float
    last_used: float
    size: int  # bytes of the layout on disk
    complete: bool


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


class ArtifactStore:
    def __init__(self, root: Path | None = None) -> None:
        # The default root's parent, the cache dir, is made private (0700) on first use.
        self.root = root if root is not None else state.make_cache_dir() / "artifacts"

    @property
    def layouts(self) -> Path:
        return self.root / "layouts"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def layout_dir(self, digest: str) -> Path:
        return self.layouts / _hex(digest)

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, input_key: str, *, built_here: bool = False) -> Artifact | None:
        """The trusted artifact for `input_key`, or None (absent, its layout incomplete or, with
        `built_here`, not built on this machine)."""
        record = self._read_record(self.keys / f"{_hex(input_key)}.json")
        if record is None or record.get("input_key") != input_key:
            return None
        if built_here and record.get("origin") != BUILT:
            return None
        digest, name = str(record["digest"]), str(record["name"])
        layout = self.layout_dir(digest)
        if not layout_is_complete(layout, digest):
            return None
        record["last_used"] = time.time()
        self._write_record(record)
        return Artifact(input_key, digest, layout, image_tag_for(name, digest))

    def entries(self) -> list[StoreEntry]:
        """Every key record, newest use first."""
        found = []
        for path in sorted(self.keys.glob("*.json")) if self.keys.is_dir() else []:
            record = self._read_record(path)
            if record is None:
                continue
            digest = str(record["digest"])
            layout = self.layout_dir(digest)
            found.append(
                StoreEntry(
                    input_key=str(record["input_key"]),
                    digest=digest,
                    name=str(record["name"]),
                    origin=str(record.get("origin", "")),
                    created=float(str(record.get("created", 0))),
                    last_used=float(str(record.get("last_used", 0))),
                    size=_tree_size(layout),
                    complete=layout_is_complete(layout, digest),
                )
            )
        return sorted(found, key=lambda entry: entry.last_used, reverse=True)

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def new_layout(self) -> Iterator[Path]:
        """A fresh temp directory for a layout in progress; removed when the block ends."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.tmp))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def put(
        self, input_key: str, name: str, digest: str, built_layout: Path, *, origin: str = BUILT
    ) -> Artifact:
        """Move the complete layout `built_layout` into place, then record `input_key` -> it,
        made here or pulled (`origin`)."""
        target = self.layout_dir(digest)
        self.layouts.mkdir(parents=True, exist_ok=True)
        if not layout_is_complete(target, digest):
            shutil.rmtree(target, ignore_errors=True)
            try:
                built_layout.rename(target)
            except OSError:
                # Another build of the same digest got there first; theirs is as good as ours.
                if not layout_is_complete(target, digest):
                    raise
        now = time.time()
        self._write_record(
            {
                "input_key": input_key,
                "digest": digest,
                "name": name,
                "origin": origin,
                "created": now,
                "last_used": now,
            }
        )
        return Artifact(input_key, digest, target, image_tag_for(name, digest))

    def remove(self, key_or_digest: str) -> list[StoreEntry]:
        """Remove the entries whose input key or digest is (or starts with) `key_or_digest`."""
        matches = self.matching(key_or_digest)
        self._drop(matches)
        return matches

    def matching(self, key_or_digest: str) -> list[StoreEntry]:
        """The entries whose input key or digest is (or starts with) `key_or_digest`."""
        wanted = _hex(key_or_digest.strip())
        if len(wanted) < 6:
            raise BottleError(
                f"{key_or_digest!r} is too short to name a cache entry",
                fix="give 6 or more hex digits of a key or digest (`bottle-engine cache ls`)",
            )
        matches = [
            entry
            for entry in self.entries()
            if _hex(entry.input_key).startswith(wanted) or _hex(entry.digest).startswith(wanted)
        ]
        if not matches:
            raise BottleError(
                f"no cache entry has an input key or digest starting with {wanted}",
                fix="list the entries with `bottle-engine cache ls`",
            )
        return matches

    def gc(self, keep: int) -> list[StoreEntry]:
        """Keep the `keep` most recently used entries of each name; drop the rest, incomplete
        entries, layouts no key names, and temp dirs of builds that are no longer running."""
        removed: list[StoreEntry] = []
        kept_per_name: dict[str, int] = {}
        for entry in self.entries():
            count = kept_per_name.get(entry.name, 0)
            if entry.complete and count < keep:
                kept_per_name[entry.name] = count + 1
            else:
                removed.append(entry)
        self._drop(removed)
        named = {_hex(entry.digest) for entry in self.entries()}
        for layout in self.layouts.iterdir() if self.layouts.is_dir() else []:
            if layout.name not in named:
                shutil.rmtree(layout, ignore_errors=True)
        for temp in self.tmp.iterdir() if self.tmp.is_dir() else []:
            if not _pid_alive(temp.name.split("-", 1)[0]):
                shutil.rmtree(temp, ignore_errors=True)
        return removed

    def _drop(self, entries: list[StoreEntry]) -> None:
        for entry in entries:
            (self.keys / f"{_hex(entry.input_key)}.json").unlink(missing_ok=True)
        still_named = {_hex(entry.digest) for entry in self.entries()}
        for entry in entries:
            if _hex(entry.digest) not in still_named:
                shutil.rmtree(self.layout_dir(entry.digest), ignore_errors=True)

    def _read_record(self, path: Path) -> dict[str, object] | None:
        """The key record at `path`, or None when it is missing or not one the store writes.

        The record names the layout dir `gc` and `rm` remove, so its key and digest must have
        the shape of a digest: one planted in a store several users share, naming
        `sha256:../../x`, made `cache gc` remove a directory outside the store."""
        try:
            record = load_json(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not (
            isinstance(record, dict)
            and is_digest(record.get("input_key"))
            and is_digest(record.get("digest"))
            and is_artifact_name(record.get("name"))
            and isinstance(record.get("origin", ""), str)
            and all(_is_time(record.get(field, 0)) for field in ("created", "last_used"))
        ):
            return None
        return record

    def _write_record(self, record: dict[str, object]) -> None:
        self.keys.mkdir(parents=True, exist_ok=True)
        final = self.keys / f"{_hex(str(record['input_key']))}.json"
        handle, temp = tempfile.mkstemp(dir=self.keys, prefix=".record-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(record, out, sort_keys=True)
            os.replace(temp, final)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tree_size(path: Path) -> int:
    if not path.is_dir():
        return 0
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def _pid_alive(text: str) -> bool:
    if not text.isdigit():
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
