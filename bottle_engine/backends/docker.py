"""The docker backend: the agent in a hardened container whose only network is the bundle's.

Launch order: artifacts (agent + bundle images, cached by input key) -> claim a name and a
subnet (networks) -> bundle container, wait until ready -> agent container with its files ->
start. Everything is registered on an ExitStack as it is created, so an error or Ctrl-C at any
step removes it all again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from typing import Any

from bottle_engine import gvisor, records, state
from bottle_engine.agent_user import agent_uid, renumbered, reown, user_spec
from bottle_engine.artifacts import Artifact, ensure_artifact
from bottle_engine.artifacts.agent import agent_build_spec
from bottle_engine.artifacts.bundle_image import bundle_build_spec
from bottle_engine.backends.base import Availability, bottle_labels, orphan_test, wants_tty
from bottle_engine.backends.gateway import Gateway
from bottle_engine.backends.warm_pool import WarmPool
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.dockerapi import connect, docker_errors
from bottle_engine.dockerapi.client import LABEL_ROLE, LABEL_SLUG
from bottle_engine.dockerapi.containers import (
    AgentContainerSpec,
    archive_of,
    attach,
    container_logs,
    containers_with_label,
    create_agent_container,
    exec_bounded,
    exec_interactive,
    put_tree,
    read_file,
    remove_container,
    stop_container,
    stream_inside,
    writable_layer_bounded,
)
from bottle_engine.dockerapi.networks import (
    networks_with_label,
    remove_network,
)
from bottle_engine.errors import BottleError
from bottle_engine.guest import SYSTEM_EXEC_ENV, GuestFile, guest_trees
from bottle_engine.gvisor import RuntimeChoice, choose_runtime
from bottle_engine.limits import (
    AGENT_HOME_COPY_BYTES,
    IMAGE_FILE_MAX_BYTES,
    PROBE_OUTPUT_BYTES,
    PROBE_SECONDS,
    agent_disk,
)
from bottle_engine.plan import (
    AGENT_HOME,
    AGENT_UID,
    AGENT_USER,
    CA_BUNDLE_PATH,
    WORKSPACE,
    BottlePlan,
    Planner,
)
from bottle_engine.probes import Haystack, haystack_commands
from bottle_engine.progress import Progress
from bottle_engine.records import BottleRecord, BottleResources, GatewayNames
from bottle_engine.settings import EngineSettings
from bottle_engine.status import MISSING, RUNNING, BottleStatus, bottle_status

BUNDLE_READY_TIMEOUT = 120.0
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def image_file(container: Any, path: str) -> bytes | None:
    """A file of the container's image as created (not yet started), kept in the cache dir by
    image id: an image id names its content, so the file is read from Docker once per image
    (a round trip and a tar of about 200 KB less per launch)."""
    image_id = str(container.attrs.get("Image") or "")
    if not image_id.startswith("sha256:"):
        return read_file(container, path, max_bytes=IMAGE_FILE_MAX_BYTES)
    name = hashlib.sha256(f"{image_id}\n{path}".encode()).hexdigest()
    cached = state.cache_dir() / "image-files" / name
    with contextlib.suppress(OSError):
        return cached.read_bytes() if cached.stat().st_size else None
    data = read_file(container, path, max_bytes=IMAGE_FILE_MAX_BYTES)
    with contextlib.suppress(OSError):
        state.private_dir(cached.parent)
        temporary = cached.with_name(f".{name}.{os.getpid()}.tmp")
        temporary.write_bytes(data or b"")
        temporary.replace(cached)
    return data


def give_home(container: Any, uid: int, *, max_bytes: int = AGENT_HOME_COPY_BYTES) -> None:
    """The image's home, as it left it, given to `uid` (agent_user.py): copied out through a
    temporary file in the cache dir, re-owned, and put back (the daemon holds the container
    while it sends the home, so the copy cannot go back in as it comes). Refused when it comes
    to more than `max_bytes`."""
    with tempfile.TemporaryFile(dir=state.private_dir(state.cache_dir())) as spool:
        with archive_of(container, AGENT_HOME) as home:
            if home is None:
                return
            reown(home, spool, uid, max_bytes=max_bytes)
        spool.seek(0)
        put_tree(container, spool, os.path.dirname(AGENT_HOME))


def agent_user_of(container: Any) -> str:
    """`uid:gid` the agent's container was created to run as (agent_user.py), for what the
    engine runs in it as the agent."""
    return str((container.attrs.get("Config") or {}).get("User") or AGENT_USER)


def _agent_uid_of(container: Any) -> int:
    return int(agent_user_of(container).split(":", 1)[0])


class DockerBackend:
    name = "docker"

    def __init__(self, client: Any | None = None, settings: EngineSettings | None = None) -> None:
        if client is not None:
            self.client = client
        self.settings = settings or EngineSettings.from_env()
        self._gateway: Gateway | None = None
        self._info: dict[str, Any] | None = None

    @functools.cached_property
    def client(self) -> Any:
        """The daemon, connected on first use (unless a client was given)."""
        return connect()

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
        choice = self.runtime_for(first.runtime, bundle_image.image_tag)
        progress.stage(f"sandbox runtime {choice.label}: {choice.reason}")
        runtime = choice.docker_runtime
        key = self.pool.key_for(bundle_image.image_tag, runtime, first.memory_bytes)
        with ExitStack() as undo:
            claimed = self.pool.claim(planner, key, undo, progress)
            if claimed is not None:
                plan, names = claimed.plan, claimed.names
                # The member's CA exists already: the agent is made while the bundle loads
                # the config it was just handed.
                progress.stage("create agent")
                tty = wants_tty(plan.command, terminal=terminal)
                undo.callback(remove_container, self.client, plan.name)
                container = self._new_agent(plan, agent_image.image_tag, runtime, tty=tty)
                self._put_agent_files(plan, container, progress)
                progress.stage("bundle: load the bottle's config")
                claimed.wait_ready()
            else:
                progress.stage("gateway: cold (no warm pool member for this bottle)")
                plan = self.gateway.claim(planner, undo, progress)
                names = GatewayNames.of_plan(plan)
                progress.stage("start bundle, create agent")
                tty = wants_tty(plan.command, terminal=terminal)
                # The agent's container is created while the bundle starts (most of a cold
                # launch); its files need the bundle's CA, so they go in once it is ready.
                # A Ctrl-C can land inside `submit` (while the worker thread starts), where
                # nothing waits for the creation: the worker removes what it made itself
                # when the launch was undone meanwhile.
                undone = threading.Event()
                undo.callback(remove_container, self.client, plan.name)
                undo.callback(undone.set)  # first: before the removal looks for it
                with ThreadPoolExecutor(1) as creator:
                    creating = creator.submit(
                        self._new_agent_unless,
                        undone,
                        plan,
                        agent_image.image_tag,
                        runtime,
                        tty=tty,
                    )
                    try:
                        # The bundle shares the agent's runtime: it parses what the agent
                        # sends (HTTP, git packs), so gVisor guards the host kernel from it
                        # too; about a second.
                        self.gateway.start(plan, bundle_image, undo, runtime=runtime)
                    finally:
                        # Undo (on an error) must not run before the creation is over.
                        wait((creating,))
                    container = creating.result()
                self._put_agent_files(plan, container, progress)
            progress.stage("start agent")
            container.start()
            own = BottleResources(
                runtime=choice.runtime, runtime_reason=choice.reason, gateway=names
            )
            record = records.save_launched(
                plan, self.name, agent_image.image_tag, bundle_image.image_tag, own
            )
            undo.pop_all()
        return record.with_status(BottleStatus(RUNNING))

    def prepare(self, plan: BottlePlan, progress: Progress) -> tuple[Artifact, Artifact]:
        """Agent and bundle images, built only when their input keys are not in the store."""
        spec = agent_build_spec(plan, self.settings)
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

    def runtime_for(self, wanted: str, trusted_image: str) -> RuntimeChoice:
        """The agent's OCI runtime and why: gVisor when asked for, or for `auto` when
        registered and it passes the self-test with `trusted_image`, the bundle image this
        machine built; `BOTTLE_RUNTIME` overrides. Never the agent image: whoever wrote it
        (a changed build context, a pusher to the shared cache) would choose the weaker
        sandbox by failing the test on purpose."""
        wanted = self.settings.runtime or wanted
        runtimes = self.daemon_info().get("Runtimes") or {}
        return choose_runtime(
            wanted,
            runtimes,
            lambda: gvisor.self_test(self.client, trusted_image, runtimes.get(gvisor.RUNTIME_NAME)),
        )

    def daemon_info(self) -> dict[str, Any]:
        """The daemon's `info()`, asked once per backend object (runtimes, storage driver)."""
        if self._info is None:
            self._info = dict(self.client.info())
        return self._info

    @property
    def pool(self) -> WarmPool:
        """Warm gateways made before their bottles (bottle_engine/pool.py)."""
        return WarmPool(self.gateway)

    @property
    def gateway(self) -> Gateway:
        """The bottle's networks and bundle container (shared with the smolmachines backend)."""
        if self._gateway is None:
            self._gateway = Gateway(self.client, self.settings)
        return self._gateway

    def _new_agent(self, plan: BottlePlan, image: str, runtime: str | None, *, tty: bool) -> Any:
        """The agent's container, created (not started, no files yet)."""
        spec = AgentContainerSpec(
            name=plan.name,
            image=image,
            command=plan.agent_command,
            env=plan.guest_env,
            network=plan.internal_network,
            ip=plan.agent_ip,
            user=user_spec(agent_uid(plan.slug, runtime, self.daemon_info())),
            workdir=WORKSPACE,
            runtime=runtime,
            nano_cpus=int(plan.cpus * 1e9),
            memory_bytes=plan.memory_bytes,
            labels={**bottle_labels(plan), LABEL_ROLE: "agent"},
            tty=tty,
            filled=(WORKSPACE, AGENT_HOME, os.path.dirname(CA_BUNDLE_PATH)),
            disk=agent_disk(
                plan.memory_bytes,
                layer_bounded=writable_layer_bounded(self.client, image, self.daemon_info()),
            ),
        )
        return create_agent_container(self.client, spec)

    def _new_agent_unless(
        self,
        undone: threading.Event,
        plan: BottlePlan,
        image: str,
        runtime: str | None,
        *,
        tty: bool,
    ) -> Any:
        """`_new_agent`, removed again when the launch was undone while it was being made."""
        container = self._new_agent(plan, image, runtime, tty=tty)
        if undone.is_set():
            remove_container(self.client, plan.name)
        return container

    def _put_agent_files(self, plan: BottlePlan, container: Any, progress: Progress) -> None:
        """Prompt, CA certificates, settings, skills and the workspace copy (guest.py); when
        the agent is not the image's uid, its renumbered accounts and its home given to it.
        `progress` is told what the copy's search could not open."""
        uid = _agent_uid_of(container)
        extra = []
        if uid != AGENT_UID:
            for table in ("/etc/passwd", "/etc/group"):
                found = image_file(container, table)
                if found is not None:
                    extra.append(GuestFile(table, renumbered(found, uid), 0o644))
            give_home(container, uid)
        trees = guest_trees(
            plan,
            BottleDir.of(plan.slug),
            system_cas=image_file(container, SYSTEM_CA_BUNDLE),
            uid=uid,
            extra=extra,
            progress=progress,
        )
        for destination, archive in trees:
            put_tree(container, archive, destination)

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
        if remove:
            remove_container(self.client, record.name)
        else:
            stop_container(self.client, record.name)
        self.gateway.stop(record, remove=remove)

    def resume(self, record: BottleRecord, progress: Progress) -> None:
        agent = self.container_of(record)
        progress.stage("start bundle")
        self.gateway.resume(record)
        progress.stage("start agent")
        agent.start()

    def logs(self, record: BottleRecord, *, bundle: bool, follow: bool) -> Iterator[bytes]:
        if bundle:
            return self.gateway.logs(record, follow=follow)
        return container_logs(self.client, record.name, follow=follow)

    def exec(self, record: BottleRecord, argv: Sequence[str], *, tty: bool) -> int:
        container = self.container_of(record)
        if container.status != "running":
            raise BottleError(
                f"bottle {record.slug} is not running ({container.status})",
                fix=f"`bottle-engine resume {record.slug}`",
            )
        return exec_interactive(
            self.client, container, argv, user=agent_user_of(container), tty=tty
        )

    def exec_as_agent(
        self, record: BottleRecord, argv: Sequence[str], *, seconds: float = PROBE_SECONDS
    ) -> tuple[int, str]:
        container = self.container_of(record)
        code, output = exec_bounded(
            self.client,
            container,
            argv,
            user=agent_user_of(container),
            max_bytes=PROBE_OUTPUT_BYTES,
            seconds=seconds,
        )
        return code, output.decode("utf-8", "replace")

    def secret_haystacks(self, record: BottleRecord, seconds: float) -> Iterator[Haystack]:
        until = time.monotonic() + seconds
        container = self.container_of(record)
        for place, user, command in haystack_commands(agents_user=agent_user_of(container)):
            yield (
                place,
                stream_inside(
                    self.client,
                    container,
                    command,
                    user=user,
                    until=until,
                    environment=SYSTEM_EXEC_ENV,
                ),
            )

    def status(self, record: BottleRecord) -> BottleStatus:
        found = {
            c.name: str(c.status)
            for c in containers_with_label(self.client, LABEL_SLUG, record.slug)
        }
        return bottle_status(
            record.slug, self.gateway.parts(record, found.get(record.name, MISSING))
        )

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
        pooled = self.pool.remove_orphans()
        containers, networks = self._orphaned()
        for name in containers:  # first: a network cannot go while a container is on it
            remove_container(self.client, name)
        for name in networks:
            remove_network(self.client, name)
        return pooled + containers + networks

    def container_of(self, record: BottleRecord) -> Any:
        """The bottle's agent container, found by the bottle's label."""
        name = record.name
        found = [
            c for c in containers_with_label(self.client, LABEL_SLUG, record.slug) if c.name == name
        ]
        if not found:
            raise BottleError(
                f"bottle {record.slug} has no container {name} (removed outside bot-bottle?)",
                fix=f"`bottle-engine stop --rm {record.slug}` and launch it again",
            )
        return found[0]
