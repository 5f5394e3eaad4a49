"""One bottle's state dir: the names and permissions of everything in it.

The dir is the bundle's config, secrets and git keys (mounted read-only into the bundle), the
proxy's audit log and CA, the readiness file, the approval requests and
the git gate's log and mirrors. It is mounted read-write into the bundle (at `STATE_MOUNT`) and
never into the agent. Every host-side reader and writer finds a file here, so a name is spelled
once; the names the bundle also uses are the constants of `bundle/config.py` (its contract).
The engine's record of the bottle is not here (records.py): the bundle may replace any file in
a dir it mounts read-write, and the engine acts on what a record names.

Permissions: the dir and every dir the engine makes in it are 0700, every file it writes 0600,
so no other host account reads a secret or an approval whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from bottle_engine.bundle.config import (
    APPROVALS_DIR_NAME,
    APPROVALS_LOG_NAME,
    CA_CERT_NAME,
    CA_DIR_NAME,
    CONFIG_FILE_NAME,
    EGRESS_LOG_NAME,
    GIT_GATE_LOG_NAME,
    GIT_GATE_REPOS_NAME,
    READY_FILE_NAME,
    git_identity_name,
    git_known_hosts_name,
)
from bottle_engine.errors import BottleError
from bottle_engine.regular_files import read_regular

SECRETS_DIR_NAME = "secrets"  # one 0600 file per secret value
GIT_KEYS_DIR_NAME = "git-keys"  # identity files and known_hosts of git upstreams
UPSTREAM_CA_NAME = "upstream-ca.pem"  # the bottle's [egress] upstream_ca, checked and copied
ACCOUNTS_DIR_NAME = "accounts"  # the bundle's passwd and group (engine running as root)
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


MAX_SLUG_BYTES = 200  # the engine's own slugs are under 60; a file name may have 255


def checked_slug(slug: str) -> str:
    """`slug`, when it can name a bottle: it comes from the command line and the editor, and a
    name with a path in it would reach a dir or record outside the state root's."""
    too_long = len(os.fsencode(slug)) > MAX_SLUG_BYTES
    if not slug or slug.startswith(".") or "/" in slug or "\0" in slug or too_long:
        raise BottleError(
            f"{slug!r} is not a bottle's name", fix="`bottle-engine ls` lists bottles"
        )
    return slug


class _Entry:
    """A path of fixed name in a bottle's dir, read as an attribute: `bottle_dir.egress_log` is
    ``bottle_dir.path / EGRESS_LOG_NAME``. One line per name, so each name is spelled once."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, bottle_dir: BottleDir, owner: type[BottleDir] | None = None) -> Path:
        return bottle_dir.path.joinpath(*self.parts)


@dataclass(frozen=True)
class BottleDir:
    """The state dir at `path` (a host path, or `STATE_MOUNT` inside the bundle)."""

    path: Path

    @classmethod
    def of(cls, slug: str) -> BottleDir:
        """Bottle `slug`'s dir under the state root (it need not exist)."""
        from bottle_engine import state  # host only: the state root comes from the settings

        return cls(state.bottle_dir(checked_slug(slug)))

    @classmethod
    def create(cls, slug: str) -> BottleDir:
        """`of(slug)`, made (or tightened) 0700, with the state root and bottles/ too."""
        from bottle_engine import state

        return cls(state.make_bottle_dir(checked_slug(slug)))

    # -- the names (each a `_Entry`: the path of one fixed name in this dir) -------------------
    bundle_config = _Entry(CONFIG_FILE_NAME)
    egress_log = _Entry(EGRESS_LOG_NAME)
    ca_dir = _Entry(CA_DIR_NAME)
    ca_cert = _Entry(CA_DIR_NAME, CA_CERT_NAME)  # the bottle's CA (no key); the agent trusts it
    ready_file = _Entry(READY_FILE_NAME)
    secrets_dir = _Entry(SECRETS_DIR_NAME)
    git_keys_dir = _Entry(GIT_KEYS_DIR_NAME)
    upstream_ca = _Entry(UPSTREAM_CA_NAME)
    approvals_dir = _Entry(APPROVALS_DIR_NAME)
    approvals_log = _Entry(APPROVALS_LOG_NAME)
    git_gate_log = _Entry(GIT_GATE_LOG_NAME)
    git_gate_repos = _Entry(GIT_GATE_REPOS_NAME)
    accounts_dir = _Entry(ACCOUNTS_DIR_NAME)

    def secret_file(self, name: str) -> Path:
        return self.secrets_dir / _plain_name(name, "secret")

    def git_identity(self, upstream: str) -> Path:
        return self.git_keys_dir / git_identity_name(_plain_name(upstream, "git upstream"))

    def git_known_hosts(self, upstream: str) -> Path:
        return self.git_keys_dir / git_known_hosts_name(_plain_name(upstream, "git upstream"))

    # -- the permissions -----------------------------------------------------------------------
    def private_subdir(self, directory: Path) -> Path:
        """Make `directory` (inside this dir) 0700, also when it existed; returns it. A symlink
        in its place (the bundle writes in this dir) is refused, never followed to chmod or
        fill what it points at."""
        if directory.is_symlink():
            raise BottleError(
                f"{directory} is a symbolic link, not the directory bot-bottle made",
                fix=f"remove it (`rm {directory}`), or the bottle (`bottle-engine stop --rm`)",
            )
        directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        directory.chmod(PRIVATE_DIR_MODE)
        return directory

    def write_private(self, path: Path, data: bytes | str) -> Path:
        """Write `data` to `path` (inside this dir) as a 0600 file, also when it existed; a
        symlink planted in its place is refused, never followed. Returns `path`."""
        raw = data.encode() if isinstance(data, str) else data
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        try:
            descriptor = os.open(path, flags, PRIVATE_FILE_MODE)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise BottleError(
                f"{path} is a symbolic link, not a file bot-bottle wrote: nothing written",
                fix=f"remove it (`rm {path}`), or the bottle (`bottle-engine stop --rm`)",
            ) from exc
        with os.fdopen(descriptor, "wb") as out:
            os.fchmod(out.fileno(), PRIVATE_FILE_MODE)
            out.write(raw)
        return path

    def remove(self) -> None:
        """The dir and all in it; a warm pool bottle's link and its member's dir both."""
        from bottle_engine import state

        state.remove_bottle_path(self.path)


def read_regular_files(directory: Path, limit: int) -> dict[str, bytes]:
    """The regular files directly in `directory`, a dir in a bottle's state dir (which its
    bundle can write at any time), by name: the dir and each file are opened without following
    a link, and a link, FIFO or device, or a file over `limit` bytes, is left out unread.
    OSError when `directory` is missing or is itself a link."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    found: dict[str, bytes] = {}
    try:
        for name in sorted(os.listdir(fd)):
            with contextlib.suppress(OSError):  # a link, FIFO, device or oversized file
                found[name] = read_regular(name, limit, dir_fd=fd)
    finally:
        os.close(fd)
    return found


def _plain_name(name: str, what: str) -> str:
    """`name` as one file name: a name with a path in it would put a file outside its dir."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise BottleError(
            f"{what} name {name!r} cannot name a file in the bottle's state dir",
            fix="use letters, digits, '-' and '_' in the name in bottle.toml",
        )
    return name
