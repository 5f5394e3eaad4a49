"""The one thin layer around the `git` CLI.

Every other module runs git through `run_git`, so that a missing binary or a failing command
becomes one `BottleError` naming what we were doing, with git's own message in it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bottle_engine.errors import BottleError

ZERO_OID = "0" * 40

# `user@host:path` / `host:path` (scp-like syntax): git treats these as ssh when there is no
# "://" and the colon comes before the first slash.
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^/:]+:(?!//)")


class GitError(BottleError):
    """A git command failed; `stderr` holds git's own explanation."""

    def __init__(self, message: str, *, stderr: str = "", fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.stderr = stderr


def run_git(
    args: Sequence[str],
    *,
    doing: str,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` and return the finished process (text mode).

    `env` entries are added to (not replacing) the inherited environment, so that a hook's
    quarantine variables reach the git commands it runs. With `check`, a non-zero exit raises
    `GitError` whose message starts with `doing`.

    A repository is used only where it is named (`git_dir`, ``GIT_DIR``) or found as a ``.git``:
    a directory of a project's files that looks like a bare repository (HEAD, config, objects/)
    is otherwise taken for one, and its config (``gpg.program``, ``core.fsmonitor``) runs
    commands of whoever committed it.
    """
    command = ["git", "-c", "safe.bareRepository=explicit"]
    if git_dir is not None:
        command.append(f"--git-dir={git_dir}")
    command.extend(args)
    full_env = {**os.environ, **(env or {})}
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=full_env,
            input=input_text,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
    except FileNotFoundError as exc:
        raise _not_installed(doing) from exc
    if check and result.returncode != 0:
        detail = result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}"
        raise GitError(f"{doing}: {detail}", stderr=result.stderr)
    return result


def output_lines(text: str) -> list[str]:
    """The lines of git's output (or input it reads a line each), split at "\n" alone, as git
    writes them: a ref name or a path may hold a U+2028, U+2029 or U+0085 (git allows any
    non-ASCII), where `str.splitlines` also splits, and one name the agent chose read as two
    lines, the second of them whatever it spelt."""
    return [line for line in text.split("\n") if line]


def is_ancestor(git_dir: Path, ancestor: str, descendant: str) -> bool:
    """Whether `ancestor` is reachable from `descendant` (a fast-forward from one to the other)."""
    result = run_git(
        ["merge-base", "--is-ancestor", ancestor, descendant],
        doing=f"checking whether {ancestor[:12]} is an ancestor of {descendant[:12]}",
        git_dir=git_dir,
        check=False,
    )
    if result.returncode in (0, 1):
        return result.returncode == 0
    raise GitError(f"checking ancestry of {descendant[:12]}: {result.stderr.strip()}")


@dataclass(frozen=True)
class ObjectInfo:
    """What `git cat-file --batch-check` says about one object."""

    oid: str
    type: str  # "commit", "tree", "blob", "tag", or "missing"
    size: int


def batch_check(git_dir: Path, format: str, queries: Sequence[str], *, doing: str) -> list[str]:
    """`git cat-file --batch-check=FORMAT`'s answer line for each query (an object name, or
    `commit:path`), in order; a query it does not find answers "<query> missing"."""
    if not queries:
        return []
    output = run_git(
        ["cat-file", f"--batch-check={format}"],
        doing=doing,
        git_dir=git_dir,
        input_text="".join(f"{query}\n" for query in queries),
    ).stdout
    lines = output_lines(output)
    if len(lines) != len(queries):
        raise GitError(f"{doing}: git answered {len(lines)} lines for {len(queries)} queries")
    return lines


def object_infos(git_dir: Path, oids: Sequence[str]) -> list[ObjectInfo]:
    """Type and size of each object, in order, without reading any content."""
    lines = batch_check(
        git_dir,
        "%(objectname) %(objecttype) %(objectsize)",
        oids,
        doing="reading object types",
    )
    infos = []
    for oid, line in zip(oids, lines, strict=True):
        fields = line.split()
        if len(fields) == 2 and fields[1] == "missing":
            infos.append(ObjectInfo(oid, "missing", 0))
        else:
            infos.append(ObjectInfo(fields[0], fields[1], int(fields[2])))
    return infos


def read_objects(git_dir: Path, oids: Sequence[str]) -> Iterator[tuple[ObjectInfo, bytes]]:
    """The content of each object as bytes, streamed one object at a time (``cat-file --batch``).

    The object names go in through a file rather than a pipe, so that git never waits on us to
    read while we wait on it to read."""
    if not oids:
        return
    with tempfile.TemporaryFile() as names:
        names.write("".join(f"{oid}\n" for oid in oids).encode())
        names.seek(0)
        command = ["git", f"--git-dir={git_dir}", "cat-file", "--batch"]
        yield from _batch_contents(command, names, len(oids), doing="reading objects")


def read_stored_objects(
    objects_dir: Path, *, max_size: int | None = None, object_format: str = "sha1"
) -> Generator[tuple[ObjectInfo, bytes]]:
    """Every object stored in `objects_dir`, reachable or not, loose or packed (deltas
    resolved), with its content; one larger than `max_size` bytes raises `GitError`.

    git reads the directory as the object store of an empty repository of ours, of the
    store's `object_format` (a repository of the other passes over its objects), so no
    repository's config (which can name commands to run) is read."""
    with tempfile.TemporaryDirectory(prefix="bottle-objects-") as scratch:
        run_git(
            ["init", "-q", "--bare", f"--object-format={object_format}", scratch],
            doing=f"reading the git objects in {objects_dir}",
        )
        command = ["git", f"--git-dir={scratch}", "cat-file"]
        command += ["--batch-all-objects", "--unordered", "--batch"]
        env = {**os.environ, "GIT_OBJECT_DIRECTORY": str(objects_dir)}
        doing = f"reading the git objects in {objects_dir}"
        yield from _batch_contents(
            command, subprocess.DEVNULL, None, doing=doing, env=env, max_size=max_size
        )


def stream_object(
    git_dir: Path, info: ObjectInfo, piece: int = 8 * 1024 * 1024
) -> Generator[bytes]:
    """The content of one object, `piece` bytes at a time (an object too large to hold whole)."""
    doing = f"reading the {info.type} {info.oid}"
    command = ["git", f"--git-dir={git_dir}", "cat-file", info.type, info.oid]
    with _reading(command, doing=doing) as git:
        read = 0
        while data := git.stdout.read(piece):
            read += len(data)
            yield data
        if git.process.wait() != 0 or read != info.size:
            raise GitError(f"{doing}: {git.said() or 'git stopped short'}")


def _batch_contents(
    command: list[str],
    stdin: IO[bytes] | int,
    count: int | None,
    *,
    doing: str,
    env: Mapping[str, str] | None = None,
    max_size: int | None = None,
) -> Iterator[tuple[ObjectInfo, bytes]]:
    """The objects `cat-file --batch` (`command`) answers with: `count` of them, or (None) as
    many as it writes; a git that fails or stops short raises `GitError`."""
    with _reading(command, doing=doing, stdin=stdin, env=env) as git:
        read = 0
        while count is None or read < count:
            line = git.stdout.readline()
            if not line and count is None and git.process.wait() == 0:
                return
            header = line.decode("ascii", "replace").split()
            if len(header) != 3:
                raise GitError(
                    f"{doing}: {git.said() or f'unexpected answer from git: {header!r}'}"
                )
            info = ObjectInfo(header[0], header[1], int(header[2]))
            if max_size is not None and info.size > max_size:
                raise GitError(
                    f"{doing}: the {info.type} {info.oid} is {info.size} bytes, more than "
                    f"the {max_size} read whole"
                )
            content = git.stdout.read(info.size)
            git.stdout.read(1)  # the newline after each object
            if len(content) != info.size:
                raise GitError(f"{doing}: git stopped short in object {info.oid}")
            read += 1
            yield info, content


@dataclass
class _Reader:
    """A git process whose output is read as it comes; what it said on stderr, on demand."""

    process: subprocess.Popen[bytes]
    stdout: IO[bytes]
    errors: IO[bytes]

    def said(self) -> str:
        self.errors.seek(0)
        return self.errors.read().decode(errors="replace").strip()


@contextlib.contextmanager
def _reading(
    command: list[str],
    *,
    doing: str,
    stdin: IO[bytes] | int = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
) -> Iterator[_Reader]:
    """Start `command` with its stderr in a temporary file (a pipe could fill and stall git
    while we read stdout); on leaving, git is stopped, whether or not it finished."""
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                command, stdin=stdin, stdout=subprocess.PIPE, stderr=errors, env=env
            )
        except FileNotFoundError as exc:
            raise _not_installed(doing) from exc
        assert process.stdout is not None
        try:
            yield _Reader(process, process.stdout, errors)
        finally:
            process.stdout.close()
            process.kill()
            process.wait()


def _not_installed(doing: str) -> GitError:
    return GitError(
        f"{doing}: the `git` command is not installed",
        fix="install git (e.g. `apt-get install git`)",
    )


def toplevel(directory: Path) -> Path | None:
    """The root of the git work tree holding `directory`, or None outside one (or without git)."""
    try:
        result = run_git(
            ["rev-parse", "--show-toplevel"],
            doing="finding the repository",
            cwd=directory,
            check=False,
        )
    except GitError:
        return None
    return Path(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else None


def is_ssh_url(url: str) -> bool:
    """Whether git would reach `url` over ssh (``ssh://``, ``git+ssh://`` or scp-like syntax)."""
    if "://" in url:
        return url.split("://", 1)[0] in ("ssh", "git+ssh", "ssh+git")
    return bool(_SCP_LIKE.match(url))


def is_local_url(url: str) -> bool:
    """Whether `url` names a repository on this machine (a path or ``file://``)."""
    return url.startswith("file://") or ("://" not in url and not is_ssh_url(url))


# `TRANSPORT::ADDRESS`: git hands ADDRESS to the remote helper git-remote-TRANSPORT (`ext::`,
# `https::https://...`), whose idea of a host no reading here shares.
_REMOTE_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
# Characters after which git, ssh and curl no longer agree on where the host part ends or what it
# holds: git decodes `%40` to '@' before ssh sees it, curl ends the userinfo at a backslash that a
# URL parser keeps, git and curl end the authority at '?' or '#' differently, and git reads
# brackets in the scp-like form as the whole host.
_UNCLEAR_IN_AUTHORITY = re.compile(r"[\\%?#\[\]]")
_IPV6_LITERAL = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::[0-9]*)?$")


class UnclearHostError(ValueError):
    """A git url whose host the programs that reach it (git, ssh, curl) may read differently."""


def upstream_host(url: str) -> str | None:
    """The host git reaches for upstream `url`, in lower case; None for a repository on the
    bundle's own file system. What a review names as the upstream and what the gate connects
    to both come from here: a url whose host part git, ssh or curl could read otherwise (a
    second '@', `%40`, a backslash, brackets, a remote helper) raises `UnclearHostError`, so
    that no way of writing the host shows one name and reaches another."""
    if _REMOTE_HELPER.match(url):
        raise UnclearHostError("a remote helper's address (TRANSPORT::...)")
    if is_local_url(url):
        return None
    scheme = "://" in url  # else scp-like: [user@]host:path
    authority = url.split("://", 1)[1].split("/", 1)[0] if scheme else url.split(":", 1)[0]
    userinfo, _, hostport = authority.rpartition("@")
    ipv6 = _IPV6_LITERAL.match(hostport) if scheme else None
    if "@" in userinfo or _UNCLEAR_IN_AUTHORITY.search(userinfo if ipv6 else authority):
        raise UnclearHostError(
            f"the host part {authority!r} reads differently to git, ssh and curl"
        )
    host = ipv6.group(1) if ipv6 else hostport.split(":", 1)[0]
    if not host:
        raise UnclearHostError("no host")
    return host.lower()


# A user name alone is a credential when it is a token (`https://TOKEN@github.com/...`), not a
# login (`git`, `oauth2`, `x-access-token`, `gitlab-ci-token`); tokens are longer.
MIN_TOKEN_USER = 16


def url_credential(url: str) -> str | None:
    """The credential an upstream `url` carries for git to send (`https://user:TOKEN@host/`,
    or `https://TOKEN@host/` with a user of `MIN_TOKEN_USER` characters or more), which only
    the bundle is to hold; None without one (ssh authenticates with the `identity`). A remote
    helper's address (`https::https://user:TOKEN@host/`) is read as the helper is handed it."""
    url = _REMOTE_HELPER.sub("", url, count=1)
    if "://" not in url or is_ssh_url(url):
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        return parts.password
    user = parts.username or ""
    return user if len(user) >= MIN_TOKEN_USER else None


def upstream_place(url: str, show: Callable[[str], str] = str) -> str:
    """Where the gate connects for `url`, in the words the trust review and the editor use
    (`show` formats the host, e.g. as a markdown code span)."""
    try:
        host = upstream_host(url)
    except UnclearHostError:  # refused by validation and by the gate; a record may predate that
        return "on a host git, ssh and curl may read differently"
    return "on the bundle's own file system" if host is None else f"on host {show(host)}"


def ssh_command(identity_file: str | None, known_hosts_file: str) -> str:
    """A ``GIT_SSH_COMMAND`` that uses only the given key and trusts only the given host keys.

    The user's ssh config, agent and global known hosts are ignored, so nothing but the bottle's
    own identity and pinned host key decide whether the connection is made.
    """
    parts = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts_file}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentityAgent=none",
    ]
    if identity_file:
        parts += ["-o", "IdentitiesOnly=yes", "-i", identity_file]
    return shlex.join(parts)


def spawn_git(args: Sequence[str], *, doing: str) -> subprocess.Popen[bytes]:
    """Start a long-running git process (``git daemon``); output goes to our own stdout/stderr."""
    try:
        return subprocess.Popen(["git", *args])
    except FileNotFoundError as exc:
        raise _not_installed(doing) from exc
