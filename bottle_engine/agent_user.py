"""Which uid a bottle's agent runs as, and what in its sandbox is given to that uid.

Images are built with `useradd --uid 1000 agent` (`plan.AGENT_UID`). Under gVisor and in a
smolvm guest that uid is the sandbox's own. Under runc there is no user namespace: the agent's
uid *is* a host uid, and per-user kernel quotas (inotify instances and watches, RLIMIT_NPROC,
POSIX mqueue bytes) are shared with whoever holds it on the host, on most machines the person's
own account. So under runc the agent runs as an id of its bottle's own that no host account
holds (host_ids.py), unless the daemon maps container ids into a user namespace of its own
(rootless, userns-remap) where such a high id has no mapping and 1000 is not a host account.

The image's `agent` entry in /etc/passwd and /etc/group is renumbered to that id (tools look
their user up: ssh, Node's os.userInfo), and its home, as the image left it, is given to it.
"""

from __future__ import annotations

import tarfile
from collections.abc import Mapping
from typing import IO, Any, cast

from bottle_engine.errors import BottleError
from bottle_engine.host_ids import agent_id_for
from bottle_engine.plan import AGENT_HOME, AGENT_UID


def _userns_daemon(daemon_info: Mapping[str, Any]) -> bool:
    options = daemon_info.get("SecurityOptions") or []
    return any("name=rootless" in str(o) or "name=userns" in str(o) for o in options)


def agent_uid(slug: str, runtime: str | None, daemon_info: Mapping[str, Any]) -> int:
    """The uid (and gid) bottle `slug`'s agent runs as under `runtime` (None: the daemon's
    default, runc)."""
    if runtime not in (None, "runc") or _userns_daemon(daemon_info):
        return AGENT_UID
    return agent_id_for(slug)


def user_spec(uid: int) -> str:
    """`uid:gid` as Docker's create and exec take it."""
    return f"{uid}:{uid}"


def renumbered(table: bytes, uid: int) -> bytes:
    """/etc/passwd or /etc/group with every id field of `AGENT_UID` changed to `uid` (the
    third field of each line, and the fourth of a passwd line)."""
    lines = []
    for line in table.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        for index in (2, 3) if len(fields) >= 7 else (2,):
            if len(fields) > index and fields[index] == str(AGENT_UID):
                fields[index] = str(uid)
        lines.append(":".join(fields))
    return ("\n".join(lines) + "\n").encode()


def reown(source: IO[bytes], target: IO[bytes], uid: int, *, max_bytes: int) -> None:
    """Write to `target` the tar stream `source` (the image's home, from `get_archive`) with
    what `AGENT_UID` owned given to `uid`, one member at a time (memory: a member's header and
    a buffer). A home whose entries come to more than `max_bytes` is refused (`BottleError`),
    from the header of the entry that goes past it: the image is not trusted, and a file of
    zeros costs it nearly nothing."""
    total = 0
    with (
        tarfile.open(fileobj=source, mode="r|") as home,
        tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT) as copy,
    ):
        while (member := home.next()) is not None:
            total += tarfile.BLOCKSIZE + member.size
            if total > max_bytes:
                raise BottleError(
                    f"the agent image's {AGENT_HOME} is more than the {max_bytes} bytes "
                    "bot-bottle copies to give it to the agent's uid under runc",
                    fix=f"keep large tools out of {AGENT_HOME} in the Dockerfile (under /opt "
                    "or /usr/local), or run the bottle under gVisor (`runtime`), where the "
                    "home is not copied",
                )
            if member.uid == AGENT_UID:
                member.uid = uid
            if member.gid == AGENT_UID:
                member.gid = uid
            member.uname = member.gname = ""
            copy.addfile(member, home.extractfile(member) if member.isfile() else None)
            _forget_members(home, copy)


def _forget_members(*archives: tarfile.TarFile) -> None:
    """A TarFile keeps every member it saw (`members`, missing from its type stubs): a home of
    millions of empty files would be held whole. A stream needs none of them again."""
    for archive in archives:
        cast(Any, archive).members.clear()
