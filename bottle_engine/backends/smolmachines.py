"""The smolmachines backend: the agent in a libkrun microVM (through smolvm) whose only network
route is the bottle's bundle.

The bundle is the same container as in the docker backend, on the per-bottle bridge with its
pinned IP (networks, bundle and images come from `DockerBackend`). The agent image is packed
into a ``.smolmachine`` (cached by artifact digest) and a named machine is created from it with
virtio-net egress limited to ``--allow-cidr <bundle_ip>/32``: the guest reaches the bundle's
proxy, git gate and supervise ports and nothing else (the guest env uses IP literals).
smolvm's host-side network stack makes those connections, so the bundle sees them come from the
host's address on the bottle's bridge (the bridge gateway), not from a guest IP.
That stack also answers every guest DNS query itself and forwards it from the host whatever the
allow list says (by default to 1.1.1.1), so its upstream is pinned to the bundle, which serves
no DNS (``--dns <bundle_ip>``), as the docker backend pins the container's.

Launch order: artifacts -> pack -> networks + bundle -> ``machine create`` -> ``machine start``
-> guest files copied in (CA, Claude settings, the 0600 prompt, skills, the workspace copy).
Each step registers its undo on an ExitStack, so a failure or Ctrl-C removes it all. Attach runs
the agent through ``machine exec -it``; logs are smolvm's ``machine logs`` of the workload.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bottle_engine import records, state
from bottle_engine.artifacts import Artifact
from bottle_engine.artifacts.pack import Pack, pack_artifact
from bottle_engine.backends.base import Availability, bottle_labels, orphan_test
from bottle_engine.backends.docker import DockerBackend
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.dockerapi.client import LABEL_MANAGED
from bottle_engine.errors import BottleError
from bottle_engine.guest import SYSTEM_EXEC_ENV, guest_trees, system_command
from bottle_engine.limits import PROBE_OUTPUT_BYTES, PROBE_SECONDS
from bottle_engine.plan import (
    AGENT_UID,
    AGENT_USER,
    CA_BUNDLE_PATH,
    CA_CERT_PATH,
    WORKSPACE,
    BottlePlan,
    Planner,
)
from bottle_engine.probes import Haystack, haystack_commands
from bottle_engine.progress import Progress
from bottle_engine.records import BottleRecord, BottleResources, GatewayNames
from bottle_engine.settings import EngineSettings
from bottle_engine.smolvm import MachineSpec, Smolvm
from bottle_engine.status import MISSING, RUNNING, BottleStatus, bottle_status

# The machine's own workload only keeps it up; the agent runs through `machine exec` on attach.
KEEPALIVE = ("sleep", "infinity")
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"
_STATES = {"running": "running", "stopped": "stopped", "created": "stopped"}
MIN_MEMORY_MIB = 256


def vm_resources(cpus: float, memory_bytes: int) -> tuple[int, int]:
    """The plan's limits as smolvm counts them: whole vCPUs (rounded up), MiB (at least 256)."""
    return max(1, math.ceil(cpus)), max(MIN_MEMORY_MIB, memory_bytes // (1024 * 1024))


def machine_spec(plan: BottlePlan, sidecar: Path) -> MachineSpec:
    """The VM for `plan`: the packed agent image, the guest env, egress to the bundle only."""
    cpus, memory_mib = vm_resources(plan.cpus, plan.memory_bytes)
    return MachineSpec(
        name=plan.name,
        sidecar=sidecar,
        allow_cidrs=(f"{plan.bundle_ip}/32",),
        dns=plan.bundle_ip,  # the bundle serves no DNS: forwarded names fail
        env=plan.guest_env,
        labels={**bottle_labels(plan), LABEL_MANAGED: "1"},
        cpus=cpus,
        memory_mib=memory_mib,
        workdir=WORKSPACE,
        workload=KEEPALIVE,
        user=AGENT_USER,  # non-root, as in the docker backend
    )


class SmolmachinesBackend:
    name = "smolmachines"

    def __init__(
        self,
        client: Any | None = None,
        smolvm: Smolvm | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        self._docker = DockerBackend(client, settings)
        self._smolvm = smolvm

    @property
    def smolvm(self) -> Smolvm:
        if self._smolvm is None:
            self._smolvm = Smolvm(settings=self._docker.settings)
        return self._smolvm

    def available(self) -> Availability:
        """Whether a usable smolvm is installed (the bundle's Docker is the docker backend's
        `available`)."""
        try:
            info = self.smolvm.info
        except BottleError as exc:
            return Availability(False, exc.message, exc.fix)
        return Availability(True, f"smolvm {info.version} at {info.binary}")

    # -- launch --------------------------------------------------------------------------------
    def prepare(
        self, plan: BottlePlan, progress: Progress, *, via_registry: bool = False
    ) -> tuple[Artifact, Artifact, Pack]:
        """Agent and bundle images (cached by input key) and the agent's pack (by digest)."""
        agent_image, bundle_image = self._docker.prepare(plan, progress)
        pack = pack_artifact(
            agent_image,
            via_registry=via_registry,
            progress=progress,
            smolvm=self._smolvm,
            docker_client=self._docker.client,
            settings=self._docker.settings,
        )
        return agent_image, bundle_image, pack

    def launch(
        self, planner: Planner, progress: Progress, *, terminal: bool | None = None
    ) -> BottleRecord:
        # `terminal` is not needed here: `attach` asks for a TTY when it runs the agent.
        agent_image, bundle_image, pack = self.prepare(planner(planner.base_slug), progress)
        with ExitStack() as undo:
            plan = self._docker.gateway.claim(planner, undo, progress)
            progress.stage("start bundle")
            bottle_dir = BottleDir.of(plan.slug)
            self._docker.gateway.start(plan, bundle_image, undo)
            progress.stage("create microVM")
            undo.callback(self._delete_machine, plan.name)
            self.smolvm.machine_create(machine_spec(plan, pack.sidecar))
            progress.stage("start microVM")
            self.smolvm.machine_start(plan.name)
            progress.stage("copy files into the microVM")
            self._put_guest_files(plan, bottle_dir, progress)
            own = BottleResources(
                artifact_digest=agent_image.digest,
                pack=str(pack.sidecar),
                command=tuple(plan.agent_command),
                gateway=GatewayNames.of_plan(plan),
            )
            record = records.save_launched(
                plan, self.name, agent_image.image_tag, bundle_image.image_tag, own
            )
            undo.pop_all()
        return record.with_status(BottleStatus(RUNNING))

    def _put_guest_files(self, plan: BottlePlan, bottle_dir: BottleDir, progress: Progress) -> None:
        # The guest's own system CAs are only known inside it: the bundle is made there below.
        trees = guest_trees(plan, bottle_dir, system_cas=None, progress=progress)
        for index, (destination, data) in enumerate(trees):
            self._put_tree(plan.name, index, data, destination)
        # The CA bundle is the guest's own system CAs plus the bottle's CA, as in the docker
        # backend; the system part is only known inside the guest.
        self._run_as_root(
            plan.name,
            f"if [ -f {SYSTEM_CAS} ]; then cat {SYSTEM_CAS} {CA_CERT_PATH} > {CA_BUNDLE_PATH}; fi",
        )

    def _put_tree(self, machine: str, index: int, data: bytes, destination: str) -> None:
        """Copy a tar into the guest (mode 0600, root's) and unpack it at `destination`, which
        becomes the agent's unless it is `/`: the owner of `/` could swap its entries (the
        /lib64 link to the ELF interpreter), and so start what root runs there later."""
        guest_tar = f"/tmp/bot-bottle-{index}.tar"
        # Never staged in the bottle's dir: its bundle can write there, and smolvm opens the
        # file by path.
        with state.staged(data) as staged:
            self.smolvm.machine_copy_in(staged, machine, guest_tar, mode=0o600, uid=0)
        script = f"mkdir -p {destination} && tar -xpf {guest_tar} -C {destination}"
        script += f" && rm -f {guest_tar}"
        if destination != "/":
            script += f" && chown {AGENT_UID}:{AGENT_UID} {destination}"
        self._run_as_root(machine, script)

    def _run_as_root(self, machine: str, script: str) -> None:
        """`script` run by sh as root in the guest, after the workspace copy (the agent's,
        perhaps) is in: nothing of the guest's PATH or loader variables is used
        (`system_command`, `SYSTEM_EXEC_ENV`)."""
        self.smolvm.machine_exec(
            machine, system_command(["sh", "-c", script]), user="0", env=SYSTEM_EXEC_ENV
        )

    def _delete_machine(self, name: str) -> None:
        try:
            self.smolvm.machine_delete(name)
        except BottleError:
            if any(m.get("name") == name for m in self.smolvm.machines()):
                raise

    # -- the rest of the lifecycle -------------------------------------------------------------
    def attach(self, record: BottleRecord) -> int:
        if self._vm_state(record) != RUNNING:
            raise BottleError(
                f"bottle {record.slug} is not running", fix=f"`bottle-engine resume {record.slug}`"
            )
        command = record.resources.command or ("sh",)
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        # The agent's stream: made safe even when it goes to a file or pipe, as `logs` is.
        return self.smolvm.exec_attached(record.name, command, interactive=interactive, guard=True)

    def logs(self, record: BottleRecord, *, bundle: bool, follow: bool) -> Iterator[bytes]:
        """The workload's output from smolvm (``machine logs``); the bundle's from Docker."""
        if bundle:
            yield from self._docker.gateway.logs(record, follow=follow)
            return
        if self._machine(record.name) is None:
            raise BottleError(
                f"the microVM of bottle {record.slug} is gone",
                fix=f"`bottle-engine stop --rm {record.slug}` removes what is left of it",
            )
        yield from self.smolvm.logs(record.name, follow=follow)

    def stop(self, record: BottleRecord, *, remove: bool) -> None:
        machine = self._machine(record.name)
        if machine is not None:
            if machine.get("state") == "running":
                self.smolvm.machine_stop(record.name)
            if remove:
                self._delete_machine(record.name)
        self._docker.gateway.stop(record, remove=remove)

    def resume(self, record: BottleRecord, progress: Progress) -> None:
        if self._machine(record.name) is None:
            raise BottleError(
                f"the microVM of bottle {record.slug} is gone",
                fix=f"`bottle-engine stop --rm {record.slug}` and launch it again",
            )
        progress.stage("start bundle")
        self._docker.gateway.resume(record)
        progress.stage("start microVM")
        self.smolvm.machine_start(record.name)

    def status(self, record: BottleRecord) -> BottleStatus:
        return bottle_status(
            record.slug, self._docker.gateway.parts(record, self._vm_state(record))
        )

    def _vm_state(self, record: BottleRecord) -> str:
        machine = self._machine(record.name)
        if machine is None:
            return MISSING
        return _STATES.get(str(machine.get("state")), str(machine.get("state")))

    def exec(self, record: BottleRecord, argv: Sequence[str], *, tty: bool) -> int:
        if self._vm_state(record) != RUNNING:
            raise BottleError(
                f"bottle {record.slug} is not running", fix=f"`bottle-engine resume {record.slug}`"
            )
        return self.smolvm.exec_attached(record.name, argv, interactive=tty, user=AGENT_USER)

    def exec_as_agent(
        self, record: BottleRecord, argv: Sequence[str], *, seconds: float = PROBE_SECONDS
    ) -> tuple[int, str]:
        code, output = self.smolvm.exec_output(
            record.name, argv, user=AGENT_USER, max_bytes=PROBE_OUTPUT_BYTES, seconds=seconds
        )
        return code, output.decode("utf-8", "replace")

    def secret_haystacks(self, record: BottleRecord, seconds: float) -> Iterator[Haystack]:
        # All read by root: smolvm's workload is not an unprivileged container (no
        # `--unprivileged`), so root keeps the capabilities to read every file and environment.
        until = time.monotonic() + seconds
        for place, user, command in haystack_commands():
            yield (
                place,
                self.smolvm.exec_stream(
                    record.name, command, user=user, until=until, env=SYSTEM_EXEC_ENV
                ),
            )

    def orphans(self) -> list[str]:
        """Machines bot-bottle made that no record accounts for (docker leftovers: the docker
        backend's `orphans`)."""
        orphaned = orphan_test()
        return [
            str(machine["name"])
            for machine in self.smolvm.machines()
            if (labels := machine.get("labels") or {}).get(LABEL_MANAGED) and orphaned(labels)
        ]

    def remove_orphans(self) -> list[str]:
        removed = []
        for name in self.orphans():
            self._delete_machine(name)
            removed.append(name)
        return removed

    def _machine(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.smolvm.machines() if m.get("name") == name), None)
