"""The git configs a launch copies into the sandbox, read for credentials.

A clone made with a token in its url (`https://x-access-token:TOKEN@github.com/...`, as forges
and CI scripts write it) keeps the token in `.git/config`; so does an `insteadOf` rewrite or an
`http.extraHeader` carrying an Authorization. Copied into /workspace, it lets the agent push
straight to the forge through any allowed host that is the forge, past the git gate, whose
point is that the agent holds no key of the upstream. A launch whose copy holds one is refused.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError
from bottle_engine.git import GitError, run_git, url_credential

_CONFIG_NAMES = ("config", "config.worktree")


@dataclass(frozen=True)
class CopiedCredential:
    """Where a credential stands: the config file (in the copy) and the key, shown without it."""

    config: str
    key: str


def config_files(names: Iterable[str]) -> list[str]:
    """Those of the file `names` of a copy that `copied_credentials` reads: each git config
    and the `HEAD` beside it (for a copy not yet made into one tar)."""
    listed = {name.removeprefix("./") for name in names}
    found = []
    for name in sorted(listed):
        directory, base = posixpath.split(name)
        head = posixpath.join(directory, "HEAD")
        if base in _CONFIG_NAMES and head in listed:
            found += [name, head]
    return sorted(set(found))


def refuse_credentials(tree: bytes, place: str, way_out: str) -> None:
    """A `BottleError` naming each credential in the git configs of the copy `tree` (a config
    named as it lies under `place`); `way_out` ends the fix."""
    found = copied_credentials(tree)
    if not found:
        return
    where = ", ".join(f"{safe_text(f'{place}/{c.config}')} ({safe_text(c.key)})" for c in found)
    raise BottleError(
        f"the git config the launch would copy into the bottle holds a credential: {where}. "
        "The agent would push with it straight to the forge, past the git gate, or use it "
        "wherever its host is allowed",
        fix="take the token out of the url (`git remote set-url origin https://HOST/PATH`) and "
        "keep it in a credential helper outside the project (`git config --global "
        "credential.helper`); for the bottle's own pushes, name the upstream in bottle.toml "
        f"(`[[bottles.NAME.git]]`); or {way_out}",
    )


def copied_credentials(tree: bytes) -> list[CopiedCredential]:
    """The credentials in the git configs of the copy `tree` (a tar): a config is a file named
    `config` or `config.worktree` beside a `HEAD`, in any git directory of the copy."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        files = {member.name.removeprefix("./"): member for member in archive.getmembers()}
        for name, member in files.items():
            directory, base = posixpath.split(name)
            head = posixpath.join(directory, "HEAD")
            if base not in _CONFIG_NAMES or not member.isfile() or head not in files:
                continue
            reader = archive.extractfile(member)
            assert reader is not None  # a regular file
            try:
                keys = list(_credential_keys(reader.read()))
            except GitError as exc:
                raise BottleError(
                    f"git cannot read the config {safe_text(name)} that the launch would copy "
                    "into the bottle, to look for credentials in it",
                    fix="repair it (`git config --list` in that repository says where), or set "
                    "`copy_cwd = false` for the agent",
                ) from exc
            found += [CopiedCredential(name, key) for key in keys]
    return found


def _credential_keys(config: bytes) -> Iterator[str]:
    """The keys of `config` that hold a credential, each with the credential cut out."""
    with tempfile.NamedTemporaryFile(prefix="bottle-git-config-") as copy:
        copy.write(config)
        copy.flush()
        # Read as git reads it (sections, quoting, continuation lines), its includes left out:
        # they name files of the host, not of the copy.
        listing = run_git(
            ["config", "--file", copy.name, "--no-includes", "--list", "-z"],
            doing="reading a git config the launch copies",
        ).stdout
    for entry in listing.split("\0"):
        key, _, value = entry.partition("\n")
        if not key:
            continue
        _, _, rest = key.partition(".")
        subsection, _, name = rest.rpartition(".")
        secret = url_credential(value) or (url_credential(subsection) if subsection else None)
        if name.lower() == "extraheader" and value.strip():
            secret = secret or value
        if secret:
            yield key.replace(secret, "***")
