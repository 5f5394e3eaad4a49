"""The warm pool: bundle containers started before their bottle exists, each used once.

A member is a started bundle container (its services loaded and waiting, serving nothing),
its internal and egress networks, and its own state dir. A launch whose bundle image, runtime,
egress network, bundle host names and size match a free member made by the same engine code
takes it, hands it the bottle's config through the member's state dir, and starts only the
agent (backends/gateway.py).

On disk, under `<state>/pool/` (0700, the engine's alone):

* `free/<id>`, `making/<id>`, `claimed/<id>`: the member's description (`Member`, JSON). A
  member moves making -> free -> claimed by `rename`, which one process alone can win: two
  launches never take the same member, and a taken member never returns.
* `members/<id>/`: the member's state dir, mounted into its bundle. It stays where it is for the
  bundle's life (Docker mounts it again by path when the bundle restarts); the bottle's own
  state dir, `bottles/<slug>`, is a symlink to it.

The markers live outside the mounted dir on purpose: a bundle (which parses the agent's
traffic) must not be able to put itself back in the pool and receive another bottle's secrets.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bottle_engine
from bottle_engine import state
from bottle_engine.dirclaim import move_noreplace
from bottle_engine.plan import GatewayAddresses

FREE, MAKING, CLAIMED = "free", "making", "claimed"
MEMBERS = "members"


@functools.cache
def engine_digest() -> str:
    """The running engine's code, as a digest of its modules' bytes. The bundle image holds the
    bundle's code only: how a member's container and networks are made (capabilities, read-only
    root, limits, log rotation, mounts, user) is the engine's, so only the engine that made a
    member takes it (not one before an upgrade, nor another install sharing the state dir)."""
    root = Path(bottle_engine.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class PoolKey:
    """What a member must share with a launch to serve it: everything fixed when its bundle
    container was created."""

    bundle_image: str
    runtime: str  # the OCI runtime name given to Docker ("" = the daemon's default)
    egress_network: str  # a shared egress network (BOTTLE_EGRESS_NETWORK), "" = its own
    bundle_hosts: tuple[tuple[str, str], ...]  # BOTTLE_BUNDLE_HOSTS
    memory_bytes: int  # the bottle's memory: the bundle's limits are sized from it
    engine: str = field(default_factory=engine_digest)  # the engine that made it (its code)

    @property
    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> str:
        runtime = self.runtime or "default runtime"
        other = "" if self.engine == engine_digest() else "; made by another engine, unused"
        return f"{self.bundle_image} ({runtime}, {self.memory_bytes // (1024 * 1024)} MiB{other})"

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> PoolKey:
        hosts = raw.get("bundle_hosts") or []
        assert isinstance(hosts, list)
        return cls(
            bundle_image=str(raw["bundle_image"]),
            runtime=str(raw.get("runtime") or ""),
            egress_network=str(raw.get("egress_network") or ""),
            bundle_hosts=tuple((str(name), str(ip)) for name, ip in hosts),
            memory_bytes=int(str(raw["memory_bytes"])),
            engine=str(raw.get("engine") or ""),  # "" (an engine before this field): none
        )


@dataclass(frozen=True)
class Member(GatewayAddresses):
    """One warm gateway: its key, its subnet and the names of what it is made of."""

    id: str
    key: PoolKey
    subnet: str
    internal_network: str
    egress_network: str
    created: float

    @property
    def container(self) -> str:
        return f"bottle-pool-{self.id}-bundle"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def directory(self) -> Path:
        return pool_root() / MEMBERS / self.id

    @property
    def own_egress(self) -> bool:
        return not self.key.egress_network

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Member:
        raw = json.loads(text)
        return cls(
            id=str(raw["id"]),
            key=PoolKey.from_json(raw["key"]),
            subnet=str(raw["subnet"]),
            internal_network=str(raw["internal_network"]),
            egress_network=str(raw["egress_network"]),
            created=float(raw["created"]),
        )


def new_member_id() -> str:
    return secrets.token_hex(5)


def member_names(member_id: str, key: PoolKey) -> tuple[str, str]:
    """(internal, egress) network names of a new member."""
    egress = key.egress_network or f"bottle-pool-{member_id}-egress"
    return f"bottle-pool-{member_id}-internal", egress


def pool_root() -> Path:
    return state.state_dir() / "pool"


def _area(name: str) -> Path:
    state.private_dir(state.state_dir())
    state.private_dir(pool_root())
    return state.private_dir(pool_root() / name)


def record_making(member: Member) -> None:
    """Write the member's description under making/ before anything of it exists, so that a
    crash half way leaves a name `pool drain` and `gc` can find."""
    state.write_private_text(_area(MAKING) / member.id, member.to_json())
    _area(MEMBERS)


def mark_free(member: Member) -> None:
    """making -> free: launches may take it from now on."""
    _area(FREE)
    move_noreplace(pool_root() / MAKING / member.id, pool_root() / FREE / member.id)


def take(key: PoolKey) -> Iterator[Member]:
    """Free members of `key`, oldest first, each taken (free -> claimed) before it is yielded:
    a member another process took first is skipped. The caller owns what it is given."""
    claimed = _area(CLAIMED)
    for member in sorted(listed(FREE), key=lambda m: m.created):
        if member.key != key:
            continue
        try:
            move_noreplace(pool_root() / FREE / member.id, claimed / member.id)
        except (FileNotFoundError, FileExistsError):
            continue  # another launch took it
        yield member


def take_any(where: str) -> Iterator[Member]:
    """Every member under `where` (free or making), each taken first (for `drain`)."""
    claimed = _area(CLAIMED)
    for member in listed(where):
        try:
            move_noreplace(pool_root() / where / member.id, claimed / member.id)
        except (FileNotFoundError, FileExistsError):
            continue
        yield member


def take_free(member_ids: Iterable[str]) -> Iterator[Member]:
    """These members, each taken (free -> claimed) before it is yielded; one a launch took
    first, or that is not free, is skipped."""
    claimed = _area(CLAIMED)
    free = {member.id: member for member in listed(FREE)}
    for member_id in member_ids:
        member = free.get(member_id)
        if member is None:
            continue
        try:
            move_noreplace(pool_root() / FREE / member_id, claimed / member_id)
        except (FileNotFoundError, FileExistsError):
            continue
        yield member


def listed(where: str) -> list[Member]:
    """The members described under free/, making/ or claimed/ (unreadable entries skipped)."""
    directory = pool_root() / where
    if not directory.is_dir():
        return []
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue  # being written
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AssertionError):
            found.append(Member.from_json(entry.read_text()))
    return found


def where_is(member_id: str) -> str | None:
    """free, making or claimed: where the member's description is; None when it has none."""
    for where in (FREE, MAKING, CLAIMED):
        if (pool_root() / where / member_id).exists():
            return where
    return None


def forget(member_id: str) -> None:
    """Remove the member's description and its state dir (its containers are gone)."""
    for where in (FREE, MAKING, CLAIMED):
        with contextlib.suppress(FileNotFoundError):
            (pool_root() / where / member_id).unlink()
    state.remove_tree(pool_root() / MEMBERS / member_id)  # its bundle wrote it: any depth


def staging_dir(member_id: str) -> Path:
    """A fresh dir only the engine reaches, where a member's files are made before they are
    moved into the member's own dir (which its bundle can write)."""
    staging = _area("staging") / member_id
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    return staging


def forget_claim(member_id: str) -> None:
    """A used member's description, once its bottle is removed (the state dir goes with the
    bottle's: `state.remove_bottle_dir`)."""
    with contextlib.suppress(FileNotFoundError):
        (pool_root() / CLAIMED / member_id).unlink()


def remove_dangling_links() -> list[str]:
    """Bottle names left linked to a member that is gone (its launch died, gc removed it)."""
    bottles = state.state_dir() / "bottles"
    if not bottles.is_dir():
        return []
    removed = []
    for entry in sorted(bottles.iterdir()):
        if entry.is_symlink() and not entry.exists():
            entry.unlink()
            removed.append(str(entry))
    return removed


def link_bottle_dir(slug: str, member: Member) -> bool:
    """Make `bottles/<slug>` a link to the member's state dir, atomically; False when the name
    is taken (by another launch, cold or pooled)."""
    state.private_dir(state.state_dir())
    bottles = state.private_dir(state.state_dir() / "bottles")
    temporary = bottles / f".link-{member.id}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(Path("..") / "pool" / MEMBERS / member.id)
    try:
        move_noreplace(temporary, state.bottle_dir(slug))
    except FileExistsError:
        temporary.unlink()
        return False
    return True


def now() -> float:
    return time.time()
