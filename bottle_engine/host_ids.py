"""A user id for each bottle's bundle that no account on this host holds or can map.

When the engine runs as root, the bundle's files on the host (its secrets, git keys, the CA key,
its state dir) belong to the uid its container runs as. A fixed uid (the image's 10001) would
let any host account with that uid read them; so each bottle gets its own uid and gid, derived
from its slug, in a range far above what Linux hands to accounts (`UID_MAX` in login.defs,
usually 60000) and to user namespaces (/etc/subuid and /etc/subgid, `SUB_UID_MAX`), skipping any
id that the name service (local files, LDAP, ...) knows. The bottle's state dir is also 0700 and
root's, so even a later account with that uid cannot reach it.

The agent of a bottle under runc gets an id of the same kind (`agent_id_for`).

`pick_id` is pure; `bundle_id_for` and `agent_id_for` read the host's account databases.
"""

from __future__ import annotations

import grp
import hashlib
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# 2^31 - 2^26 .. 2^31 - 2: positive as a signed 32-bit int (some tools use one), never
# (uid_t)-1 or (uid_t)-2, and above every default account and subordinate-id range.
ID_RANGE_START = 2**31 - 2**26
ID_RANGE_SIZE = 2**26 - 2
_TRIES = 4096


@dataclass(frozen=True)
class IdRange:
    first: int
    count: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.first <= value < self.first + self.count


def subordinate_ranges(text: str) -> list[IdRange]:
    """The ranges of an /etc/subuid or /etc/subgid file (``name:first:count`` lines)."""
    found = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.append(IdRange(int(parts[1]), int(parts[2])))
    return found


def login_defs_ranges(text: str) -> list[IdRange]:
    """What login.defs reserves: accounts up to UID_MAX/GID_MAX, subordinate ids up to
    SUB_UID_MAX/SUB_GID_MAX (plus one more count)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    top = max(
        values.get("UID_MAX", 60000),
        values.get("GID_MAX", 60000),
        values.get("SUB_UID_MAX", 600100000) + values.get("SUB_UID_COUNT", 65536),
        values.get("SUB_GID_MAX", 600100000) + values.get("SUB_GID_COUNT", 65536),
    )
    return [IdRange(0, top + 1)]


def pick_id(slug: str, taken: Callable[[int], bool]) -> int:
    """The first id at or after the slug's place in the range that `taken` does not claim."""
    start = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:8], "big") % ID_RANGE_SIZE
    for step in range(_TRIES):
        candidate = ID_RANGE_START + (start + step) % ID_RANGE_SIZE
        if not taken(candidate):
            return candidate
    raise RuntimeError(f"no free id for {slug} after {_TRIES} tries")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _known_to_nss(candidate: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(candidate)
            return True
        except KeyError:
            continue
        except OverflowError:
            return True
    return False


def reserved_ranges() -> list[IdRange]:
    """Every id range this host gives to accounts or user namespaces."""
    ranges: Iterable[IdRange] = [
        *login_defs_ranges(_read("/etc/login.defs")),
        *subordinate_ranges(_read("/etc/subuid")),
        *subordinate_ranges(_read("/etc/subgid")),
    ]
    return list(ranges)


def _free_id(key: str, also_taken: frozenset[int] = frozenset()) -> int:
    reserved = reserved_ranges()
    return pick_id(
        key,
        lambda candidate: (
            candidate in also_taken
            or any(candidate in r for r in reserved)
            or _known_to_nss(candidate)
        ),
    )


def bundle_id_for(slug: str) -> int:
    """The uid (and gid) of bottle `slug`'s bundle: free on this host, stable for the slug."""
    return _free_id(slug)


def agent_id_for(slug: str) -> int:
    """The uid (and gid) of bottle `slug`'s agent under runc, where its uid is a host uid: free
    on this host and not its bundle's, so per-user kernel quotas (inotify instances, processes,
    mqueue bytes) are the bottle's own and not a person's account's or its gateway's."""
    return _free_id(f"{slug}/agent", frozenset({bundle_id_for(slug)}))
