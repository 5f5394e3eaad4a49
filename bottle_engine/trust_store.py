"""Manifest trust, the side effects: the surface each manifest was last launched with.

One file per manifest path under ``<state dir>/trust/`` (0600 in a 0700 directory, written to
a temporary name and renamed, so a crash never leaves half a record), kept both for the path as
launched and for where its symlinks lead: a `bottle.toml` replaced by a link to another manifest
is still compared with what `bottle.toml` was trusted with, not taken as a first use of the
link's target (or as that target, trusted for another project). `review`
compares a manifest with its record; `record` stores what a review showed. A manifest that has
no record is on its first use: launching it records it (trust on first use). A moved manifest
has another path, so it is new.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bottle_engine import state
from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError
from bottle_engine.manifest.model import Manifest
from bottle_engine.trust import (
    Change,
    TrustedSurface,
    changes,
    empty_surface,
    surface_of,
    unreviewed,
    widening,
)

TRUST_DIR = "trust"


@dataclass(frozen=True)
class TrustReview:
    """A manifest's surface compared with the one recorded for its path."""

    manifest: Path
    surface: TrustedSurface
    first_use: bool
    changes: tuple[Change, ...]  # from the record (or from nothing, on first use)
    unreadable_record: str | None = None  # why the record could not be read, if it could not
    launched_as: Path | None = None  # `Manifest.found_at`: the path before links are followed
    unreviewed: tuple[str, ...] = ()  # `trust.unreviewed`

    @property
    def widening(self) -> list[Change]:
        return widening(self.changes)

    @property
    def needs_trust(self) -> bool:
        """A launch must stop: the content widens what was trusted for this path."""
        return not self.first_use and bool(self.widening)

    @property
    def fingerprint(self) -> str:
        return self.surface.fingerprint

    def to_json(self) -> dict[str, object]:
        return {
            "manifest": str(self.manifest),
            "first_use": self.first_use,
            "trusted": not self.needs_trust,
            "fingerprint": self.fingerprint,
            "changes": [change.to_json() for change in self.changes],
        }


class UntrustedManifestError(BottleError):
    """A launch stopped because the manifest widens what was trusted for its path."""

    def __init__(self, review: TrustReview) -> None:
        lines = "\n".join(f"  {safe_text(change.text)}" for change in review.widening)
        path = safe_text(review.manifest)
        super().__init__(
            f"{path} changed since it was last trusted, and the change widens what its bottles "
            f"may do:\n{lines}\nNothing was built or started.",
            fix=f"review the change, then run `bottle-engine trust -f {path}` "
            "(or `bottle-engine launch --trust ...`)",
        )
        self.review = review


def trust_dir() -> Path:
    return state.state_dir() / TRUST_DIR


def record_path(manifest_path: Path) -> Path:
    """The record of one manifest path (resolved, so two spellings of a path share it)."""
    return _record_file(os.path.realpath(manifest_path))


def record_paths(manifest_path: Path, launched_as: Path | None = None) -> tuple[Path, ...]:
    """The records a manifest is trusted in: the path it was launched as (`launched_as`, else
    `manifest_path`, made absolute, links not followed), then the resolved one (`record_path`),
    when that is another."""
    given = _record_file(os.path.abspath(launched_as or manifest_path))
    resolved = record_path(manifest_path)
    return (given,) if given == resolved else (given, resolved)


def _record_file(absolute: str) -> Path:
    digest = hashlib.sha256(absolute.encode()).hexdigest()
    return trust_dir() / f"{digest[:32]}.json"


def load_record(manifest_path: Path, launched_as: Path | None = None) -> TrustedSurface | None:
    """The recorded surface, None when there is none; `ValueError` when it is unreadable. The
    record of the path as launched comes first: what that path was trusted with holds, whatever
    it links to now."""
    for path in record_paths(manifest_path, launched_as):
        try:
            return _read_record(path)
        except FileNotFoundError:
            continue
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    return None


def _read_record(path: Path) -> TrustedSurface:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(str(exc)) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("surface"), dict):
        raise ValueError("no surface in it")
    return TrustedSurface.from_json(data["surface"])


def review(manifest: Manifest, *, home: Path | None = None) -> TrustReview:
    """Compare `manifest` with what was last trusted for its path. Reads; never writes."""
    surface = surface_of(manifest, home=home)
    try:
        recorded = load_record(manifest.path, manifest.found_at)
        problem = None
    except ValueError as exc:
        # An unreadable record trusts nothing, and is no first use either: every line counts.
        recorded, problem = empty_surface(surface), str(exc)
    first_use = recorded is None and problem is None
    found = changes(recorded or empty_surface(surface), surface)
    return TrustReview(
        manifest.path,
        surface,
        first_use,
        tuple(found),
        problem,
        launched_as=manifest.found_at,
        unreviewed=unreviewed(manifest, surface),
    )


def record(reviewed: TrustReview) -> Path:
    """Store the reviewed surface as trusted for its manifest path (as launched and resolved);
    the resolved path's record."""
    data = {
        "manifest": reviewed.surface.manifest,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "surface": reviewed.surface.to_json(),
    }
    for path in record_paths(reviewed.manifest, reviewed.launched_as):
        _write_record(path, data)
    return record_path(reviewed.manifest)


def _write_record(path: Path, data: Mapping[str, object]) -> None:
    state.private_dir(path.parent)  # the state root too, checked as it is made
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".trust-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def record_if_fingerprint(reviewed: TrustReview, fingerprint: str) -> Path:
    """Record only when the manifest still reads as what the person reviewed (`fingerprint`)."""
    if reviewed.fingerprint != fingerprint:
        raise BottleError(
            f"{safe_text(reviewed.manifest)} changed after it was reviewed; nothing was trusted",
            fix="review the changes again",
        )
    return record(reviewed)
