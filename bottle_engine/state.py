"""Where bot-bottle keeps things on disk.

Caches (artifacts, packs) live under the platformdirs cache dir, per-bottle state (metadata,
audit logs, approvals, secrets handed to the bundle) under the state dir. Both can be moved with
``BOTTLE_CACHE_DIR`` / ``BOTTLE_STATE_DIR`` so that tests run in temporary directories.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

APP_NAME = "bot-bottle"


def cache_dir() -> Path:
    """Root of the content-addressed caches (artifacts, packs)."""
    override = os.environ.get("BOTTLE_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))


def state_dir() -> Path:
    """Root of per-bottle state (metadata, audit logs, approvals)."""
    override = os.environ.get("BOTTLE_STATE_DIR")
    return Path(override) if override else Path(platformdirs.user_state_dir(APP_NAME))


def state_id() -> str:
    """A short name for this state dir, put on every resource it records (label
    ``bot-bottle.state``): `gc` removes only orphans of its own state dir, so a test suite or a
    second user with another ``BOTTLE_STATE_DIR`` never removes someone else's bottles."""
    return hashlib.sha256(str(state_dir().resolve()).encode()).hexdigest()[:16]


def bottle_dir(slug: str) -> Path:
    """The state directory of one bottle instance."""
    return state_dir() / "bottles" / slug
