"""Connecting to the daemon and translating its errors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
from docker.types import LogConfig, Ulimit

from bottle_engine.errors import BottleError
from bottle_engine.limits import container_log_options

# Labels put on everything the engine creates, so that `ls` and `gc` find it after a restart.
LABEL_SLUG = "bot-bottle.slug"
LABEL_AGENT = "bot-bottle.agent"
LABEL_ROLE = "bot-bottle.role"  # "agent" | "bundle" | "network" | "registry"
LABEL_MANAGED = "bot-bottle.managed"
LABEL_STATE = "bot-bottle.state"  # the state dir whose records account for it (`state_id`)
LABEL_POOL = "bot-bottle.pool"  # a warm pool member's id, on its networks and bundle container
LABEL_REGISTRY_ID = "bot-bottle.registry-id"  # one ephemeral registry
LABEL_PACK = "bot-bottle.pack"  # the artifact an ephemeral registry packs
# Every label the engine finds its resources by: none of them may come from an image.
ENGINE_LABELS = frozenset(
    {
        LABEL_SLUG,
        LABEL_AGENT,
        LABEL_ROLE,
        LABEL_MANAGED,
        LABEL_STATE,
        LABEL_POOL,
        LABEL_REGISTRY_ID,
        LABEL_PACK,
    }
)

# What the engine's long-lived containers (agent, bundle) run instead of their image's
# HEALTHCHECK: no probe. Docker takes `--interval=1ms`, and the daemon, containerd and the shim
# then start one about 20 times a second, on the host's CPUs outside the container's CPU bound
# (a third of a CPU) for as long as the bottle lives. Nothing of the engine's reads health.
NO_HEALTHCHECK = {"test": ["NONE"]}

_DAEMON_FIX = (
    "start the Docker daemon (e.g. `sudo systemctl start docker`, or `dockerd &`), "
    "or point DOCKER_HOST at a running one; `bottle-engine doctor` checks the set-up"
)


def connect() -> Any:
    """A docker SDK client for the local daemon, or a `BottleError` saying how to get one."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        raise BottleError(
            f"cannot reach the Docker daemon: {_short(exc)}", fix=_DAEMON_FIX
        ) from exc
    return client


@contextmanager
def docker_errors(doing: str) -> Iterator[None]:
    """Re-raise SDK errors met while `doing` something as `BottleError`s naming that thing."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise BottleError(
            f"{doing}: image not found: {_short(exc)}",
            fix="build it first (`bottle-engine build AGENT`) or bootstrap the base image "
            "(`bottle-engine base bootstrap`)",
        ) from exc
    except docker.errors.APIError as exc:
        raise BottleError(f"{doing}: the Docker daemon refused: {_short(exc)}") from exc
    except docker.errors.DockerException as exc:
        raise BottleError(f"{doing}: {_short(exc)}", fix=_DAEMON_FIX) from exc


def refuse_engine_labels(config: Mapping[str, Any], image: str, what: str, *, fix: str) -> None:
    """`BottleError` when the image config `config` (of `image`) sets a label of
    `ENGINE_LABELS`; `what` runs it ("agent", "bundle"), `fix` says how to get an image without.

    Docker gives a container its image's labels beneath the ones it is created with: an image's
    `bot-bottle.pool` made the container one the warm pool and `gc` find, and remove."""
    if taken := sorted(ENGINE_LABELS & set(config.get("Labels") or {})):
        labels = ", ".join(f"LABEL {label}" for label in taken)
        raise BottleError(
            f"the {what} image {image} sets {labels}, which bot-bottle finds its own "
            f"containers by: the {what}'s container would carry it and answer to the engine's "
            "lookups (the warm pool's, `gc`'s) as one of theirs",
            fix=fix,
        )


def bounded_log_config() -> LogConfig:
    """The log config of every container a bottle runs (agent, bundle, pool member): json-file,
    which `docker logs` reads whatever the daemon's default driver is, rotated so that the
    daemon keeps at most `limits.CONTAINER_LOG_BYTES` of its output on the host."""
    return LogConfig(type=LogConfig.types.JSON, config=container_log_options())


def no_core_dumps() -> list[Ulimit]:
    """The core size limit of every container a bottle runs: 0, soft and hard, so that no
    process in it can raise it. Under the host's usual core_pattern a dump is written by the
    kernel (a bundle's into its repository in the state dir on the host); with a pipe
    (systemd-coredump, apport) a helper started on the host reads, compresses and stores it,
    outside the bottle's memory, CPU and disk."""
    return [Ulimit(name="core", soft=0, hard=0)]


def bottle_bounds(*, memory_bytes: int, pids: int, nano_cpus: int) -> dict[str, Any]:
    """What every container a bottle runs is held to (agent, bundle, the gVisor self-test): no
    capabilities, no privilege escalation, `memory_bytes` and no swap beyond it, `pids`,
    `nano_cpus`, no core dumps, a bounded log. Keywords that `create_host_config` and
    `containers.create` take alike."""
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": memory_bytes,
        "memswap_limit": memory_bytes,  # no swap beyond the memory limit
        "pids_limit": pids,
        "nano_cpus": nano_cpus,
        "ulimits": no_core_dumps(),
        "log_config": bounded_log_config(),
    }


def with_label(
    collection: Any, label: str, value: str | None, doing: str, **options: Any
) -> list[Any]:
    """The objects of an SDK collection (`client.containers`, `client.networks`) that carry
    `label`, with `value` when one is given."""
    selector = f"{label}={value}" if value is not None else label
    with docker_errors(doing):
        return list(collection.list(filters={"label": selector}, **options))


def _short(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip().splitlines()[0] if str(explanation or exc) else repr(exc)
