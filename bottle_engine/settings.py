"""The engine's settings from the environment: read once, in one place, and passed down.

Every ``BOTTLE_*`` variable that changes what a plan, a build or a launch does is read here,
so `plan`, `build` and `launch` cannot disagree about it (they once did: `plan` ignored
``BOTTLE_EGRESS_NETWORK``, and only `build` expanded ``~`` in ``BOTTLE_CA_BUNDLE``). A bad value
is an error naming the variable, raised before anything touches Docker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import platformdirs

from bottle_engine.errors import BottleError
from bottle_engine.manifest.model import Backend, Runtime

APP_NAME = "bot-bottle"
DEFAULT_SUBNET_POOL = "10.243.0.0/16"
BACKEND_NAMES: tuple[str, ...] = get_args(Backend)
RUNTIME_NAMES: tuple[str, ...] = get_args(Runtime)

ENV_SUBNET_POOL = "BOTTLE_SUBNET_POOL"
ENV_BACKEND = "BOTTLE_BACKEND"
ENV_RUNTIME = "BOTTLE_RUNTIME"
ENV_EGRESS_NETWORK = "BOTTLE_EGRESS_NETWORK"
ENV_BUNDLE_HOSTS = "BOTTLE_BUNDLE_HOSTS"
ENV_CA_BUNDLE = "BOTTLE_CA_BUNDLE"
ENV_BASE_IMAGE = "BOTTLE_BASE_IMAGE"
ENV_CACHE_DIR = "BOTTLE_CACHE_DIR"
ENV_STATE_DIR = "BOTTLE_STATE_DIR"
ENV_SMOLVM = "BOTTLE_SMOLVM"
ENV_SMOLVM_STATE_DIR = "BOTTLE_SMOLVM_STATE_DIR"
ENV_REGISTRY_IMAGE = "BOTTLE_REGISTRY_IMAGE"
ENV_ARTIFACT_REGISTRY = "BOTTLE_ARTIFACT_REGISTRY"
ENV_ARTIFACT_REGISTRY_INSECURE = "BOTTLE_ARTIFACT_REGISTRY_INSECURE"
ENV_LAYER_CACHE = "BOTTLE_LAYER_CACHE"
ENV_DOCKER_CONFIG = "DOCKER_CONFIG"  # Docker's own: where its login credentials are
ENV_SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"  # the reproducible-builds clamp time


@dataclass(frozen=True)
class EngineSettings:
    """What the environment says; None means "not set: the manifest (or default) decides"."""

    subnet_pool: str = DEFAULT_SUBNET_POOL
    backend: str | None = None
    runtime: str | None = None
    egress_network: str | None = None  # an existing network for every bundle's way out
    bundle_hosts: Mapping[str, str] = field(default_factory=dict)  # name -> address
    ca_bundle: Path | None = None  # `~` already expanded
    base_image: str | None = None
    cache_dir: Path = field(default_factory=lambda: cache_dir_from_env({}))
    state_dir: Path = field(default_factory=lambda: state_dir_from_env({}))
    smolvm: str | None = None  # the smolvm executable, as given (checked where it is run)
    smolvm_state_dir: str | None = None  # smolvm's own --state-dir
    registry_image: str | None = None  # the ephemeral registry's image (pack via registry)
    artifact_registry: str | None = None  # the shared artifact cache, HOST[:PORT]/REPOSITORY
    artifact_registry_insecure: bool = False  # plain HTTP to a non-loopback shared cache
    layer_cache: bool = True  # keep Docker's own build as a layer cache for the next build
    docker_config_dir: Path = field(default_factory=lambda: Path.home() / ".docker")
    # As given: checked where a build uses it (`clamp_time`), so a bad value does not stop `ls`.
    source_date_epoch: str | None = None

    def __post_init__(self) -> None:
        check_backend(self.backend, source=ENV_BACKEND)
        if self.runtime is not None and self.runtime not in RUNTIME_NAMES:
            raise BottleError(
                f"{ENV_RUNTIME} '{self.runtime}' is not a runtime",
                fix=f"use one of {', '.join(RUNTIME_NAMES)}, or unset {ENV_RUNTIME}",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineSettings:
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def path(name: str) -> Path | None:
            raw = value(name)
            return Path(raw).expanduser() if raw else None

        return cls(
            subnet_pool=value(ENV_SUBNET_POOL) or DEFAULT_SUBNET_POOL,
            backend=value(ENV_BACKEND),
            runtime=value(ENV_RUNTIME),
            egress_network=value(ENV_EGRESS_NETWORK),
            bundle_hosts=parse_bundle_hosts(env.get(ENV_BUNDLE_HOSTS, "")),
            ca_bundle=path(ENV_CA_BUNDLE),
            base_image=value(ENV_BASE_IMAGE),
            cache_dir=cache_dir_from_env(env),
            state_dir=state_dir_from_env(env),
            smolvm=value(ENV_SMOLVM),
            smolvm_state_dir=value(ENV_SMOLVM_STATE_DIR),
            registry_image=value(ENV_REGISTRY_IMAGE),
            artifact_registry=value(ENV_ARTIFACT_REGISTRY),
            artifact_registry_insecure=env.get(ENV_ARTIFACT_REGISTRY_INSECURE, "") == "1",
            layer_cache=env.get(ENV_LAYER_CACHE, "1") != "0",
            docker_config_dir=path(ENV_DOCKER_CONFIG) or Path.home() / ".docker",
            source_date_epoch=value(ENV_SOURCE_DATE_EPOCH),
        )

    def clamp_time(self) -> int | None:
        """``SOURCE_DATE_EPOCH`` in seconds, or None when unset; a bad value is an error."""
        if self.source_date_epoch is None:
            return None
        if not self.source_date_epoch.isdigit():
            raise BottleError(
                f"{ENV_SOURCE_DATE_EPOCH}={self.source_date_epoch!r} is not a number of seconds",
                fix="unset it, or set it to a Unix time such as `git log -1 --format=%ct`",
            )
        return int(self.source_date_epoch)

    def ca_bundle_for(self, option: str | Path | None, manifest_value: Path | None) -> Path | None:
        """The extra CA bundle: a command-line option, else this environment's, else the
        manifest's; `~` expanded in each."""
        chosen = option or self.ca_bundle or manifest_value
        return Path(chosen).expanduser() if chosen else None


def cache_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """``BOTTLE_CACHE_DIR``, else the platform's cache dir. Alone (not `from_env`) for
    `state`, which must not fail on an unrelated bad variable."""
    raw = (os.environ if environ is None else environ).get(ENV_CACHE_DIR, "").strip()
    return Path(raw).expanduser() if raw else Path(platformdirs.user_cache_dir(APP_NAME))


def state_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """``BOTTLE_STATE_DIR``, else the platform's state dir (see `cache_dir_from_env`)."""
    raw = (os.environ if environ is None else environ).get(ENV_STATE_DIR, "").strip()
    return Path(raw).expanduser() if raw else Path(platformdirs.user_state_dir(APP_NAME))


def check_backend(name: str | None, *, source: str) -> None:
    """Refuse a backend name that is not one: `source` says where it came from."""
    if name is not None and name not in BACKEND_NAMES:
        raise BottleError(
            f"{source} '{name}' is not a backend (known: {', '.join(BACKEND_NAMES)})",
            fix=f"use one of {', '.join(BACKEND_NAMES)}"
            + (f", or unset {source}" if source.startswith("BOTTLE_") else ""),
        )


def parse_bundle_hosts(raw: str) -> dict[str, str]:
    """``BOTTLE_BUNDLE_HOSTS="name=ip,name=ip"``: extra host entries for the bundle's resolver,
    for air-gapped set-ups with internal hosts and for the test suite's own upstreams."""
    hosts: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        name, _, address = entry.partition("=")
        if not name.strip() or not address.strip():
            raise BottleError(
                f"{ENV_BUNDLE_HOSTS} entry '{entry}' is not NAME=ADDRESS",
                fix=f'write e.g. {ENV_BUNDLE_HOSTS}="git.internal=10.1.2.3"',
            )
        hosts[name.strip()] = address.strip()
    return hosts
