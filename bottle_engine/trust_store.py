"""Manifest trust, the side effects: the surface each manifest was last launched with.

One file per resolved manifest path under ``<state dir>/trust/`` (0600 in a 0700 directory,
written to a temporary name and renamed, so a crash never leaves half a record). `review`
compares a manifest with its record; `record` stores what a review showed. A manifest that has
no record is on its first use: launching it records it (trust on first use). A moved manifest
has another path, so it is new.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
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
    digest = hashlib.sha256(str(Path(os.path.realpath(manifest_path))).encode()).hexdigest()
    return trust_dir() / f"{digest[:32]}.json"


def load_record(manifest_path: Path) -> TrustedSurface | None:
    """The recorded surface, None when there is none; `ValueError` when it is unreadable."""
    path = record_path(manifest_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
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
        recorded = load_record(manifest.path)
        problem = None
    except ValueError as exc:
        # An unreadable record trusts nothing, and is no first use either: every line counts.
        recorded, problem = empty_surface(surface), f"{record_path(manifest.path)}: {exc}"
    first_use = recorded is None and problem is None
    found = changes(recorded or empty_surface(surface), surface)
    return TrustReview(manifest.path, surface, first_use, tuple(found), problem)


def record(reviewed: TrustReview) -> Path:
    """Store the reviewed surface as trusted for its manifest path; the record's path."""
    path = record_path(reviewed.manifest)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    data = {
        "manifest": reviewed.surface.manifest,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "surface": reviewed.surface.to_json(),
    }
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
    return path


def record_if_fingerprint(reviewed: TrustReview, fingerprint: str) -> Path:
    """Record only when the manifest still reads as what the person reviewed (`fingerprint`)."""
    if reviewed.fingerprint != fingerprint:
        raise BottleError(
            f"{safe_text(reviewed.manifest)} changed after it was reviewed; nothing was trusted",
            fix="review the changes again",
        )
    return record(reviewed)
