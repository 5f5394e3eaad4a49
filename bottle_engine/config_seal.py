"""The digest of the config the engine handed a bottle's bundle, kept where no container mounts.

The bundle reads its config (`bundle.json`) from the bottle's state dir, which is mounted
read-write into it: a bundle the agent's traffic took over could rewrite it (widen the
allowlist, bind a secret to another host) and the fresh bundle the next `resume` starts would
obey it. So the engine keeps the SHA-256 of the config it wrote beside the bottle's record
(`<state>/records/<slug>.config-sha256`), and `resume` and `probe` refuse a config that differs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bottle_engine import state
from bottle_engine.bottle_dir import BottleDir, checked_slug
from bottle_engine.errors import BottleError
from bottle_engine.regular_files import read_regular

# Far above any config the engine writes; a larger file is not one of ours.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def seal_path(slug: str) -> Path:
    return state.records_dir() / f"{checked_slug(slug)}.config-sha256"


def seal(slug: str, digest: str) -> None:
    """Remember `digest` (`bundle.waiting.config_digest` of the config text) for bottle `slug`:
    written atomically, 0600, in the records dir (0700)."""
    path = seal_path(slug)
    state.private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    with os.fdopen(os.open(temporary, flags, 0o600), "w") as out:
        out.write(digest + "\n")
    os.replace(temporary, path)


def forget(slug: str) -> None:
    seal_path(slug).unlink(missing_ok=True)


def checked_config_text(slug: str, bottle_dir: BottleDir) -> str:
    """Bottle `slug`'s config as the engine wrote it, or `BottleError` naming the file when
    the bundle replaced, linked or rewrote it. A bottle launched before seals were kept has
    none: its config is returned unchecked."""
    path = bottle_dir.bundle_config
    try:
        data = read_regular(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise _tampered(slug, path, "is a symbolic link, unreadable or not a regular file") from exc
    try:
        sealed = seal_path(slug).read_text().strip()
    except FileNotFoundError:
        return data.decode("utf-8", errors="replace")
    if hashlib.sha256(data).hexdigest() != sealed:
        raise _tampered(slug, path, "differs from the config bot-bottle handed the bundle")
    return data.decode("utf-8")


def _tampered(slug: str, path: Path, what: str) -> BottleError:
    return BottleError(
        f"{path} {what}: its bundle (which can write the bottle's state dir) changed it, "
        "and may have been taken over by the agent's traffic; the bundle was not started",
        fix=f"remove the bottle (`bottle-engine stop --rm {slug}`) and launch it again",
    )
