"""The digests of what the engine handed a bottle's bundle, kept where no container mounts.

The bundle reads its config (`bundle.json`) from the bottle's state dir, which is mounted
read-write into it: a bundle the agent's traffic took over could rewrite it (widen the
allowlist, bind a secret to another host) and the fresh bundle the next `resume` starts would
obey it. So the engine keeps the SHA-256 of the config it wrote beside the bottle's record
(`<state>/records/<slug>.config-sha256`), and `resume` and `probe` refuse a config that differs.

The other files handed over there (secret values, git keys and known hosts, the upstream CA)
are sealed the same way, one digest each (`<slug>.handed-sha256`, JSON: a `.json` name there
is a record): `resume` refuses a fresh bundle on values or keys the old one chose, and `probe`,
which looks for the secret values in the agent's sandbox, refuses to look for a decoy the
bundle wrote in place of a value it leaked.

A person's answers to approval requests are written into that dir too, and the bundle reads
them from there: the engine also keeps the key of each answer it wrote
(`<slug>.answers`, `ApprovalRequest.answer_key`), and `resume` removes any approval no person
gave before the fresh bundle starts, and every egress approval (it stood for the stopped bundle's
life: a key shows that a person gave an answer, not that no proxy has used it yet).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

from bottle_engine import state
from bottle_engine.approvals import ApprovalRequest, ApprovalStore
from bottle_engine.bottle_dir import (
    GIT_KEYS_DIR_NAME,
    SECRETS_DIR_NAME,
    UPSTREAM_CA_NAME,
    BottleDir,
    checked_slug,
)
from bottle_engine.errors import BottleError
from bottle_engine.regular_files import parent_beneath, read_regular

# Far above any config the engine writes; a larger file is not one of ours.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# Far above any secret value, key or CA file the engine hands over.
MAX_HANDED_BYTES = 1024 * 1024
# What the engine hands the bundle besides its config: the files directly in these dirs of the
# state dir, and these files.
HANDED_DIRS = (SECRETS_DIR_NAME, GIT_KEYS_DIR_NAME)
HANDED_FILES = (UPSTREAM_CA_NAME,)


def seal_path(slug: str) -> Path:
    return state.records_dir() / f"{checked_slug(slug)}.config-sha256"


def handed_seal_path(slug: str) -> Path:
    return state.records_dir() / f"{checked_slug(slug)}.handed-sha256"


def seal(slug: str, digest: str) -> None:
    """Remember `digest` (`bundle.waiting.config_digest` of the config text) for bottle `slug`,
    in the records dir."""
    state.write_private_text(seal_path(slug), digest + "\n")


def handed_digests(directory: Path) -> dict[str, str]:
    """The SHA-256 of each file the engine hands a bundle, by path relative to `directory`:
    a dir no bundle has run on yet (a fresh bottle's, or the warm pool's staging dir)."""
    found = {}
    for name in HANDED_DIRS:
        if (directory / name).is_dir():
            for path in sorted((directory / name).iterdir()):
                found[f"{name}/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in HANDED_FILES:
        if (directory / name).is_file():
            found[name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    return found


def seal_handed(slug: str, digests: dict[str, str]) -> None:
    """Remember `digests` (`handed_digests`) for bottle `slug`, as `seal` does."""
    text = json.dumps(digests, indent=2, sort_keys=True) + "\n"
    state.write_private_text(handed_seal_path(slug), text)


def answers_path(slug: str) -> Path:
    return state.records_dir() / f"{checked_slug(slug)}.answers"


def forget(slug: str) -> None:
    seal_path(slug).unlink(missing_ok=True)
    handed_seal_path(slug).unlink(missing_ok=True)
    answers_path(slug).unlink(missing_ok=True)


def vouch_answer(slug: str, answered: ApprovalRequest) -> None:
    """Remember that a person gave `answered` (appended, 0600, in the records dir)."""
    path = answers_path(slug)
    state.private_dir(path.parent)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o600), "a") as out:
        out.write(answered.answer_key + "\n")


def drop_unvouched_approvals(slug: str, bottle_dir: BottleDir) -> list[ApprovalRequest]:
    """Remove from bottle `slug`'s approvals dir every approval no person gave (its bundle
    stopped meanwhile); the requests removed."""
    try:
        vouched = set(answers_path(slug).read_text().split())
    except FileNotFoundError:
        vouched = set()
    store = ApprovalStore(bottle_dir.path, slug)
    # An egress approval stands until the bundle stops, and the request it held went with
    # that bundle: none is kept. A vouched key is no proof that the answer is still unused:
    # the old bundle wrote an approval its proxy had already taken back into the dir, as it
    # was, and the fresh bundle's proxy took it again.
    return store.drop_approvals(
        lambda request: request.kind != "egress" and request.answer_key in vouched
    )


def checked_handed_files(slug: str, bottle_dir: BottleDir) -> dict[str, bytes] | None:
    """The files the engine handed bottle `slug`'s bundle, by relative path, each as the engine
    wrote it, or `BottleError` naming the first one the bundle replaced, linked, removed or
    rewrote. None for a bottle launched before they were sealed."""
    try:
        sealed = json.loads(handed_seal_path(slug).read_text())
    except FileNotFoundError:
        return None
    found = {}
    for relative, digest in sorted(sealed.items()):
        path = bottle_dir.path / relative
        try:
            data = _read_handed(bottle_dir.path, PurePosixPath(relative))
        except OSError as exc:
            what = "is missing, a symbolic link or not a regular file"
            raise _tampered(slug, path, what) from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise _tampered(slug, path, "differs from the file bot-bottle handed the bundle")
        found[relative] = data
    return found


def _read_handed(root: Path, relative: PurePosixPath) -> bytes:
    """`root`/`relative`, no component below `root` followed if it is a link."""
    with parent_beneath(root, relative) as parent:
        return read_regular(relative.name, MAX_HANDED_BYTES, dir_fd=parent)


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
        "and may have been taken over by the agent's traffic; bot-bottle did not use it",
        fix=f"remove the bottle (`bottle-engine stop --rm {slug}`) and launch it again",
    )
