"""Running the bundle container: the bottle's gateway, pinned on its internal network.

The container gets the bundle's config (JSON, read-only), the bottle's state dir (audit log, CA,
readiness), each secret's value file (read-only, under `SECRETS_MOUNT`) and nothing else from
the host. It runs as a non-root user with no capabilities, a read-only root file system, a
private sized /tmp, and memory, CPU and pids limits sized from the bottle (bottle_engine/limits.py).

Its user: the engine's own when the engine is not root. When it is, a uid and gid of the
bottle's own that no host account holds (bottle_engine/host_ids.py), to which the state dir and
the files handed to the bundle are given; the container gets an /etc/passwd and /etc/group
naming that user (ssh, for git upstreams, refuses to run as a uid without an entry).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
from docker.types import Mount

from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import (
    CONFIG_PATH,
    SECRETS_MOUNT,
    STATE_MOUNT,
    BundleConfig,
)
from bottle_engine.dockerapi.client import (
    LABEL_MANAGED,
    LABEL_ROLE,
    NO_HEALTHCHECK,
    bottle_bounds,
    docker_errors,
    refuse_engine_labels,
)
from bottle_engine.dockerapi.images import image_config
from bottle_engine.errors import BottleError
from bottle_engine.host_ids import bundle_id_for
from bottle_engine.limits import BundleLimits, bundle_limits, tmpfs_options
from bottle_engine.regular_files import load_json, read_regular

_LOG_LINES = 30


def bundle_user(slug: str) -> tuple[int, int]:
    """uid/gid bottle `slug`'s bundle runs as: the engine's own user, or (instead of root) an id
    of the bottle's own that no host account holds."""
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        return uid, gid
    own = bundle_id_for(slug)
    return own, own


def account_files(uid: int, gid: int) -> dict[str, str]:
    """/etc/passwd and /etc/group for the bundle: root, and `bottle` with the bundle's ids."""
    return {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"bottle:x:{uid}:{gid}:bot-bottle bundle:/tmp:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\nbottle:x:{gid}:\n",
    }


@dataclass(frozen=True)
class BundlePlacement:
    """Where a bundle container runs and as what: its name and image, the state dir mounted
    at `STATE_MOUNT`, its address on the internal network, its way out, and its labels, host
    names, limits and OCI runtime (None: the daemon's default). A bottle's bundle and a warm
    pool member's are placed alike; they differ in what they are handed."""

    name: str
    image: str
    state_dir: Path
    internal_network: str
    bundle_ip: str
    egress_network: str
    labels: Mapping[str, str]
    extra_hosts: Mapping[str, str] | None = None
    limits: BundleLimits = field(default_factory=lambda: bundle_limits(0))
    runtime: str | None = None


def run_bundle_container(
    client: Any,
    *,
    name: str,
    image: str,
    config: BundleConfig,
    state_dir: Path,
    secret_files: Mapping[str, Path],
    internal_network: str,
    bundle_ip: str,
    egress_network: str,
    labels: Mapping[str, str],
    extra_hosts: Mapping[str, str] | None = None,
    readonly_files: Mapping[str, Path] | None = None,
    limits: BundleLimits | None = None,
    runtime: str | None = None,
) -> Any:
    """Create and start the bundle container; returns the SDK container object.

    `secret_files` maps each secret's name to the host file with its value; the config's
    `SecretBinding.value_file` must be ``SECRETS_MOUNT/<name>``. `readonly_files` maps further
    paths inside the container (git identity files, known_hosts, CA files) to host files.
    `limits` defaults to the smallest bundle's (`limits.bundle_limits`); `runtime` is the OCI
    runtime (None: the daemon's default). On failure after creation the container is removed
    again.
    """
    _check_secrets(config, secret_files)
    if Path(config.state_dir) != STATE_MOUNT:
        raise BottleError(
            f"bundle config of {config.slug}: state_dir is {config.state_dir}, "
            f"but the bundle mounts the state dir at {STATE_MOUNT}",
            fix="leave BundleConfig.state_dir at its default",
        )
    placement = BundlePlacement(
        name=name,
        image=image,
        state_dir=state_dir,
        internal_network=internal_network,
        bundle_ip=bundle_ip,
        egress_network=egress_network,
        labels=labels,
        extra_hosts=extra_hosts,
        limits=limits or bundle_limits(0),
        runtime=runtime,
    )
    bottle_dir = BottleDir(state_dir)
    bottle_dir.private_subdir(state_dir)
    config_file = bottle_dir.write_private(bottle_dir.bundle_config, config.to_json())
    files: dict[str, Path] = {
        str(CONFIG_PATH): config_file,
        **{f"{SECRETS_MOUNT}/{secret}": path for secret, path in secret_files.items()},
        **(readonly_files or {}),
    }
    return _start(client, placement, owner=config.slug, command=None, files=files)


def run_pool_bundle_container(
    client: Any, placement: BundlePlacement, *, member: str, agent_ip: str
) -> Any:
    """A warm pool member's bundle: no config, no secrets; its services load and wait for the
    config the engine writes into its state dir at claim time (bottle_engine/bundle/waiting.py).
    Until then nothing listens: the proxy, the gate and MCP refuse every connection."""
    BottleDir(placement.state_dir).private_subdir(placement.state_dir)
    command = ["--pool", placement.bundle_ip, agent_ip]
    return _start(client, placement, owner=f"pool-{member}", command=command, files={})


def _start(
    client: Any,
    placement: BundlePlacement,
    *,
    owner: str,
    command: list[str] | None,
    files: Mapping[str, Path],
) -> Any:
    """Run the bundle as `owner`'s user (`bundle_user`), with `files` (paths inside -> host
    files) mounted read-only beside the state dir, both handed over to that user."""
    refuse_engine_labels(
        image_config(client, placement.image),
        placement.image,
        "bundle",
        fix="the bundle image is built FROM the bottle's base image (`base_image` in the "
        "manifest, or BOTTLE_BASE_IMAGE) and keeps its labels: use a base image that sets "
        "none of them",
    )
    uid, gid = bundle_user(owner)
    mounted = {**files, **_accounts(BottleDir(placement.state_dir), uid, gid)}
    _hand_over(placement.state_dir, mounted.values(), uid, gid)
    return _create_and_start(client, placement, command, f"{uid}:{gid}", mounted)


def _accounts(bottle_dir: BottleDir, uid: int, gid: int) -> dict[str, Path]:
    """With the engine as root: /etc/passwd and /etc/group naming the bundle's own user."""
    if os.geteuid() != 0:
        return {}
    accounts = bottle_dir.private_subdir(bottle_dir.accounts_dir)
    files = {}
    for database, text in account_files(uid, gid).items():
        files[f"/etc/{database}"] = bottle_dir.write_private(accounts / database, text)
    return files


def _create_and_start(
    client: Any,
    placement: BundlePlacement,
    command: list[str] | None,
    user: str,
    files: Mapping[str, Path],
) -> Any:
    limits = placement.limits
    mounts = [Mount(str(STATE_MOUNT), str(placement.state_dir.resolve()), type="bind")]
    mounts += [
        Mount(inside, str(Path(host).resolve()), type="bind", read_only=True)
        for inside, host in sorted(files.items())
    ]
    with docker_errors(f"starting the bundle container {placement.name}"):
        container = client.containers.create(
            placement.image,
            command=command,
            name=placement.name,
            labels={**placement.labels, LABEL_MANAGED: "1", LABEL_ROLE: "bundle"},
            user=user,
            mounts=mounts,
            network=placement.internal_network,
            networking_config={
                placement.internal_network: client.api.create_endpoint_config(
                    ipv4_address=placement.bundle_ip
                )
            },
            extra_hosts=dict(placement.extra_hosts or {}),
            **bottle_bounds(
                memory_bytes=limits.memory_bytes, pids=limits.pids, nano_cpus=limits.nano_cpus
            ),
            read_only=True,
            tmpfs={"/tmp": tmpfs_options(limits.tmp_bytes, executable=True)},
            init=True,  # reaps the git processes the gate starts
            healthcheck=NO_HEALTHCHECK,  # the base image's would probe on the host's CPUs
            detach=True,
            runtime=placement.runtime,
        )
        try:
            client.networks.get(placement.egress_network).connect(container)
            container.start()
        except BaseException:
            _remove_quietly(container)
            raise
    return container


def check_mount_sources(container: Any) -> None:
    """Before a stopped bundle starts again: every host path it mounts is still what the engine
    mounted, or `BottleError` naming it.

    Docker resolves a bind mount's host path again at each start, and the files handed to the
    bundle read-only live in its state dir, which the bundle can write: a symbolic link put in
    a file's place mounted any host file it names into the bundle. So each source must have
    no link in its path (the engine mounted resolved paths), the state dir must be a
    directory and every other source a regular file. The bundle is stopped meanwhile (its
    processes are gone with it), so nothing changes them between this check and the start.
    """
    with docker_errors(f"inspecting the bundle container {container.name}"):
        container.reload()
    for mount in container.attrs.get("Mounts") or []:
        if mount.get("Type") != "bind":
            continue
        source = str(mount.get("Source", ""))
        want_dir = mount.get("Destination") == str(STATE_MOUNT)
        try:
            mode = os.lstat(source).st_mode
        except OSError:
            mode = 0
        kind_ok = stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)
        if os.path.realpath(source) != source or not kind_ok:
            raise BottleError(
                f"{source}, which the bundle container {container.name} mounts, is now a "
                "symbolic link, has one in its path, or is not the "
                f"{'directory' if want_dir else 'regular file'} bot-bottle wrote: "
                "the bundle was not started",
                fix="its bundle (which can write the bottle's state dir) put it there and may "
                "have been taken over by the agent's traffic; remove the bottle "
                "(`bottle-engine stop --rm SLUG`) and launch it again",
            )


def wait_bundle_ready(
    container: Any,
    config: BundleConfig,
    timeout: float,
    *,
    state_dir: Path | None = None,
    config_sha256: str | None = None,
) -> None:
    """Return once the bundle's services are up; raise `BottleError` with its log otherwise.

    Readiness is `config.ready_file`, checked on the host in `state_dir` when given, else
    inside the container. With `config_sha256`, the ready file must report that the bundle
    loaded exactly that config (a warm pool member answers with the digest of what it read).
    """
    deadline = time.monotonic() + timeout
    host_ready = BottleDir(state_dir).ready_file if state_dir is not None else None
    next_check = 0.0  # the container's state is asked twice a second; the host file more often
    while True:
        if host_ready is not None and host_ready.exists():
            if config_sha256 is not None:
                _check_digest(container, host_ready, config_sha256)
            return
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 0.5
            with docker_errors(f"watching the bundle container {container.name}"):
                container.reload()
                status = container.status
                if status in ("exited", "dead"):
                    code = container.attrs.get("State", {}).get("ExitCode")
                    raise _not_ready(container, f"exited with code {code} before it was ready")
                if host_ready is None:
                    check = ["test", "-f", str(config.ready_file)]
                    if container.exec_run(check).exit_code == 0:
                        return
        if time.monotonic() > deadline:
            raise _not_ready(container, f"was not ready after {timeout:.0f}s")
        time.sleep(0.02)


MAX_READY_FILE_BYTES = 64 * 1024  # the bundle writes a few hundred bytes of JSON


def _check_digest(container: Any, ready_file: Path, expected: str) -> None:
    try:  # in the bundle's dir: no link, FIFO or huge file is read
        raw = read_regular(ready_file, MAX_READY_FILE_BYTES)
        reported = load_json(raw).get("config_sha256")
    except (OSError, ValueError, AttributeError):
        reported = None
    if reported != expected:
        raise _not_ready(
            container, f"reports a config other than the one handed to it ({reported})"
        )


def bundle_log_tail(container: Any, lines: int = _LOG_LINES) -> str:
    try:
        raw = container.logs(tail=lines)
    except docker.errors.DockerException:
        return "(no log available)"
    return bytes(raw).decode("utf-8", "replace").rstrip() or "(empty log)"


def _not_ready(container: Any, what: str) -> BottleError:
    tail = bundle_log_tail(container)
    indented = "\n".join(f"    {line}" for line in tail.splitlines())
    return BottleError(
        f"the bundle container {container.name} {what}; its last log lines:\n{indented}",
        fix="fix what the log names (often the egress allowlist or a secret file), then launch "
        "again; `docker logs " + container.name + "` shows the whole log",
    )


def _check_secrets(config: BundleConfig, secret_files: Mapping[str, Path]) -> None:
    for binding in config.secrets:
        expected = f"{SECRETS_MOUNT}/{binding.name}"
        if binding.value_file != expected:
            raise BottleError(
                f"secret '{binding.name}': value_file is {binding.value_file}, "
                f"but the bundle mounts it at {expected}"
            )
        host = secret_files.get(binding.name)
        if host is None or not Path(host).is_file():
            raise BottleError(
                f"secret '{binding.name}' has no value file to hand to the bundle "
                f"({host or 'none given'})",
                fix="set the secret again (see `bottle-engine secrets --help`)",
            )


def _hand_over(state_dir: Path, files: Any, uid: int, gid: int) -> None:
    """Let the bundle's user write the state dir and read its files (engine running as root).

    The state dir itself stays 0700: on the host only its owner (the bundle's uid, which no
    account holds) and root get in.
    """
    if os.geteuid() != 0:
        return
    for path in [state_dir, *state_dir.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)
    for path in files:
        os.chown(path, uid, gid)
    state_dir.chmod(0o700)


def _remove_quietly(container: Any) -> None:
    with contextlib.suppress(docker.errors.DockerException):
        container.remove(force=True)
