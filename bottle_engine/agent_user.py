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

import io
import tarfile
from collections.abc import Mapping
from typing import Any

from bottle_engine.host_ids import agent_id_for
from bottle_engine.plan import AGENT_UID


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


def reowned(archive: bytes, uid: int) -> bytes:
    """A tar (the image's home, from `get_archive`) with what `AGENT_UID` owned given to `uid`."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive)) as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source:
            if member.uid == AGENT_UID:
                member.uid = uid
            if member.gid == AGENT_UID:
                member.gid = uid
            member.uname = member.gname = ""
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return out.getvalue()
