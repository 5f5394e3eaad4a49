"""Running the bundle container: the bottle's gateway, pinned on its internal network.

The container gets the bundle's config (JSON, read-only), the bottle's state dir (audit log, CA,
readiness), each secret's value file (read-only, under `SECRETS_MOUNT`) and nothing else from
the host. It runs as a non-root user with no capabilities, a read-only root file system and a
private /tmp.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker.errors
from docker.types import Mount

from bottle_engine.bundle.config import (
    CONFIG_PATH,
    SECRETS_MOUNT,
    STATE_MOUNT,
    BundleConfig,
)
from bottle_engine.dockerapi.client import LABEL_MANAGED, LABEL_ROLE, docker_errors
from bottle_engine.errors import BottleError

BUNDLE_UID = 10001  # the image's `bottle` user; used when the engine itself runs as root
CONFIG_FILE_NAME = "bundle.json"  # in the bottle's state dir, mounted at CONFIG_PATH
_LOG_LINES = 30


def bundle_user() -> tuple[int, int]:
    """uid/gid the bundle runs as: the engine's own user, or the image's user instead of root."""
    uid, gid = os.geteuid(), os.getegid()
    return (BUNDLE_UID, BUNDLE_UID) if uid == 0 else (uid, gid)


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
    runtime: str | None = None,
) -> Any:
    """Create and start the bundle container; returns the SDK container object.

    `secret_files` maps each secret's name to the host file with its value; the config's
    `SecretBinding.value_file` must be ``SECRETS_MOUNT/<name>``. `readonly_files` maps further
    paths inside the container (git identity files, known_hosts, CA files) to host files.
    `runtime` is the OCI runtime (None: the daemon's default).
    On failure after creation the container is removed again.
    """
    _check_secrets(config, secret_files)
    if Path(config.state_dir) != STATE_MOUNT:
        raise BottleError(
            f"bundle config of {config.slug}: state_dir is {config.state_dir}, "
            f"but the bundle mounts the state dir at {STATE_MOUNT}",
            fix="leave BundleConfig.state_dir at its default",
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    config_file = state_dir / CONFIG_FILE_NAME
    config_file.write_text(config.to_json())
    uid, gid = bundle_user()
    files = {
        str(CONFIG_PATH): config_file,
        **{f"{SECRETS_MOUNT}/{secret}": path for secret, path in secret_files.items()},
        **(readonly_files or {}),
    }
    _hand_over(state_dir, files.values(), uid, gid)
    mounts = [Mount(str(STATE_MOUNT), str(state_dir.resolve()), type="bind")]
    mounts += [
        Mount(inside, str(Path(host).resolve()), type="bind", read_only=True)
        for inside, host in sorted(files.items())
    ]
    with docker_errors(f"starting the bundle container {name}"):
        container = client.containers.create(
            image,
            name=name,
            labels={**labels, LABEL_MANAGED: "1", LABEL_ROLE: "bundle"},
            user=f"{uid}:{gid}",
            mounts=mounts,
            network=internal_network,
            networking_config={
                internal_network: client.api.create_endpoint_config(ipv4_address=bundle_ip)
            },
            extra_hosts=dict(extra_hosts or {}),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=1g"},  # the git gate keeps its mirrors here
            init=True,  # reaps the git processes the gate starts
            pids_limit=512,
            detach=True,
            runtime=runtime,
        )
        try:
            client.networks.get(egress_network).connect(container)
            container.start()
        except BaseException:
            _remove_quietly(container)
            raise
    return container


def wait_bundle_ready(
    container: Any, config: BundleConfig, timeout: float, *, state_dir: Path | None = None
) -> None:
    """Return once the bundle's services are up; raise `BottleError` with its log otherwise.

    Readiness is `config.ready_file`, checked on the host in `state_dir` when given, else
    inside the container.
    """
    deadline = time.monotonic() + timeout
    host_ready = state_dir / config.ready_file.name if state_dir is not None else None
    while True:
        with docker_errors(f"watching the bundle container {container.name}"):
            container.reload()
            status = container.status
            if status in ("exited", "dead"):
                code = container.attrs.get("State", {}).get("ExitCode")
                raise _not_ready(container, f"exited with code {code} before it was ready")
            if host_ready is not None:
                ready = host_ready.exists()
            else:
                ready = container.exec_run(["test", "-f", str(config.ready_file)]).exit_code == 0
        if ready:
            return
        if time.monotonic() > deadline:
            raise _not_ready(container, f"was not ready after {timeout:.0f}s")
        time.sleep(0.2)


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
    """Let the bundle's user write the state dir and read its files (engine running as root)."""
    if os.geteuid() != 0:
        return
    for path in [state_dir, *state_dir.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)
    for path in files:
        os.chown(path, uid, gid)


def _remove_quietly(container: Any) -> None:
    with contextlib.suppress(docker.errors.DockerException):
        container.remove(force=True)
