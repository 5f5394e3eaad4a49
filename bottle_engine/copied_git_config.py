"""The git configs a launch copies into the sandbox, read for credentials.

A clone made with a token in its url (`https://x-access-token:TOKEN@github.com/...`, as forges
and CI scripts write it) keeps the token in `.git/config`; so does an `insteadOf` rewrite, an
`http.extraHeader` carrying an Authorization, or a credential helper written with the password
in it; a `store --file`, cookie file or askpass program in the project, or a `.git-credentials`
store, holds one beside it. Copied into /workspace, it lets the agent push
straight to the forge through any allowed host that is the forge, past the git gate, whose
point is that the agent holds no key of the upstream. A launch whose copy holds one is refused.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError
from bottle_engine.git import GitError, run_git, url_credential

_CONFIG_NAMES = ("config", "config.worktree")
# A person's own config, beside no HEAD: copied by a launch from the home directory (or kept
# in a project for `[include]`), it is where a token's `insteadOf` usually stands.
_USER_CONFIG = ".gitconfig"
_XDG_CONFIG = ".config/git/config"
_SUBMODULES = ".gitmodules"  # committed with a project: `git submodule update` uses its urls
# `git credential-store`'s files, each token a url on a line of its own.
_STORE = ".git-credentials"
_XDG_STORE = ".config/git/credentials"
_USERINFO = re.compile(r"://[^/?#]*@")  # a url's user and password, shown as ***
# A credential helper that answers with a password it holds (`!f() { echo password=TOKEN; }; f`,
# as CI scripts write it); `password=$VAR` reads one from the environment at the time.
_INLINE_PASSWORD = re.compile(r"password=[\"']?(?!\$)\S", re.IGNORECASE)
# Settings naming a file git answers a server's challenge from: a cookie, a program that
# prints the password, a client certificate's key.
_CREDENTIAL_FILES = {("http", "cookiefile"), ("core", "askpass"), ("http", "sslkey")}
MAX_INCLUDE_DEPTH = 10  # git's own bound on nested includes


@dataclass(frozen=True)
class CopiedCredential:
    """Where a credential stands: the config file (in the copy) and the key, shown without it."""

    config: str
    key: str


def refuse_credentials(
    files: Collection[str], read: Callable[[str], bytes], place: str, way_out: str
) -> None:
    """A `BottleError` naming each credential in the git configs among the regular `files`
    of a copy (`read` gives one's bytes; a config is named as it lies under `place`);
    `way_out` ends the fix."""
    found = copied_credentials(files, read)
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


def refuse_credentials_in_tree(archive: tarfile.TarFile, place: str, way_out: str) -> None:
    """`refuse_credentials` for a copy made into a tar (`archive`, open)."""
    members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}

    def read(name: str) -> bytes:
        reader = archive.extractfile(members[name])
        assert reader is not None  # a regular file
        return reader.read()

    refuse_credentials(members, read, place, way_out)


def copied_credentials(
    files: Collection[str], read: Callable[[str], bytes]
) -> list[CopiedCredential]:
    """The credentials in the git configs among `files`: a config is a file named `config`
    or `config.worktree` beside a `HEAD`, in any git directory of the copy, a person's own
    (`.gitconfig`, `.config/git/config`), a project's `.gitmodules`, and each file of the copy
    it includes (`include.path`, `includeIf.*.path`) by a relative path (a person's own: or
    by `~/`); and each credential in a `git credential-store` file of the copy."""
    found = [
        CopiedCredential(name, f"a stored credential for {host}")
        for name in files
        if posixpath.basename(name) == _STORE or _in_place(name, _XDG_STORE)
        for host in _stored_hosts(read(name))
    ]
    configs = [
        name
        for name in files
        if _user_home(name) is not None
        or posixpath.basename(name) == _SUBMODULES
        or (
            posixpath.basename(name) in _CONFIG_NAMES
            and posixpath.join(posixpath.dirname(name), "HEAD") in files
        )
    ]
    seen: set[str] = set()
    for _ in range(MAX_INCLUDE_DEPTH + 1):
        included = []
        for name in configs:
            if name in seen:
                continue
            seen.add(name)
            entries = _entries(read(name), name)
            found += [CopiedCredential(name, key) for key in _credential_keys(entries)]
            included += _included(name, entries, files)
        if not included:
            break
        configs = included
    return found


def _stored_hosts(store: bytes) -> list[str]:
    """The host of each url in a credential store that carries a credential."""
    lines = store.decode(errors="replace").splitlines()
    return [
        urllib.parse.urlsplit(line.strip()).hostname or "?"
        for line in lines
        if url_credential(line.strip())
    ]


def _entries(config: bytes, name: str) -> list[tuple[str, str]]:
    """(key, value) of each setting in `config`, read as git reads it (sections, quoting,
    continuation lines), its includes not followed (`_included` follows those in the copy)."""
    with tempfile.NamedTemporaryFile(prefix="bottle-git-config-") as copy:
        copy.write(config)
        copy.flush()
        try:
            listing = run_git(
                ["config", "--file", copy.name, "--no-includes", "--list", "-z"],
                doing="reading a git config the launch copies",
            ).stdout
        except GitError as exc:
            raise BottleError(
                f"git cannot read the config {safe_text(name)} that the launch would copy into "
                "the bottle, to look for credentials in it",
                fix="repair it (`git config --list` in that repository says where), or set "
                "`copy_cwd = false` for the agent",
            ) from exc
    pairs = (entry.partition("\n") for entry in listing.split("\0"))
    return [(key, value) for key, _, value in pairs if key]


def _user_home(name: str) -> str | None:
    """The directory of the copy that is `~` to a person's own config `name` (None: `name` is
    not one), where its `~/` includes are found."""
    if posixpath.basename(name) == _USER_CONFIG:
        return posixpath.dirname(name) or "."
    if _in_place(name, _XDG_CONFIG):
        return name.removesuffix(_XDG_CONFIG).rstrip("/") or "."
    return None


def _in_place(name: str, place: str) -> bool:
    """Is `name` the file at `place` in a home directory (the copy's root, or one in it)?"""
    return name == place or name.endswith(f"/{place}")


def _included(name: str, entries: list[tuple[str, str]], files: Collection[str]) -> list[str]:
    """The files of the copy that the config `name` includes: a relative path is taken from
    the config's own directory, `~/` from a person's own config's home (an absolute one, or
    `~` in a repository's config, names a file the copy does not hold)."""
    found = []
    home = _user_home(name)
    for key, value in entries:
        section, _, rest = key.lower().partition(".")
        if section not in ("include", "includeif") or not rest.endswith("path"):
            continue
        if value.startswith("~/") and home is not None:
            target = posixpath.normpath(posixpath.join(home, value[2:]))
        elif value.startswith(("/", "~")):
            continue
        else:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), value))
        if target in files:
            found.append(target)
    return found


def _credential_keys(entries: list[tuple[str, str]]) -> Iterator[str]:
    """The keys of `entries` that hold a credential, each with the credential cut out."""
    for key, value in entries:
        _, _, rest = key.partition(".")
        subsection, _, name = rest.rpartition(".")
        secret = url_credential(value) or (url_credential(subsection) if subsection else None)
        if name.lower() == "extraheader" and value.strip():
            secret = secret or value
        if secret:  # a url's user may be the token, its password a word (`x-oauth-basic`)
            yield _USERINFO.sub("://***@", key).replace(secret, "***")
        elif _keeps_credential(key.partition(".")[0].lower(), name.lower(), value):
            yield key


def _keeps_credential(section: str, name: str, value: str) -> bool:
    """Does the setting `section`.`name` give git a credential the copy holds: a helper that
    answers with a password of its own, or one (`store --file`) or a file of
    `_CREDENTIAL_FILES` at a path in the project (relative: git takes it from the work tree)."""
    if (section, name) in _CREDENTIAL_FILES:
        return _in_project(value)
    if section != "credential" or name != "helper":
        return False
    if _INLINE_PASSWORD.search(value):
        return True
    try:
        words = shlex.split(value)
    except ValueError:  # quoting the shell would not take either
        return False
    if not words or words[0] not in ("store", "git-credential-store"):
        return False
    for index, word in enumerate(words):
        if word == "--file" and index + 1 < len(words):
            return _in_project(words[index + 1])
        if word.startswith("--file="):
            return _in_project(word.removeprefix("--file="))
    return False


def _in_project(path: str) -> bool:
    """Is `path`, as git takes it (relative to the work tree, `~` expanded), in the copy?"""
    return bool(path.strip()) and not path.startswith(("/", "~"))
