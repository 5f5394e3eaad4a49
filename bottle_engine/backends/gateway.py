"""A bottle's gateway on Docker: its two networks and its bundle container, as one object.

Both backends put their sandbox behind the same gateway (the docker backend's agent container,
the smolmachines backend's microVM), so both use this object for it: `claim` (a free name and
subnet, with the networks created), `start` (the bundle, running and ready), `resume`, `stop`
and `parts` (what `status` is made of). Everything created is registered on the caller's
ExitStack, so a failed launch removes it again.

A gateway's names usually derive from the bottle's slug; one taken from the warm pool keeps the
networks it was born with (Docker cannot rename a network), so a record carries its gateway's
names (`records.GatewayNames`, in `resources.gateway`) and everything after launch reads them there.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bottle_engine import config_seal, pool, records, state
from bottle_engine.artifacts import Artifact
from bottle_engine.backends.base import bottle_labels
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import GIT_KEYS_MOUNT, UPSTREAM_CA_MOUNT, BundleConfig
from bottle_engine.bundle.waiting import config_digest
from bottle_engine.dirclaim import move_noreplace
from bottle_engine.dockerapi.bundle_container import (
    check_mount_sources,
    run_bundle_container,
    wait_bundle_ready,
)
from bottle_engine.dockerapi.client import LABEL_POOL, LABEL_ROLE, LABEL_SLUG, LABEL_STATE
from bottle_engine.dockerapi.containers import (
    NameTaken,
    container_logs,
    containers_with_label,
    remove_container,
    stop_container,
)
from bottle_engine.dockerapi.networks import (
    NetworkNameTaken,
    SubnetTaken,
    create_egress_network,
    create_internal_network,
    network_exists,
    networks_with_label,
    remove_network,
    subnets_in_use,
)
from bottle_engine.errors import BottleError
from bottle_engine.limits import bundle_limits
from bottle_engine.plan import BottlePlan, GatewayAddresses, Planner, instance_slugs
from bottle_engine.progress import Progress
from bottle_engine.records import BottleRecord, GatewayNames
from bottle_engine.secrets import copy_upstream_ca, write_bundle_secrets
from bottle_engine.settings import ENV_EGRESS_NETWORK, EngineSettings
from bottle_engine.status import MISSING, BottleParts

BUNDLE_READY_TIMEOUT = 120.0
CLAIM_MARK = "claimed"  # the first file of every bottle dir (an empty dir can be replaced)


class Gateway:
    """The gateway half of every Docker-hosted bottle (see the module docstring)."""

    def __init__(self, client: Any, settings: EngineSettings) -> None:
        self.client = client
        self.settings = settings

    # -- launch --------------------------------------------------------------------------------
    def claim(self, planner: Planner, undo: ExitStack, progress: Progress) -> BottlePlan:
        """Take the first free name of the slug sequence, with a subnet nobody uses, and create
        its networks (undone on failure)."""
        progress.stage("networks")
        base = planner.base_slug
        for slug in instance_slugs(base):
            if self.slug_taken(slug):
                continue
            plan = planner(slug, subnets_in_use(self.client))
            with ExitStack() as attempt:
                try:
                    self.make_networks(
                        GatewayNames.of_plan(plan), plan, bottle_labels(plan), attempt
                    )
                except (NetworkNameTaken, SubnetTaken):
                    continue  # another launch raced us to this name or subnet
                bottle_dir = claim_bottle_dir(slug)
                if bottle_dir is None:
                    continue  # a launch from the warm pool took this name meanwhile
                attempt.callback(remove_tree, bottle_dir)
                undo.push(attempt.pop_all())
                return plan
        raise all_names_taken(base)

    def make_networks(
        self,
        names: GatewayNames,
        addresses: GatewayAddresses,
        labels: Mapping[str, str],
        undo: ExitStack,
    ) -> None:
        """A gateway's networks: the internal one on `addresses`' subnet, then its own egress
        network or (when it shares one) a check that the shared one exists; each created one
        is removed by `undo`. `NetworkNameTaken` or `SubnetTaken` when another launch took a
        name or the subnet first. Used for a bottle's gateway and a warm pool member's."""
        network_labels = {**labels, LABEL_ROLE: "network"}
        create_internal_network(
            self.client,
            names.internal_network,
            addresses.network,
            addresses.gateway_ip,
            network_labels,
        )
        undo.callback(remove_network, self.client, names.internal_network)
        if names.own_egress:
            create_egress_network(self.client, names.egress_network, network_labels)
            undo.callback(remove_network, self.client, names.egress_network)
        else:
            self._check_shared_egress(names.egress_network)

    def _check_shared_egress(self, network: str) -> None:
        if not network_exists(self.client, network):
            raise BottleError(
                f"{ENV_EGRESS_NETWORK} names '{network}', which does not exist",
                fix="create it (`docker network create NAME`) or unset the variable",
            )

    def slug_taken(self, slug: str) -> bool:
        if records.load(slug) is not None or state.bottle_dir(slug).exists():
            return True
        return bool(containers_with_label(self.client, LABEL_SLUG, slug)) or bool(
            networks_with_label(self.client, LABEL_SLUG, slug)
        )

    def start(
        self, plan: BottlePlan, image: Artifact, undo: ExitStack, runtime: str | None = None
    ) -> None:
        """The bundle container, running and ready; its state dir and it are undone on failure."""
        bottle_dir = BottleDir.create(plan.slug)
        undo.callback(bottle_dir.remove)
        config: BundleConfig = plan.bundle_config()
        config_seal.seal(plan.slug, config_digest(config.to_json().encode()))
        undo.callback(config_seal.forget, plan.slug)
        secret_files, git_dir = write_bundle_secrets(plan, bottle_dir)
        upstream_ca = copy_upstream_ca(plan, bottle_dir)
        # Read back before the bundle first runs on the dir: what `resume` and `probe` check.
        config_seal.seal_handed(plan.slug, config_seal.handed_digests(bottle_dir.path))
        undo.callback(remove_container, self.client, plan.bundle_name)
        try:
            container = run_bundle_container(
                self.client,
                name=plan.bundle_name,
                image=image.image_tag,
                config=config,
                state_dir=bottle_dir.path,
                secret_files=secret_files,
                internal_network=plan.internal_network,
                bundle_ip=plan.bundle_ip,
                egress_network=plan.egress_network,
                labels={**bottle_labels(plan), LABEL_ROLE: "bundle"},
                readonly_files={
                    **(
                        {str(GIT_KEYS_MOUNT / key.name): key for key in sorted(git_dir.iterdir())}
                        if git_dir
                        else {}
                    ),
                    **({str(UPSTREAM_CA_MOUNT): upstream_ca} if upstream_ca else {}),
                },
                extra_hosts=dict(self.settings.bundle_hosts) or None,
                limits=bundle_limits(plan.memory_bytes),
                runtime=runtime,
            )
        except NameTaken as exc:
            raise BottleError(f"container name {plan.bundle_name} is taken") from exc
        wait_bundle_ready(container, config, BUNDLE_READY_TIMEOUT, state_dir=bottle_dir.path)

    # -- the rest of the lifecycle -------------------------------------------------------------
    def resume(self, record: BottleRecord) -> None:
        """Start the stopped bottle's bundle again and wait until it is ready."""
        bundle = self.bundle_container(record)
        bottle_dir = BottleDir.of(record.slug)
        # Stopped first (a no-op when it is), so no bundle process can change its dir between
        # the check of what it mounts and the start; a link there is refused before anything
        # reads the dir.
        stop_container(self.client, bundle.name)
        check_mount_sources(bundle)
        bottle_dir.ready_file.unlink(missing_ok=True)
        config = BundleConfig.from_json(config_seal.checked_config_text(record.slug, bottle_dir))
        config_seal.checked_handed_files(record.slug, bottle_dir)
        config_seal.drop_unvouched_approvals(record.slug, bottle_dir)
        bundle.start()
        wait_bundle_ready(bundle, config, BUNDLE_READY_TIMEOUT, state_dir=bottle_dir.path)

    def stop(self, record: BottleRecord, *, remove: bool) -> None:
        """Stop (or with `remove`, delete) the bundle container and then the networks."""
        if remove:
            remove_container(self.client, record.bundle_name)
        else:
            stop_container(self.client, record.bundle_name)
            return
        names = GatewayNames.of_record(record)
        found = {n.name for n in networks_with_label(self.client, LABEL_SLUG, record.slug)}
        for network in sorted(found | set(names.own_networks)):
            remove_network(self.client, network)
        if names.pool_member is not None:
            pool.forget_claim(names.pool_member)  # its state dir goes with the bottle's

    def logs(self, record: BottleRecord, *, follow: bool) -> Iterator[bytes]:
        output: Iterator[bytes] = container_logs(self.client, record.bundle_name, follow=follow)
        return output

    def parts(self, record: BottleRecord, sandbox: str) -> BottleParts:
        """The bottle's parts: `sandbox` (the agent container's or the microVM's state), its
        bundle container's state and whether its internal network is there."""
        names = GatewayNames.of_record(record)
        try:
            bundle = str(self.bundle_container(record).status)
        except BottleError:
            bundle = MISSING
        present = network_exists(self.client, names.internal_network)
        return BottleParts(agent=sandbox, bundle=bundle, network_present=present)

    def bundle_container(self, record: BottleRecord) -> Any:
        """The bottle's bundle container: by the bottle's label, or for a gateway from the
        pool (whose labels were set before it had a bottle) by its pool member's label."""
        names = GatewayNames.of_record(record)
        found = [
            c
            for c in containers_with_label(self.client, LABEL_SLUG, record.slug)
            if c.name == record.bundle_name
        ]
        if not found and names.pool_member is not None:
            found = [
                c
                for c in containers_with_label(self.client, LABEL_POOL, names.pool_member)
                if c.name == record.bundle_name and c.labels.get(LABEL_STATE) == state.state_id()
            ]
        if not found:
            raise BottleError(
                f"bottle {record.slug} has no container {record.bundle_name} "
                "(removed outside bot-bottle?)",
                fix=f"`bottle-engine stop --rm {record.slug}` and launch it again",
            )
        return found[0]


def claim_bottle_dir(slug: str) -> Path | None:
    """Make bottle `slug`'s state dir, atomically: None when it already exists (the name is
    another launch's). It is born non-empty elsewhere and moved into place, so a launch from
    the pool, which moves its member's dir there the same way, can never share it."""
    state.private_dir(state.state_dir())
    bottles = state.private_dir(state.state_dir() / "bottles")
    fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=bottles))
    (fresh / CLAIM_MARK).write_text(slug)
    try:
        move_noreplace(fresh, state.bottle_dir(slug))
    except FileExistsError:
        remove_tree(fresh)
        return None
    return state.bottle_dir(slug)


def all_names_taken(base: str) -> BottleError:
    return BottleError(
        f"all names bottle-{base} ... -{base}-N are taken",
        fix="stop bottles you no longer need (`bottle-engine ls`, `bottle-engine stop --rm`)",
    )


def remove_tree(path: Path) -> None:
    state.remove_tree(path)
