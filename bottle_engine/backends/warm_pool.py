"""The warm pool on Docker: make members, hand one to a launch, drain, and clean up after crashes.

What a member is and how it is taken atomically is in bottle_engine/pool.py; this module makes
and removes the Docker half (networks, the waiting bundle container) and, at claim time, gives
the member its bottle: the name, the secrets, git keys and upstream CA in its state dir, and last
the config, written atomically; the bundle answers with the digest of the config it loaded.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker.errors

from bottle_engine import config_seal, pool, records, state
from bottle_engine.backends.gateway import (
    BUNDLE_READY_TIMEOUT,
    Gateway,
    all_names_taken,
)
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import CONFIG_FILE_NAME
from bottle_engine.bundle.waiting import WARM_SERVICES, config_digest, warm_mark
from bottle_engine.dockerapi.bundle_container import (
    BundlePlacement,
    bundle_log_tail,
    bundle_user,
    run_pool_bundle_container,
    wait_bundle_ready,
)
from bottle_engine.dockerapi.client import (
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_ROLE,
    LABEL_STATE,
    docker_errors,
)
from bottle_engine.dockerapi.containers import containers_with_label, remove_container
from bottle_engine.dockerapi.networks import (
    SubnetTaken,
    networks_with_label,
    remove_network,
    subnets_in_use,
)
from bottle_engine.errors import BottleError
from bottle_engine.limits import bundle_limits
from bottle_engine.plan import BottlePlan, Planner, choose_subnet, instance_slugs
from bottle_engine.pool import Member, PoolKey
from bottle_engine.progress import Progress
from bottle_engine.records import GatewayNames
from bottle_engine.secrets import copy_upstream_ca, write_bundle_secrets

WARM_TIMEOUT = 120.0
_SUBNET_ATTEMPTS = 5


@dataclass
class Claimed:
    """A member handed to a launch: its plan, and `wait_ready` to call before the agent starts
    (the launch creates the agent container meanwhile)."""

    plan: BottlePlan
    member: Member
    wait_ready: Callable[[], None]

    @property
    def names(self) -> GatewayNames:
        return GatewayNames.of_plan(self.plan, pool_member=self.member.id)


class WarmPool:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.client = gateway.client

    def key_for(self, bundle_image: str, runtime: str | None, memory_bytes: int) -> PoolKey:
        settings = self.gateway.settings
        return PoolKey(
            bundle_image=bundle_image,
            runtime=runtime or "",
            egress_network=settings.egress_network or "",
            bundle_hosts=tuple(sorted(settings.bundle_hosts.items())),
            memory_bytes=memory_bytes,
        )

    # -- fill ----------------------------------------------------------------------------------
    def fill(self, key: PoolKey, count: int, progress: Progress) -> list[Member]:
        """Make `count` more members of `key`, each warm (its services loaded) when returned."""
        made = []
        for number in range(count):
            progress.stage(f"warm gateway {number + 1}/{count}")
            made.append(self.make(key))
        return made

    def make(self, key: PoolKey) -> Member:
        for _ in range(_SUBNET_ATTEMPTS):
            member_id = pool.new_member_id()
            subnet = choose_subnet(
                f"pool-{member_id}", self.gateway.settings.subnet_pool, subnets_in_use(self.client)
            )
            internal, egress = pool.member_names(member_id, key)
            member = Member(member_id, key, str(subnet), internal, egress, pool.now())
            try:
                return self._make(member)
            except SubnetTaken:
                continue  # another launch or fill took the subnet meanwhile: pick again
        raise BottleError("no free subnet for a warm gateway after several tries")

    def _make(self, member: Member) -> Member:
        key = member.key
        labels = {LABEL_POOL: member.id, LABEL_STATE: state.state_id(), LABEL_MANAGED: "1"}
        pool.record_making(member)
        with ExitStack() as undo:
            undo.callback(self.remove_member, member)
            self.gateway.make_networks(
                GatewayNames(
                    member.internal_network, member.egress_network, own_egress=member.own_egress
                ),
                member,
                labels,
                undo,
            )
            placement = BundlePlacement(
                name=member.container,
                image=key.bundle_image,
                state_dir=member.directory,
                internal_network=member.internal_network,
                bundle_ip=member.bundle_ip,
                egress_network=member.egress_network,
                labels={**labels, LABEL_ROLE: "bundle"},
                extra_hosts=dict(key.bundle_hosts) or None,
                limits=bundle_limits(key.memory_bytes),
                runtime=key.runtime or None,
            )
            container = run_pool_bundle_container(
                self.client, placement, member=member.id, agent_ip=member.agent_ip
            )
            _wait_warm(container, member.directory)
            pool.mark_free(member)
            undo.pop_all()
        return member

    # -- claim ---------------------------------------------------------------------------------
    def claim(
        self, planner: Planner, key: PoolKey, undo: ExitStack, progress: Progress
    ) -> Claimed | None:
        """Take a free member of `key` for the next free name of the planner's slug sequence and
        hand it the bottle's config; None when the pool has no such member (launch cold)."""
        for member in pool.take(key):
            with ExitStack() as attempt:
                attempt.callback(self.remove_member, member)
                container = self._running(member)
                if container is None:
                    continue  # died while waiting (a daemon restart): removed, take the next
                progress.stage(f"gateway: warm pool member {member.id}")
                slug = self._link_name(planner.base_slug, member)
                attempt.callback(_unlink, state.bottle_dir(slug))
                plan = replace(
                    planner(slug, subnet=member.network),
                    gateway_networks=(member.internal_network, member.egress_network),
                )
                with docker_errors(f"renaming the warm bundle {member.container}"):
                    container.rename(plan.bundle_name)
                digest, handed = self._hand_config(plan, member)
                config_seal.seal(slug, digest)  # what `resume` will check the config against
                config_seal.seal_handed(slug, handed)  # and the secrets, keys and CA
                attempt.callback(config_seal.forget, slug)
                config = plan.bundle_config(files_in_state_dir=True)

                wait_ready = functools.partial(
                    wait_bundle_ready,
                    container,
                    config,
                    BUNDLE_READY_TIMEOUT,
                    state_dir=member.directory,
                    config_sha256=digest,
                )

                undo.push(attempt.pop_all())
                return Claimed(plan, member, wait_ready)
        return None

    def _running(self, member: Member) -> Any | None:
        try:
            container = self.client.containers.get(member.container)
        except docker.errors.NotFound:
            return None
        return container if container.status == "running" else None

    def _link_name(self, base: str, member: Member) -> str:
        for slug in instance_slugs(base):
            if not self.gateway.slug_taken(slug) and pool.link_bottle_dir(slug, member):
                return slug
        raise all_names_taken(base)

    def _hand_config(self, plan: BottlePlan, member: Member) -> tuple[str, dict[str, str]]:
        """Secrets, git keys and the upstream CA into the member's state dir, then the config
        (the bundle reacts to its appearance); the config's digest and those of the files
        (`config_seal.handed_digests`).

        The member's dir belongs to a running bundle, so nothing is written into it in place
        (a planted symlink would lead the engine's writes, or its chown, anywhere on the host):
        each is made in a staging dir only the engine reaches, then renamed in (a rename
        replaces a symlink at the target, never follows it)."""
        staging = pool.staging_dir(member.id)
        try:
            write_bundle_secrets(plan, BottleDir(staging))
            copy_upstream_ca(plan, BottleDir(staging))
            text = plan.bundle_config(files_in_state_dir=True).to_json()
            descriptor = os.open(
                staging / CONFIG_FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )
            with os.fdopen(descriptor, "w") as out:
                out.write(text)
            handed = config_seal.handed_digests(staging)
            if os.geteuid() == 0:  # the bundle's own uid reads them (bundle_container._hand_over)
                uid, gid = bundle_user(f"pool-{member.id}")
                for path in [*staging.rglob("*")]:
                    os.chown(path, uid, gid, follow_symlinks=False)
            names = sorted(p.name for p in staging.iterdir() if p.name != CONFIG_FILE_NAME)
            for name in [*names, CONFIG_FILE_NAME]:  # the config last: it starts the bundle
                if os.path.lexists(member.directory / name):
                    raise BottleError(
                        f"the warm gateway {member.id} already has a {name} in its state dir, "
                        "which only the engine writes; it is not used",
                        fix="launch again (the member is removed); `bottle-engine pool drain`",
                    )
                os.rename(staging / name, member.directory / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return config_digest(text.encode()), handed

    # -- removal -------------------------------------------------------------------------------
    def remove_member(self, member: Member) -> None:
        """Its bundle (by label: it may have been renamed), its networks, its files."""
        for container in containers_with_label(self.client, LABEL_POOL, member.id):
            remove_container(self.client, container.id)
        remove_network(self.client, member.internal_network)
        if member.own_egress:
            remove_network(self.client, member.egress_network)
        pool.forget(member.id)

    def drain(self) -> list[str]:
        """Remove every member not in use (free, or being made: a crashed fill's); their ids."""
        drained = []
        for where in (pool.FREE, pool.MAKING):
            for member in pool.take_any(where):
                self.remove_member(member)
                drained.append(member.id)
        return drained

    def release(self, member_ids: Iterable[str]) -> list[str]:
        """Remove these members unless a launch took them first; the ids removed."""
        released = []
        for member in pool.take_free(member_ids):
            self.remove_member(member)
            released.append(member.id)
        return released

    def orphans(self) -> Iterator[str]:
        """Ids of pool members whose resources no free member and no bottle accounts for: a
        claim whose launch failed and crashed, a member whose description was removed."""
        ours = state.state_id()
        in_use = {GatewayNames.of_record(record).pool_member for record in records.all_records()}
        seen: set[str] = set()
        labelled = [c.labels for c in containers_with_label(self.client, LABEL_POOL)]
        labelled += [
            n.attrs.get("Labels") or {} for n in networks_with_label(self.client, LABEL_POOL)
        ]
        for labels in labelled:
            member_id = labels.get(LABEL_POOL, "")
            if not member_id or member_id in seen or labels.get(LABEL_STATE) != ours:
                continue
            seen.add(member_id)
            where = pool.where_is(member_id)
            if where in (pool.FREE, pool.MAKING) or member_id in in_use:
                continue
            yield member_id

    def remove_orphans(self) -> list[str]:
        removed = []
        for member_id in list(self.orphans()):
            for container in containers_with_label(self.client, LABEL_POOL, member_id):
                removed.append(container.name)
                remove_container(self.client, container.id)
            for network in networks_with_label(self.client, LABEL_POOL, member_id):
                if (network.attrs.get("Labels") or {}).get(LABEL_STATE) == state.state_id():
                    removed.append(network.name)
                    remove_network(self.client, network.name)
            pool.forget(member_id)
        return removed + pool.remove_dangling_links()


def _wait_warm(container: Any, directory: Path, timeout: float = WARM_TIMEOUT) -> None:
    """Until every service of the member has loaded and waits for a config."""
    deadline = time.monotonic() + timeout
    while not all(warm_mark(directory, name).exists() for name in WARM_SERVICES):
        container.reload()
        if container.status in ("exited", "dead") or time.monotonic() > deadline:
            tail = bundle_log_tail(container)
            raise BottleError(
                f"the warm gateway {container.name} did not come up; its log:\n{tail}",
                fix="`docker logs " + container.name + "`; then `bottle-engine pool fill` again",
            )
        time.sleep(0.05)


def _unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        if path.is_symlink():
            path.unlink()
