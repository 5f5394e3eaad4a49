"""Where bot-bottle keeps things on disk.

Caches (artifacts, packs) live under the platformdirs cache dir, per-bottle state (metadata,
audit logs, approvals, secrets handed to the bundle) under the state dir. Both can be moved with
``BOTTLE_CACHE_DIR`` / ``BOTTLE_STATE_DIR`` so that tests run in temporary directories.
"""

from __future__ import annotations

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


def bottle_dir(slug: str) -> Path:
    """The state directory of one bottle instance."""
    return state_dir() / "bottles" / slug
