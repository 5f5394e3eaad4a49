"""The docker backend: the agent in a hardened container whose only network is the bundle's.

Launch order: artifacts (agent + bundle images, cached by input key) -> claim a name and a
subnet (networks) -> bundle container, wait until ready -> agent container with its files ->
start. Everything is registered on an ExitStack as it is created, so an error or Ctrl-C at any
step removes it all again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from bottle_engine import gvisor, records
from bottle_engine.artifacts import Artifact, ensure_artifact
from bottle_engine.artifacts.agent import agent_build_spec
from bottle_engine.artifacts.bundle_image import bundle_build_spec
from bottle_engine.backends.base import Availability, bottle_labels, orphan_test, wants_tty
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import GIT_KEYS_MOUNT, UPSTREAM_CA_MOUNT, BundleConfig
from bottle_engine.dockerapi import connect, docker_errors
from bottle_engine.dockerapi.bundle_container import run_bundle_container, wait_bundle_ready
from bottle_engine.dockerapi.client import LABEL_ROLE, LABEL_SLUG
from bottle_engine.dockerapi.containers import (
    AgentContainerSpec,
    NameTaken,
    attach,
    container_logs,
    containers_with_label,
    create_agent_container,
    exec_in,
    exec_interactive,
    put_tree,
    read_file,
    read_tree_inside,
    remove_container,
    stop_container,
    writable_layer_bounded,
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
from bottle_engine.guest import guest_trees
from bottle_engine.gvisor import RuntimeChoice, choose_runtime
from bottle_engine.limits import agent_disk, bundle_limits
from bottle_engine.plan import (
    AGENT_HOME,
    AGENT_UID,
    WORKSPACE,
    BottlePlan,
    Planner,
    instance_slugs,
    internal_network_of,
)
from bottle_engine.progress import Progress
from bottle_engine.records import BottleRecord, BottleResources
from bottle_engine.secrets import copy_upstream_ca, write_bundle_secrets
from bottle_engine.settings import ENV_EGRESS_NETWORK, EngineSettings
from bottle_engine.status import MISSING, RUNNING, BottleParts, BottleStatus, bottle_status

BUNDLE_READY_TIMEOUT = 120.0


class DockerBackend:
    name = "docker"

    def __init__(self, client: Any | None = None, settings: EngineSettings | None = None) -> None:
        self._client = client
        self.settings = settings or EngineSettings.from_env()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    def available(self) -> Availability:
        try:
            with docker_errors("ask the Docker daemon its version"):
                version = self.client.version().get("Version", "?")
        except BottleError as exc:
            return Availability(False, exc.message, exc.fix)
        return Availability(True, f"daemon {version} answers")

    # -- launch --------------------------------------------------------------------------------
    def launch(
        self, planner: Planner, progress: Progress, *, terminal: bool | None = None
    ) -> BottleRecord:
        first = planner(planner.base_slug)
        agent_image, bundle_image = self.prepare(first, progress)
        choice = self.runtime_for(first.runtime, agent_image.image_tag)
        progress.stage(f"sandbox runtime {choice.label}: {choice.reason}")
        runtime = choice.docker_runtime
        with ExitStack() as undo:
            plan = self.claim(planner, undo, progress)
            progress.stage("start bundle")
            # The bundle shares the agent's runtime: it parses what the agent sends (HTTP, git
            # packs), so gVisor guards the host kernel from it too; about a second of launch.
            self.start_bundle(plan, bundle_image, undo, runtime=runtime)
            progress.stage("start agent")
            tty = wants_tty(plan.command, terminal=terminal)
            container = self._create_agent(plan, agent_image.image_tag, runtime, undo, tty=tty)
            container.start()
            record = records.record_for(
                plan,
                self.name,
                replace(
                    BottleResources.launched(plan, agent_image.image_tag, bundle_image.image_tag),
                    runtime=choice.runtime,
                    runtime_reason=choice.reason,
                ),
            )
            records.save(record)
            undo.pop_all()
        return record.with_status(BottleStatus(RUNNING))

    def prepare(self, plan: BottlePlan, progress: Progress) -> tuple[Artifact, Artifact]:
        """Agent and bundle images, built only when their input keys are not in the store."""
        spec = agent_build_spec(plan.image, self.settings)
        progress.stage("agent image")
        agent = ensure_artifact(self.client, spec, progress=progress, settings=self.settings)
        progress.stage("bundle image")
        bundle = ensure_artifact(
            self.client,
            bundle_build_spec(spec.base_image, spec.ca_bundle),
            progress=progress,
            settings=self.settings,
        )
        return agent, bundle

    def runtime_for(self, wanted: str, image: str) -> RuntimeChoice:
        """The agent's OCI runtime and why: gVisor when asked for, or for `auto` when
        registered and it passes the self-test with `image`; `BOTTLE_RUNTIME` overrides."""
        wanted = self.settings.runtime or wanted
        runtimes = self.client.info().get("Runtimes") or {}
        return choose_runtime(
            wanted,
            runtimes,
            lambda: gvisor.self_test(self.client, image, runtimes.get(gvisor.RUNTIME_NAME)),
        )

    def claim(self, planner: Planner, undo: ExitStack, progress: Progress) -> BottlePlan:
        """Take the first free name of the slug sequence, with a subnet nobody uses."""
        progress.stage("networks")
        base = planner.base_slug
        for slug in instance_slugs(base):
            if self._slug_taken(slug):
                continue
            plan = planner(slug, subnets_in_use(self.client))
            labels = bottle_labels(plan)
            with ExitStack() as attempt:
                try:
                    create_internal_network(
                        self.client,
                        plan.internal_network,
                        plan.subnet,
                        plan.gateway_ip,
                        {**labels, LABEL_ROLE: "network"},
                    )
                except (NetworkNameTaken, SubnetTaken):
                    continue  # another launch raced us to this name or subnet
                attempt.callback(remove_network, self.client, plan.internal_network)
                if plan.shared_egress_network is None:
                    create_egress_network(
                        self.client, plan.egress_network, {**labels, LABEL_ROLE: "network"}
                    )
                    attempt.callback(remove_network, self.client, plan.egress_network)
                elif not network_exists(self.client, plan.shared_egress_network):
                    raise BottleError(
                        f"{ENV_EGRESS_NETWORK} names '{plan.shared_egress_network}', "
                        "which does not exist",
                        fix="create it (`docker network create NAME`) or unset the variable",
                    )
                undo.push(attempt.pop_all())
                return plan
        raise BottleError(
            f"all names bottle-{base} ... -{base}-N are taken",
            fix="stop bottles you no longer need (`bottle-engine ls`, `bottle-engine stop --rm`)",
        )

    def _slug_taken(self, slug: str) -> bool:
        if records.load(slug) is not None:
            return True
        return bool(containers_with_label(self.client, LABEL_SLUG, slug)) or bool(
            networks_with_label(self.client, LABEL_SLUG, slug)
        )

    def start_bundle(
        self, plan: BottlePlan, image: Artifact, undo: ExitStack, runtime: str | None = None
    ) -> None:
        """The bundle container, running and ready; its state dir and it are undone on failure.

        Shared with the smolmachines backend, whose VM talks to the same bundle.
        """
        bottle_dir = BottleDir.create(plan.slug)
        undo.callback(bottle_dir.remove)
        config: BundleConfig = plan.bundle_config()
        secret_files, git_dir = write_bundle_secrets(plan, bottle_dir)
        upstream_ca = copy_upstream_ca(plan, bottle_dir)
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

    def _create_agent(
        self, plan: BottlePlan, image: str, runtime: str | None, undo: ExitStack, *, tty: bool
    ) -> Any:
        spec = AgentContainerSpec(
            name=plan.name,
            image=image,
            command=plan.agent_command,
            env=plan.guest_env,
            network=plan.internal_network,
            ip=plan.agent_ip,
            user=f"{AGENT_UID}:{AGENT_UID}",
            workdir=WORKSPACE,
            runtime=runtime,
            nano_cpus=int(plan.cpus * 1e9),
            memory_bytes=plan.memory_bytes,
            labels={**bottle_labels(plan), LABEL_ROLE: "agent"},
            dns_servers=(plan.bundle_ip,),  # the bundle serves no DNS: forwarded names fail
            tty=tty,
            disk=agent_disk(
                plan.memory_bytes, layer_bounded=writable_layer_bounded(self.client, image)
            ),
        )
        undo.callback(remove_container, self.client, plan.name)
        container = create_agent_container(self.client, spec)
        trees = guest_trees(
            plan,
            BottleDir.of(plan.slug),
            system_cas=read_file(container, "/etc/ssl/certs/ca-certificates.crt"),
        )
        for destination, archive in trees:
            put_tree(container, archive, destination)
        return container

    # -- the rest of the lifecycle -------------------------------------------------------------
    def attach(self, record: BottleRecord) -> int:
        container = self.container_of(record)
        if container.status == "created":
            raise BottleError(
                f"bottle {record.slug} is stopped", fix=f"`bottle-engine resume {record.slug}`"
            )
        # A finished agent: attaching replays its output and returns its exit code.
        return attach(self.client, container)

    def stop(self, record: BottleRecord, *, remove: bool) -> None:
        for name in (record.name, record.bundle_name):
            if remove:
                remove_container(self.client, name)
            else:
                stop_container(self.client, name)
        if remove:
            for network in networks_with_label(self.client, LABEL_SLUG, record.slug):
                remove_network(self.client, network.name)

    def resume(self, record: BottleRecord, progress: Progress) -> None:
        agent = self.container_of(record)
        progress.stage("start bundle")
        self.resume_bundle(record)
        progress.stage("start agent")
        agent.start()

    def logs(self, record: BottleRecord, *, bundle: bool, follow: bool) -> Iterator[bytes]:
        name = record.bundle_name if bundle else record.name
        return container_logs(self.client, name, follow=follow)

    def exec(self, record: BottleRecord, argv: Sequence[str], *, tty: bool) -> int:
        container = self.container_of(record)
        if container.status != "running":
            raise BottleError(
                f"bottle {record.slug} is not running ({container.status})",
                fix=f"`bottle-engine resume {record.slug}`",
            )
        return exec_interactive(
            self.client, container, argv, user=f"{AGENT_UID}:{AGENT_UID}", tty=tty
        )

    def exec_as_agent(self, record: BottleRecord, argv: Sequence[str]) -> tuple[int, str]:
        return exec_in(self.container_of(record), argv, user=f"{AGENT_UID}:{AGENT_UID}")

    def secret_haystacks(self, record: BottleRecord) -> dict[str, bytes]:
        container = self.container_of(record)
        dump = "for f in /proc/[0-9]*/environ; do cat $f; echo; done; env"
        _, environments = exec_in(container, ["sh", "-c", dump], user="0")
        places = {"process environments": environments.encode()}
        for path in (AGENT_HOME, WORKSPACE, "/tmp", "/etc"):
            places[path] = read_tree_inside(container, path)
        return places

    def status(self, record: BottleRecord) -> BottleStatus:
        return bottle_status(record.slug, bottle_parts(self.client, record))

    def orphans(self) -> list[str]:
        containers, networks = self._orphaned()
        return containers + networks

    def _orphaned(self) -> tuple[list[str], list[str]]:
        """Containers and networks of bottles that no record accounts for (a crashed CLI, a
        deleted record): those labelled with this state dir whose slug has no record here."""
        orphaned = orphan_test()
        containers = [
            c.name for c in containers_with_label(self.client, LABEL_SLUG) if orphaned(c.labels)
        ]
        networks = [
            n.name
            for n in networks_with_label(self.client, LABEL_SLUG)
            if orphaned(n.attrs.get("Labels"))
        ]
        return containers, networks

    def remove_orphans(self) -> list[str]:
        containers, networks = self._orphaned()
        for name in containers:  # first: a network cannot go while a container is on it
            remove_container(self.client, name)
        for name in networks:
            remove_network(self.client, name)
        return containers + networks

    def container_of(self, record: BottleRecord, name: str | None = None) -> Any:
        """The bottle's container `name` (default: the agent's), found by the bottle's label."""
        name = name or record.name
        found = [
            c for c in containers_with_label(self.client, LABEL_SLUG, record.slug) if c.name == name
        ]
        if not found:
            raise BottleError(
                f"bottle {record.slug} has no container {name} (removed outside bot-bottle?)",
                fix=f"`bottle-engine stop --rm {record.slug}` and launch it again",
            )
        return found[0]

    def resume_bundle(self, record: BottleRecord) -> None:
        """Start the stopped bottle's bundle again and wait until it is ready."""
        bundle = self.container_of(record, record.bundle_name)
        bottle_dir = BottleDir.of(record.slug)
        bottle_dir.ready_file.unlink(missing_ok=True)
        bundle.start()
        config = BundleConfig.load(bottle_dir.bundle_config)
        wait_bundle_ready(bundle, config, BUNDLE_READY_TIMEOUT, state_dir=bottle_dir.path)


def bottle_parts(client: Any, record: BottleRecord) -> BottleParts:
    """The states of the bottle's containers (agent, bundle) and its internal network, from
    the daemon; the smolmachines backend puts its microVM's state in place of the agent's."""
    found = {c.name: str(c.status) for c in containers_with_label(client, LABEL_SLUG, record.slug)}
    networks = {n.name for n in networks_with_label(client, LABEL_SLUG, record.slug)}
    return BottleParts(
        agent=found.get(record.name, MISSING),
        bundle=found.get(record.bundle_name, MISSING),
        network_present=internal_network_of(record.slug) in networks,
    )
