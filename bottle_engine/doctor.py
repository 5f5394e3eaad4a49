"""`doctor`: is this machine ready to run bottles? Each check is a small function -> Check."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bottle_engine import gvisor, state
from bottle_engine.artifacts.base import resolve_base_image
from bottle_engine.backends import backend_named
from bottle_engine.errors import BottleError
from bottle_engine.host import Host
from bottle_engine.limits import AGENT_DISK_BYTES, GIB


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = True  # a failed required check makes `doctor` exit 1


def check_docker() -> Check:
    availability = backend_named("docker").available()
    return Check("docker", availability.ok, availability.detail, availability.fix)


def check_gvisor() -> Check:
    """Which runtime `auto` gets here, and whether the agent's disk writes are bounded."""
    install = "`sudo bottle-engine gvisor install` (scripts/setup runs it)"
    host = Host()
    try:
        runtimes = host.info().get("Runtimes") or {}
    except BottleError as exc:
        return Check("gvisor", False, exc.message, required=False)
    info = runtimes.get(gvisor.RUNTIME_NAME)
    if info is None:
        return Check(
            "gvisor",
            False,
            "runsc is not registered: runtime 'auto' falls back to runc",
            install,
            required=False,
        )
    binary = str(info.get("path", gvisor.RUNTIME_NAME))
    image = resolve_base_image(None)
    if host.image_id(image) is None:
        return Check(
            "gvisor",
            True,
            f"runsc ({binary}) is registered; its self-test waits for the base image {image}, "
            "and runtime 'auto' uses gVisor only if the agent image passes it",
            required=False,
        )
    if not host.gvisor_passes(image, info):
        return Check(
            "gvisor",
            False,
            f"runsc ({binary}, {_runsc_version(binary)}) fails the self-test with {image} (too "
            "old for this userland's system calls, or a sandbox that sees the host's network): "
            "runtime 'auto' uses runc",
            install,
            required=False,
        )
    args = list(info.get("runtimeArgs") or [])
    if args != list(gvisor.RUNTIME_ARGS):
        return Check(
            "gvisor",
            False,
            f"runsc ({binary}) passes the self-test but runs with {args or 'no arguments'}, not "
            f"{list(gvisor.RUNTIME_ARGS)}: the agent's writes are not bounded by its memory limit",
            install,
            required=False,
        )
    return Check(
        "gvisor",
        True,
        f"runsc ({binary}, {_runsc_version(binary)}) passes the self-test: runtime 'auto' uses "
        "gVisor; the agent's writable layer is in memory, bounded by its memory limit",
        required=False,
    )


def _runsc_version(binary: str) -> str:
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    first = result.stdout.strip().splitlines()[:1]
    return first[0] if first else "version unknown"


def check_base_image() -> Check:
    tag = resolve_base_image(None)
    try:
        found = Host().image_id(tag)
    except BottleError as exc:
        return Check("base image", False, exc.message, required=False)
    if found:
        return Check("base image", True, f"{tag} is present", required=False)
    return Check(
        "base image",
        False,
        f"{tag} is not in the daemon and no registry may be reachable",
        "`bottle-engine base bootstrap` (debootstrap + import), then "
        "export BOTTLE_BASE_IMAGE=bot-bottle/base:bookworm",
        required=False,
    )


def check_smolvm() -> Check:
    availability = backend_named("smolmachines").available()
    return Check("smolvm", availability.ok, availability.detail, availability.fix, required=False)


def check_kvm() -> Check:
    device = Path("/dev/kvm")
    if not device.exists():
        return Check(
            "kvm",
            False,
            "/dev/kvm is absent: microVMs cannot boot here",
            "use the docker backend, or a host with KVM",
            required=False,
        )
    if not os.access(device, os.R_OK | os.W_OK):
        return Check(
            "kvm",
            False,
            "/dev/kvm is not readable and writable by this user",
            "add yourself to the kvm group",
            required=False,
        )
    return Check(
        "kvm",
        True,
        "/dev/kvm is usable (a guest may still fail to boot on nested or software virtualization)",
        required=False,
    )


def check_debootstrap() -> Check:
    if shutil.which("debootstrap"):
        return Check(
            "debootstrap", True, "present (base images without a registry)", required=False
        )
    return Check(
        "debootstrap",
        False,
        "absent: the base image cannot be bootstrapped",
        "apt-get install debootstrap",
        required=False,
    )


def check_dirs() -> Check:
    try:
        roots = (state.cache_dir(), state.state_dir())
    except BottleError as exc:
        return Check("state dirs", False, exc.message, exc.fix)
    for directory in roots:
        try:
            if not directory.exists():
                state.private_dir(directory)
        except OSError as exc:
            return Check(
                "state dirs",
                False,
                f"{directory}: {exc.strerror}",
                "set BOTTLE_CACHE_DIR / BOTTLE_STATE_DIR to writable directories",
            )
        if not os.access(directory, os.W_OK):
            return Check(
                "state dirs",
                False,
                f"{directory} is not writable",
                "set BOTTLE_CACHE_DIR / BOTTLE_STATE_DIR to writable directories",
            )
    exposed = state.exposed_dirs()
    if exposed:
        listed = ", ".join(f"{path} ({mode:04o})" for path, mode in exposed[:5])
        more = f" and {len(exposed) - 5} more" if len(exposed) > 5 else ""
        return Check(
            "state dirs",
            False,
            f"other users may enter or read {listed}{more}: bot-bottle's records, audit logs, "
            "approvals, secrets handed to bundles and caches live there",
            "chmod go-rwx " + " ".join(str(path) for path, _ in exposed[:5]),
        )
    return Check(
        "state dirs",
        True,
        f"cache {state.cache_dir()}, state {state.state_dir()} (private: 0700)",
    )


def check_agent_disk() -> Check:
    """Can the agent's writable layer be bounded on this daemon (`--storage-opt size`)?"""
    host = Host()
    try:
        info = host.info()
    except BottleError as exc:
        return Check("agent disk", False, exc.message, required=False)
    image = resolve_base_image(None)
    backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem", "?")
    driver = f"{info.get('Driver', '?')} on {backing}"
    tmp = "/tmp is a tmpfs counted in the bottle's memory limit"
    if host.image_id(image) is None:
        return Check(
            "agent disk",
            False,
            f"storage driver {driver}; whether it bounds the writable layer is known once the "
            f"base image {image} is present; {tmp}",
            required=False,
        )
    if host.writable_layer_bounded(image):
        return Check(
            "agent disk",
            True,
            f"storage driver {driver} bounds the agent's writable layer "
            f"({AGENT_DISK_BYTES // GIB} GiB); {tmp}",
            required=False,
        )
    return Check(
        "agent disk",
        False,
        f"storage driver {driver} cannot bound a container's writable layer: what the agent "
        f"writes to /workspace or its home comes off the host's disk unbounded; {tmp}",
        "put /var/lib/docker on xfs mounted with pquota (overlay2), or btrfs/zfs, to bound it",
        required=False,
    )


def check_socket_memory() -> Check:
    """Do a bottle's memory limits count the kernel's buffers of its TCP connections?

    Under cgroup v2 they do. Under cgroup v1 nothing counts them: Docker's KernelMemoryTCP is
    ignored by runc 1.1, and this runsc uses the host kernel's network stack (gvisor.py)."""
    try:
        version = str(Host().info().get("CgroupVersion") or "?")
    except BottleError as exc:
        return Check("socket memory", False, exc.message, required=False)
    if version != "1":
        return Check(
            "socket memory",
            True,
            f"cgroup v{version}: the kernel's buffers of a bottle's connections count in its "
            "memory limit",
            required=False,
        )
    return Check(
        "socket memory",
        False,
        "cgroup v1: the kernel's buffers of a bottle's TCP connections count in no memory "
        "limit; an agent that sends to itself without reading holds host memory up to "
        "net.ipv4.tcp_mem, where TCP stalls for every program on the host",
        "boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1)",
        required=False,
    )


CHECKS: tuple[Callable[[], Check], ...] = (
    check_docker,
    check_gvisor,
    check_base_image,
    check_debootstrap,
    check_smolvm,
    check_kvm,
    check_dirs,
    check_agent_disk,
    check_socket_memory,
)


def run_checks() -> list[Check]:
    return [check() for check in CHECKS]
