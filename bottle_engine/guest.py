"""What the launch puts inside the sandbox: prompt, CA certificates, Claude Code settings
(their content: `claude_code.py`).

`guest_files` is pure (plan + inputs -> files); backends copy the result in with their own
transport (docker: an archive before start; smolmachines: files in the guest).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bottle_engine import claude_code, state
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.secret_forms import ValueSearch
from bottle_engine.copied_archives import ArchiveSearch, packed_files
from bottle_engine.copied_git_config import refuse_credentials_in_tree
from bottle_engine.copied_history import CleanPacks, HistoryUnreadable, search_history
from bottle_engine.copy_refusals import (
    CopyPlace,
    history_unreadable,
    into_the_bottle,
    value_in_archive,
    value_in_history,
    values_in_files,
)
from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError
from bottle_engine.file_ids import FileId, same_files, withheld_place
from bottle_engine.git import url_credential
from bottle_engine.plan import (
    AGENT_HOME,
    AGENT_UID,
    CA_BUNDLE_PATH,
    CA_CERT_PATH,
    PROMPT_PATH,
    WORKSPACE,
    BottlePlan,
)
from bottle_engine.progress import Progress
from bottle_engine.regular_files import read_regular
from bottle_engine.secrets import read_secret_value
from bottle_engine.trust import CREDENTIAL_LOCATIONS

SKILLS_DIR = f"{AGENT_HOME}/.claude/skills"


@dataclass(frozen=True)
class GuestFile:
    """A file (or directory, when `data` is None) to place in the sandbox before it starts."""

    path: str  # absolute path in the sandbox
    data: bytes | None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


def files_archive(files: Iterable[GuestFile]) -> bytes:
    """Guest files as one tar rooted at ``/``, with their owners and modes (the prompt: 0600)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for guest_file in files:
            info = tarfile.TarInfo(guest_file.path.lstrip("/"))
            info.uid, info.gid, info.mode = guest_file.uid, guest_file.gid, guest_file.mode
            if guest_file.data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(guest_file.data)
                archive.addfile(info, io.BytesIO(guest_file.data))
    return buffer.getvalue()


def prompt_text(plan: BottlePlan) -> str | None:
    """The agent's appended system prompt, from `prompt` or `prompt_file`."""
    if plan.prompt is not None:
        return plan.prompt
    if plan.prompt_file is None:
        return None
    try:
        return plan.prompt_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise BottleError(
            f"agents.{plan.agent}.prompt_file: cannot read {plan.prompt_file}: {exc}",
            fix="create the file or fix the path in bottle.toml",
        ) from exc


def guest_files(
    plan: BottlePlan,
    *,
    bottle_ca: bytes,
    system_cas: bytes | None,
    prompt: str | None,
    uid: int = AGENT_UID,
    extra: Sequence[GuestFile] = (),
) -> list[GuestFile]:
    """Files for the agent: all owned by the agent's `uid` (agent_user.py), the prompt readable
    by it alone; `extra` first (the renumbered account tables)."""
    files = [
        *extra,
        GuestFile("/etc/bot-bottle", None, 0o755),
        GuestFile(CA_CERT_PATH, bottle_ca, 0o644),
        GuestFile(CA_BUNDLE_PATH, (system_cas or b"").rstrip(b"\n") + b"\n" + bottle_ca, 0o644),
        GuestFile(WORKSPACE, None, 0o755, uid, uid),
        GuestFile(f"{AGENT_HOME}/.claude", None, 0o700, uid, uid),
        GuestFile(
            f"{AGENT_HOME}/.claude.json", _json(claude_code.user_state(plan)), 0o600, uid, uid
        ),
        GuestFile(
            f"{AGENT_HOME}/.claude/settings.json",
            _json(claude_code.user_settings(plan)),
            0o600,
            uid,
            uid,
        ),
    ]
    if prompt is not None:
        files.append(GuestFile(str(Path(PROMPT_PATH).parent), None, 0o700, uid, uid))
        files.append(GuestFile(PROMPT_PATH, prompt.encode(), 0o600, uid, uid))
    if plan.skills:  # the agent image need not have it; each skill is unpacked into it
        files.append(GuestFile(SKILLS_DIR, None, 0o700, uid, uid))
    return files


# Commands the engine runs in the sandbox as root once something of the agent's is in it (its
# writes, or a workspace copy it may have written in an earlier session): the sandbox's PATH
# can name a directory it writes (a person's ~/.local/bin, a project's node_modules/.bin) and
# its environment can steer a program (TAR_OPTIONS). So the first program is named by its path
# and starts the rest with only system directories on a PATH of its own; `SYSTEM_EXEC_ENV` is
# what the exec is given over the sandbox's environment (Docker's exec Env, smolvm's --env),
# for the loader of that first program (an LD_PRELOAD the person set).
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_EXEC_ENV = {"PATH": SYSTEM_PATH, "LD_PRELOAD": "", "LD_LIBRARY_PATH": "", "LD_AUDIT": ""}


def system_command(argv: Sequence[str]) -> list[str]:
    """`argv` run with no variable of the sandbox's and only system directories on its PATH."""
    return ["/usr/bin/env", "-i", f"PATH={SYSTEM_PATH}", *argv]


def _read_no_follow(directory: Path, name: str, limit: int) -> bytes:
    parent = os.open(directory, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY)
    try:
        return read_regular(name, limit, dir_fd=parent)
    finally:
        os.close(parent)


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2).encode()


MAX_CA_BYTES = 64 * 1024


def bundle_ca(bottle_dir: BottleDir) -> bytes:
    """The per-bottle CA certificate the bundle wrote into the bottle's state dir.

    The bundle can write that dir (and a warm pool member's bundle ran before the launch), so
    the certificate is opened without following a symlink at `ca` or at the file: the engine
    never reads a host file of the bundle's choosing into the agent.
    """
    path = bottle_dir.ca_cert
    try:
        return _read_no_follow(bottle_dir.ca_dir, path.name, MAX_CA_BYTES)
    except OSError as exc:
        raise BottleError(
            f"the bundle did not write its CA certificate ({path})",
            fix="see the bundle's log: `bottle-engine logs SLUG --bundle`",
        ) from exc


def guest_trees(
    plan: BottlePlan,
    bottle_dir: BottleDir,
    *,
    system_cas: bytes | None,
    uid: int = AGENT_UID,
    extra: Sequence[GuestFile] = (),
    progress: Progress | None = None,
) -> list[tuple[str, bytes]]:
    """Everything a launch copies into the sandbox, as (destination, tar) pairs in order: the
    guest files, each skill (from ~/.claude/skills), the workspace copy; all the agent's
    (`uid`), none holding a secret's real value (`refuse_real_values`)."""
    files = guest_files(
        plan,
        bottle_ca=bundle_ca(bottle_dir),
        system_cas=system_cas,
        prompt=prompt_text(plan),
        uid=uid,
        extra=extra,
    )
    trees = [("/", files_archive(files))]
    for name, source in skill_sources(plan, Path.home() / ".claude" / "skills"):
        trees.append((SKILLS_DIR, tar_directory(source, name, uid=uid)))
    if plan.copy_cwd:
        withheld = same_files(withheld_paths(plan))
        refuse_withheld_cwd(plan.cwd, withheld)
        trees.append((WORKSPACE, workspace_archive(plan.cwd, withheld, uid=uid)))
    refuse_real_values(plan, trees, progress)
    return trees


def withheld_paths(plan: BottlePlan) -> list[Path]:
    """What no copy into the sandbox holds (the workspace copy, the agent image's context):
    the bundle's files (`bundle_only_files`), the engine's state (every bottle's secrets,
    keys and approvals) and the person's credentials (~/.ssh, ~/.aws, ...), when they lie in
    the copied directory (a launch from the home directory) or hold it."""
    home = Path.home()
    return [
        *plan.bundle_only_files,
        state.state_dir(),
        *(home / location for location in CREDENTIAL_LOCATIONS),
    ]


def refuse_withheld_cwd(cwd: Path, withheld: frozenset[FileId]) -> None:
    """A `BottleError` when the launch directory is, or lies inside, a directory the copy
    leaves out (the engine's state dir, a credentials dir such as ~/.ssh): leaving out what
    lies in the copy does not cover a copy made from within it, which would hold other
    bottles' secret values, keys and configs, or the person's credentials."""
    directory = withheld_place(cwd, withheld)
    if directory is not None:
        raise BottleError(
            f"the launch directory {safe_text(str(cwd))} lies inside "
            f"{safe_text(str(directory))} (the engine's state, or a place that holds "
            "credentials), which is never copied into a bottle",
            fix="run `launch` from the project's directory",
        )


def refuse_real_values(
    plan: BottlePlan, trees: Sequence[tuple[str, bytes]], progress: Progress | None = None
) -> None:
    """A `BottleError` naming what the launch would copy into the sandbox (`trees`: the
    workspace copy, skills, prompt) that holds a secret's real value, a git upstream's
    `identity` key or the credential in its url (the bundle's alone) in any stored form
    `secret_forms` knows: the agent is to hold a placeholder only, and decodes base64 in one
    line (the usual home of a `from_env` value is a git-ignored `.env` in the project). The
    whole of each tree is searched once per form; only a tree that holds one is read file by
    file, for the message, which names the secret, the form and the files, never the value.
    A value shorter than `MIN_NEEDLE` is refused as a whole word only (`stored_forms`). The
    git histories in each tree are searched too, its git configs for credentials, its
    compressed files and archives inflated (`copied_archives`; one line on `progress` names
    those it cannot open), and the agent's environment and command line."""
    search = real_values(plan)
    place = into_the_bottle(plan.agent, str(plan.cwd))
    for destination, tree in trees:
        found = search.first(tree)
        if found is None:
            continue
        with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
            holding = [
                f"{destination.rstrip('/')}/{member.name}"
                for member in archive.getmembers()
                # A name that is not UTF-8 is read back as its bytes (surrogate escapes).
                if search.first(member.name.encode(errors="surrogateescape")) is not None
                or (member.isfile() and search.first(archive.extractfile(member).read()))  # type: ignore[union-attr]
            ]
        raise values_in_files(place, holding, found)
    inside = ArchiveSearch(search)
    for destination, tree in trees:
        # One listing of the tar for all three (a project of 50,000 files: 0.7 s each).
        with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
            refuse_history_values(place, destination, archive, search)
            # Nor a git config holding a credential (`copied_git_config`): the agent would
            # push with it past the gate.
            refuse_credentials_in_tree(archive, destination.rstrip("/"), place.way_out)
            refuse_archived_values(place, destination, (archive, tree), inside)
    refuse_values_in_process(plan, search)
    warning = inside.warning(place.what)
    if warning is not None and progress is not None:
        progress.warn(warning)


def refuse_archived_values(
    place: CopyPlace, destination: str, tree: tuple[tarfile.TarFile, bytes], inside: ArchiveSearch
) -> None:
    """A `BottleError` when a compressed file or an archive in `tree` (a tar opened, and its
    bytes) holds a value of `inside` (`copied_archives`): the agent unpacks it in one command."""
    prefix = destination.rstrip("/")
    hit = inside.first((f"{prefix}/{name}", data) for name, data in packed_files(*tree))
    if hit is not None:
        raise value_in_archive(place, hit)


def refuse_values_in_process(plan: BottlePlan, search: ValueSearch) -> None:
    """A `BottleError` when the agent's environment or command line (the manifest's `env`
    and `command`, which the agent reads in /proc) holds a real value: a manifest outside the
    project is not in the copy that is searched."""
    given = [("environment", f"{name}={value}") for name, value in plan.guest_env.items()]
    given += [("command line", argument) for argument in plan.agent_command]
    for what, text in given:
        found = search.first(text.encode(errors="surrogateescape"))
        if found is not None:
            raise BottleError(
                f"the agent's {what} would hold the real value of the "
                f"{found.label}: the agent is to hold a placeholder only",
                fix="take the value out of `env` and `command` in bottle.toml: bind it as a "
                "secret (`[bottles.NAME.secrets.NAME]`) and use the placeholder the agent is given",
            )


def real_values(plan: BottlePlan, *, unset_ok: bool = False) -> ValueSearch:
    """Every stored form of the bottle's real values: its secrets, each git upstream's
    `identity` key and the credential in its url (the bundle's alone). `unset_ok`: a secret
    whose value cannot be read is left out (a build without them; the launch reads them all)."""
    values = []
    for secret in plan.secrets:
        try:
            values.append((read_secret_value(plan, secret.name).strip(), f"secret {secret.name}"))
        except BottleError:
            if not unset_ok:
                raise
    for upstream in plan.git:
        if (credential := url_credential(upstream.url)) is not None:
            values.append((credential, f"credential in git upstream {upstream.name}'s url"))
        if upstream.identity is None:
            continue
        try:  # its own file is left out of the copy; not a copy of it
            key = upstream.identity.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue  # nothing to copy; the launch names it (`write_bundle_secrets`)
        values.append((key, f"key of git upstream {upstream.name}'s identity"))
    return ValueSearch(values, short_words=True)


def refuse_history_values(
    place: CopyPlace, destination: str, archive: tarfile.TarFile, search: ValueSearch
) -> None:
    """A `BottleError` when a git history in `archive` holds a value of `search`: committed
    once and taken out since, it is in no file, but the agent reads it back with `git log -p`."""
    try:
        hit = search_history(archive, search, CleanPacks.in_cache_dir())
    except HistoryUnreadable as unreadable:
        directory = f"{destination.rstrip('/')}/{unreadable.objects_dir}"
        raise history_unreadable(place, unreadable, directory) from unreadable
    if hit is not None:
        raise value_in_history(place, hit, f"{destination.rstrip('/')}/{hit.objects_dir}")


def skill_sources(plan: BottlePlan, skills_root: Path) -> list[tuple[str, Path]]:
    """(name, directory) of each skill the agent asks for; a `BottleError` names a missing one."""
    found = []
    for name in plan.skills:
        source = skills_root / name
        if not source.is_dir():
            raise BottleError(
                f"agents.{plan.agent}.skills: no skill '{name}' in {skills_root}",
                fix=f"install it at {source}, or remove it from the agent's skills",
            )
        found.append((name, source))
    return found


def tar_directory(source: Path, arcname: str, *, uid: int = AGENT_UID) -> bytes:
    """A tar of `source` as `arcname`, every entry owned by `uid` (the agent's copy)."""
    buffer = io.BytesIO()

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = uid
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(source, arcname=arcname, filter=owned)
    return buffer.getvalue()


def workspace_archive(
    cwd: Path, withheld: frozenset[FileId] = frozenset(), *, uid: int = AGENT_UID
) -> bytes:
    """The launch directory as a tar for /workspace: a copy, the host directory is never mounted.

    The files and directories in `withheld` (`same_files`) are left out under any name: a
    secret's `from_file` or a git key kept in the project (relative to the manifest) would
    otherwise be copied in and read by the agent, whose only copy of it is to be a
    placeholder."""
    buffer = io.BytesIO()

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.isfile() or info.islnk() or info.isdir():  # a file's second name: a hard link
            found = os.lstat(cwd / info.name)
            if (found.st_dev, found.st_ino) in withheld:
                return None
        info.uid = info.gid = uid
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for child in sorted(cwd.iterdir()):
            archive.add(child, arcname=child.name, filter=owned)
    return buffer.getvalue()
