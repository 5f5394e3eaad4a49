"""The agent image's build context, searched for the bottle's real values on every launch.

The image is built from the bottle's `context` (by default the project beside bottle.toml),
and a Dockerfile's everyday `COPY . /src` puts all of it in the image, where the agent reads
it: a git-ignored `.env` holding a `from_env` value (or an archive of one), a value in the
context's git history, a build arg. The files the bundle alone reads are left out of the
context (`guest.withheld_paths`); what else holds a value is refused. Images are reused by
input key (from the store, or the shared cache, perhaps built for a bottle without that
secret), so the search runs whenever the key is made, on every launch, over the bytes the key
is made of: the context is read once.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bottle_engine.artifacts.spec import BuildSpec
from bottle_engine.bundle import secret_forms
from bottle_engine.bundle.inflate import may_hold_streams
from bottle_engine.bundle.secret_forms import Needle, ValueSearch
from bottle_engine.copied_archives import ArchiveSearch, packed_files
from bottle_engine.copied_git_config import refuse_credentials
from bottle_engine.copied_history import (
    CleanPacks,
    HistoryUnreadable,
    history_files,
    search_history,
)
from bottle_engine.copy_refusals import (
    CopyPlace,
    history_unreadable,
    into_the_image,
    value_in_archive,
    value_in_history,
    values_in_files,
)
from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError
from bottle_engine.guest import real_values, withheld_paths
from bottle_engine.plan import BottlePlan


@dataclass
class ContextValues:
    """The `ContextCheck` of a bottle's agent image: no real value of `search` in the
    context's files, names, link targets, git histories or compressed files and archives
    (`copied_archives`), nor in a build arg."""

    search: ValueSearch
    context: Path
    holding: list[str] = field(default_factory=list)
    found: Needle | None = None
    # Entries not yet searched: searched joined, in runs (one pass per form over much data
    # rather than one per file), one by one only on a find.
    _run: list[tuple[str, bytes]] = field(default_factory=list)
    _run_bytes: int = 0
    # Entries that may hold compressed streams (`copied_archives`), inflated once all are seen.
    _packed: list[str] = field(default_factory=list)

    def build_args(self, build_args: Mapping[str, str]) -> None:
        for name, value in build_args.items():
            needle = self.search.first(name.encode(errors="surrogateescape")) or (
                self.search.first(value.encode(errors="surrogateescape"))
            )
            if needle is not None:
                raise BottleError(
                    f"the build arg {safe_text(name)} of the agent image holds the real value "
                    f"of the {needle.label}: a build arg is readable in the image (its "
                    "history, an ENV or a file the Dockerfile writes), where the agent reads it",
                    fix="remove it from `build_args` in bottle.toml; the agent holds a "
                    "placeholder, the bundle puts the value into requests",
                )

    def entry(self, path: str, data: bytes) -> None:
        if may_hold_streams(data):
            self._packed.append(path)
        self._run.append((path, data))
        self._run_bytes += len(path) + len(data)
        if self._run_bytes >= secret_forms.RUN_BYTES:
            self._search_run()

    def _search_run(self) -> None:
        run, self._run, self._run_bytes = self._run, [], 0
        named = ((path, path.encode(errors="surrogateescape") + b"\0" + data) for path, data in run)
        for path, needle in self.search.finds(named):
            self.holding.append(path)
            self.found = self.found or needle

    def done(self, files: Sequence[str], tar_of: Callable[[Sequence[str]], bytes]) -> str | None:
        self._search_run()
        place = into_the_image(str(self.context))
        holding, found, packed = self.holding, self.found, self._packed
        # The next reading of the context starts afresh.
        self.holding, self.found, self._packed = [], None, []
        if found is not None:
            raise values_in_files(place, holding, found)
        refuse_credentials(
            set(files), lambda name: _one_file(tar_of([name])), str(self.context), place.way_out
        )
        stored = history_files(files)
        # Object files are read through git (`copied_history`), not inflated again.
        unpacked = set(files).difference(stored)
        warning = self._archives(place, [name for name in packed if name in unpacked], tar_of)
        if not stored:
            return warning
        try:
            with tarfile.open(fileobj=io.BytesIO(tar_of(stored))) as archive:
                hit = search_history(archive, self.search, CleanPacks.in_cache_dir())
        except HistoryUnreadable as unreadable:
            directory = place.root + unreadable.objects_dir
            raise history_unreadable(place, unreadable, directory) from unreadable
        if hit is not None:
            raise value_in_history(place, hit, place.root + hit.objects_dir)
        return warning

    def _archives(
        self, place: CopyPlace, packed: Sequence[str], tar_of: Callable[[Sequence[str]], bytes]
    ) -> str | None:
        """A `BottleError` when a compressed file or an archive among the `packed` files holds
        a real value (`copied_archives`); else the warning naming those it could not open."""
        if not packed:
            return None
        inside = ArchiveSearch(self.search)
        tree = tar_of(packed)
        with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
            hit = inside.first(packed_files(archive, tree))
        if hit is not None:
            raise value_in_archive(place, hit)
        return inside.warning(place.what)


def guarded(spec: BuildSpec, plan: BottlePlan, *, unset_ok: bool = False) -> BuildSpec:
    """`spec` (the agent image of `plan`) built without the files no copy into the sandbox
    holds, and refused when its context holds one of the bottle's real values. `unset_ok`: a
    secret that cannot be read is not searched for (`bottle-engine build` without them)."""
    check = ContextValues(real_values(plan, unset_ok=unset_ok), spec.context)
    return replace(spec, withheld=tuple(withheld_paths(plan)), check=check)


def _one_file(tree: bytes) -> bytes:
    """The content of the one file of the tar `tree`."""
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        member = next(m for m in archive.getmembers() if m.isfile())
        reader = archive.extractfile(member)
        assert reader is not None  # a regular file
        return reader.read()
