"""Manifest + agent -> `BottlePlan`: everything a launch will do, decided without any I/O.

The plan names the bottle instance (slug), picks its subnet from the pool, pins the bundle's
address, and builds the guest environment. Backends carry a plan out; `bottle-engine plan`
prints one. Being pure, all of this is unit-tested without a daemon.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bottle_engine.bottle_dir import GIT_KEYS_DIR_NAME, SECRETS_DIR_NAME, UPSTREAM_CA_NAME
from bottle_engine.bundle.config import (
    EGRESS_PORT,
    GIT_GATE_PORT,
    GIT_KEYS_MOUNT,
    SECRETS_MOUNT,
    STATE_MOUNT,
    SUPERVISE_PORT,
    UPSTREAM_CA_MOUNT,
    BundleConfig,
    GitUpstreamConfig,
    SecretBinding,
    git_identity_name,
    git_known_hosts_name,
)
from bottle_engine.errors import BottleError
from bottle_engine.manifest.model import Backend, GitUpstream, Manifest, Runtime
from bottle_engine.manifest.schema import INTERCEPT_SECRETS
from bottle_engine.settings import DEFAULT_SUBNET_POOL, EngineSettings, check_backend

SKILLS_DIR = Path("~/.claude/skills")  # where `skills` are copied from

# Outside Docker's own default address pools (172.17-31.0.0/16, 192.168.0.0/16), which it hands
# to networks created without a subnet and which could otherwise cover the whole pool.
SUBNET_PREFIX = 28
MAX_INSTANCES = 20  # bottle-<slug>, -2, ... -20

# Where the agent container finds what the launch puts in it.
WORKSPACE = "/workspace"
AGENT_HOME = "/home/agent"
AGENT_UID = 1000
AGENT_USER = f"{AGENT_UID}:{AGENT_UID}"  # what commands run as the agent run as (uid:gid)
PROMPT_PATH = f"{AGENT_HOME}/.bot-bottle/prompt.md"
CA_CERT_PATH = "/etc/bot-bottle/ca.pem"  # the bottle's CA alone
CA_BUNDLE_PATH = "/etc/bot-bottle/ca-bundle.pem"  # system CAs + the bottle's CA


@dataclass(frozen=True)
class SecretPlan:
    """A secret: its placeholder (what the agent sees) and where the real value comes from."""

    name: str
    placeholder: str
    hosts: tuple[str, ...]
    headers: tuple[str, ...]  # the request headers the real value may be sent in
    from_env: str | None
    from_file: Path | None

    @property
    def bundle_file(self) -> str:
        return str(SECRETS_MOUNT / self.name)


@dataclass(frozen=True)
class ImageInputs:
    """What the agent image is built from (the artifact builder hashes these)."""

    dockerfile: Path
    context: Path
    build_args: Mapping[str, str]
    base_image: str | None
    ca_bundle: Path | None


def _same_named(target: type[Any], source: Any) -> dict[str, Any]:
    """The fields of dataclass `source` that dataclass `target` has too, by name. For a plan or
    bundle dataclass whose same-named fields are the manifest model's own keys (an agent's,
    the image's build inputs, a git upstream's push policy): a key added to both cannot be
    dropped on the way."""
    wanted = {f.name for f in fields(target)}
    return {f.name: getattr(source, f.name) for f in fields(source) if f.name in wanted}


def internal_network_of(slug: str) -> str:
    """The bottle's internal network, the agent's only one (plans and records both derive it)."""
    return f"bottle-{slug}-internal"


def bundle_name_of(bottle_name: str) -> str:
    """The bundle container's name beside the agent's (plans and records both derive it)."""
    return f"{bottle_name}-bundle"


class GatewayAddresses:
    """The fixed addresses on a gateway's /28: the network's gateway, the bundle, the agent.

    A plan has them, and so has a warm pool member, whose gateway is made before its bottle
    has a plan: the bottle that claims it gets the member's subnet, and the bundle already sits
    at the plan's `bundle_ip`, so the offsets are written once, here."""

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The /28 (the class that mixes this in says which)."""
        raise NotImplementedError

    @property
    def gateway_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def bundle_ip(self) -> str:
        return str(self.network.network_address + 2)

    @property
    def agent_ip(self) -> str:
        return str(self.network.network_address + 3)


@dataclass(frozen=True)
class BottlePlan(GatewayAddresses):
    """A bottle instance, fully decided."""

    slug: str
    agent: str
    bottle: str
    backend: Backend
    runtime: Runtime
    manifest_path: Path
    cwd: Path
    subnet: ipaddress.IPv4Network
    command: tuple[str, ...]
    prompt: str | None
    prompt_file: Path | None
    skills: tuple[str, ...]
    copy_cwd: bool
    cpus: float
    memory_bytes: int
    egress_allow: tuple[str, ...]
    secrets: tuple[SecretPlan, ...]
    git: tuple[GitUpstream, ...]
    supervise: bool
    image: ImageInputs
    user_env: Mapping[str, str] = field(default_factory=dict)
    shared_egress_network: str | None = None  # an existing network for the bundle's way out
    upstream_ca: Path | None = None  # extra CAs the proxy trusts upstream ([egress] upstream_ca)
    egress_ask: bool = False  # [egress] ask: unlisted hosts wait for a person's answer
    egress_intercept: str = INTERCEPT_SECRETS  # [egress] intercept: which tunnels are opened
    # Repository-relative files the git gate refuses changes to (`protected_paths`).
    git_protected_paths: tuple[str, ...] = ()
    # (internal, egress) of a gateway taken from the warm pool, made before the bottle had a
    # name (Docker cannot rename a network); None: derived from the slug.
    gateway_networks: tuple[str, str] | None = None

    # -- names ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"bottle-{self.slug}"

    @property
    def bundle_name(self) -> str:
        return bundle_name_of(self.name)

    @property
    def internal_network(self) -> str:
        if self.gateway_networks is not None:
            return self.gateway_networks[0]
        return internal_network_of(self.slug)

    @property
    def egress_network(self) -> str:
        if self.shared_egress_network:
            return self.shared_egress_network
        if self.gateway_networks is not None:
            return self.gateway_networks[1]
        return f"bottle-{self.slug}-egress"

    # -- addresses (`gateway_ip`, `bundle_ip`, `agent_ip` from GatewayAddresses) ---------------
    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.subnet

    # -- what the agent sees ---------------------------------------------------------------------
    @property
    def bundle_only_files(self) -> tuple[Path, ...]:
        """The host files whose content goes to the bundle and never to the agent: each secret's
        `from_file` and each git upstream's identity (`secrets.write_bundle_secrets`)."""
        return (
            *(s.from_file for s in self.secrets if s.from_file is not None),
            *(g.identity for g in self.git if g.identity is not None),
        )

    @property
    def guest_env(self) -> dict[str, str]:
        """The agent's environment. Proxy and gate URLs are IP literals: the agent has no DNS."""
        proxy = f"http://{self.bundle_ip}:{EGRESS_PORT}"
        env = dict(self.user_env)
        env.update(
            {
                "HTTP_PROXY": proxy,
                "HTTPS_PROXY": proxy,
                "http_proxy": proxy,
                "https_proxy": proxy,
                "NO_PROXY": f"{self.bundle_ip},localhost,127.0.0.1",
                "no_proxy": f"{self.bundle_ip},localhost,127.0.0.1",
                "GIT_GATE_URL": f"git://{self.bundle_ip}:{GIT_GATE_PORT}",
                "SSL_CERT_FILE": CA_BUNDLE_PATH,
                "REQUESTS_CA_BUNDLE": CA_BUNDLE_PATH,
                "NODE_EXTRA_CA_CERTS": CA_CERT_PATH,
                "BOTTLE_SLUG": self.slug,
                "BOTTLE_AGENT": self.agent,
                "HOME": AGENT_HOME,
            }
        )
        if self.prompt is not None or self.prompt_file is not None:
            env["BOTTLE_PROMPT_FILE"] = PROMPT_PATH
        if self.supervise:
            env["MCP_SUPERVISE_URL"] = f"http://{self.bundle_ip}:{SUPERVISE_PORT}/mcp"
        for secret in self.secrets:
            env[secret.name] = secret.placeholder
        return env

    @property
    def agent_command(self) -> tuple[str, ...]:
        """The command; Claude Code gets the prompt file's text as `--append-system-prompt`.

        Other commands find the prompt at `PROMPT_PATH` (also in `BOTTLE_PROMPT_FILE`).
        """
        has_prompt = self.prompt is not None or self.prompt_file is not None
        if has_prompt and self.command and os.path.basename(self.command[0]) == "claude":
            script = f'exec "$@" --append-system-prompt "$(cat {PROMPT_PATH})"'
            return ("sh", "-c", script, "sh", *self.command)
        return self.command

    def bundle_config(self, *, files_in_state_dir: bool = False) -> BundleConfig:
        """The bundle's config. `files_in_state_dir`: secrets, git keys and the upstream CA are
        read from the bottle's state dir (a warm pool member, started before they were known)
        instead of from their own read-only mounts."""
        secrets_dir = STATE_MOUNT / SECRETS_DIR_NAME if files_in_state_dir else SECRETS_MOUNT
        keys_dir = STATE_MOUNT / GIT_KEYS_DIR_NAME if files_in_state_dir else GIT_KEYS_MOUNT
        upstream_ca = STATE_MOUNT / UPSTREAM_CA_NAME if files_in_state_dir else UPSTREAM_CA_MOUNT
        return BundleConfig(
            slug=self.slug,
            bundle_ip=self.bundle_ip,
            agent_subnet=str(self.subnet),
            bottle_name=self.bottle,  # named in the proxy's "how to allow" hints
            agent_ip=self.agent_ip,
            egress_allow=self.egress_allow,
            upstream_ca_files=(str(upstream_ca),) if self.upstream_ca else (),
            egress_ask=self.egress_ask,
            egress_intercept=self.egress_intercept,
            secrets=tuple(
                SecretBinding(s.name, s.placeholder, s.hosts, str(secrets_dir / s.name), s.headers)
                for s in self.secrets
            ),
            git=tuple(
                GitUpstreamConfig(
                    **_same_named(GitUpstreamConfig, g),  # the push policy, key for key
                    protected_paths=self.git_protected_paths,
                    identity_file=(
                        str(keys_dir / git_identity_name(g.name)) if g.identity else None
                    ),
                    known_hosts_file=(
                        str(keys_dir / git_known_hosts_name(g.name)) if g.known_host_key else None
                    ),
                )
                for g in self.git
            ),
            supervise=self.supervise,
        )

    def to_json(self) -> dict[str, Any]:
        """The plan for `bottle-engine plan --json`: placeholders only, never secret values."""
        return {
            "slug": self.slug,
            "name": self.name,
            "agent": self.agent,
            "bottle": self.bottle,
            "backend": self.backend,
            "runtime": self.runtime,
            "manifest": str(self.manifest_path),
            "subnet": str(self.subnet),
            "gateway_ip": self.gateway_ip,
            "bundle_ip": self.bundle_ip,
            "agent_ip": self.agent_ip,
            "networks": {"internal": self.internal_network, "egress": self.egress_network},
            "command": list(self.agent_command),
            "guest_env": self.guest_env,
            "resources": {"cpus": self.cpus, "memory_bytes": self.memory_bytes},
            "egress_allow": list(self.egress_allow),
            "upstream_ca": str(self.upstream_ca) if self.upstream_ca else None,
            "egress_ask": self.egress_ask,
            "egress_intercept": self.egress_intercept,
            "secrets": [
                {
                    "name": s.name,
                    "placeholder": s.placeholder,
                    "hosts": list(s.hosts),
                    "headers": list(s.headers),
                }
                for s in self.secrets
            ],
            "git": [{"name": g.name, "url": g.url} for g in self.git],
            "supervise": self.supervise,
            "image": {
                "dockerfile": str(self.image.dockerfile),
                "context": str(self.image.context),
                "build_args": dict(self.image.build_args),
                "base_image": self.image.base_image,
                "ca_bundle": str(self.image.ca_bundle) if self.image.ca_bundle else None,
            },
        }


def manifest_reads(manifest: Manifest) -> tuple[Path, ...]:
    """Every file a launch of any agent of `manifest` reads, the manifest itself first."""
    reads = [manifest.path]
    for bottle in manifest.bottles.values():
        reads += [bottle.dockerfile, Path(f"{bottle.dockerfile}.dockerignore")]
        reads.append(bottle.context / ".dockerignore")
        reads += [p for p in (bottle.ca_bundle, getattr(bottle.egress, "upstream_ca", None)) if p]
        reads += [s.from_file for s in bottle.secrets.values() if s.from_file]
        reads += [g.identity for g in bottle.git if g.identity]
    for agent in manifest.agents.values():
        reads += [agent.prompt_file] if agent.prompt_file else []
        reads += [SKILLS_DIR.expanduser() / skill for skill in agent.skills]
    return tuple(reads)


def protected_paths(reads: Iterable[Path], repo_root: Path) -> tuple[str, ...]:
    """The files of `reads` inside `repo_root`, relative to it: what a push through the git gate
    may not change (unless allowed). Both the path as written and, where a symlink leads
    elsewhere in the repository, the file it resolves to and each link on the way. Pure:
    resolving is done by the caller passing resolved paths and links too."""
    found: list[str] = []
    for path in reads:
        if path.is_relative_to(repo_root):
            relative = path.relative_to(repo_root).as_posix()
            if relative not in found and relative != ".":
                found.append(relative)
    return tuple(found)


def base_slug(manifest_path: Path, agent: str) -> str:
    """The slug of an agent's first instance: readable, and distinct per manifest location.

    The digest covers the agent's exact name too: `a.b`, `a_b` and `A-B` read the same.
    """
    identity = f"{manifest_path.resolve()}\n{agent}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:6]
    readable = re.sub(r"[^a-z0-9-]+", "-", agent.lower()).strip("-")[:40] or "agent"
    return f"{readable}-{digest}"


def instance_slugs(base: str) -> Iterable[str]:
    """Candidate slugs in order: `base`, `base-2`, ... up to `MAX_INSTANCES`.

    Launch walks this sequence to skip taken names, and the race-retry after a name conflict
    walks the very same sequence.
    """
    yield base
    for number in range(2, MAX_INSTANCES + 1):
        yield f"{base}-{number}"


def choose_subnet(
    slug: str,
    pool: str = DEFAULT_SUBNET_POOL,
    taken: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> ipaddress.IPv4Network:
    """A /28 of `pool` derived from the slug, moving on past any that overlap `taken`."""
    try:
        network = ipaddress.IPv4Network(pool, strict=True)
    except ValueError as exc:
        raise BottleError(
            f"BOTTLE_SUBNET_POOL '{pool}' is not an IPv4 network: {exc}",
            fix="use a CIDR such as 10.243.0.0/16",
        ) from exc
    if network.prefixlen > SUBNET_PREFIX:
        raise BottleError(
            f"BOTTLE_SUBNET_POOL '{pool}' is smaller than one /{SUBNET_PREFIX}",
            fix="use a pool of /27 or larger, e.g. 10.243.0.0/16",
        )
    taken_list = list(taken)
    count = 2 ** (SUBNET_PREFIX - network.prefixlen)
    start = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:4], "big") % count
    size = 2 ** (32 - SUBNET_PREFIX)
    for step in range(count):
        index = (start + step) % count
        candidate = ipaddress.IPv4Network(
            (int(network.network_address) + index * size, SUBNET_PREFIX)
        )
        if not any(candidate.overlaps(other) for other in taken_list):
            return candidate
    raise BottleError(
        f"every /{SUBNET_PREFIX} in the subnet pool {pool} overlaps an existing network",
        fix="stop bottles you no longer need (`bottle-engine gc`), or set BOTTLE_SUBNET_POOL "
        "to a larger or different range",
    )


def placeholder_for(secret_name: str, launch_token: str) -> str:
    """A placeholder that cannot be mistaken for real text, unique per launch."""
    tag = hmac.new(launch_token.encode(), secret_name.encode(), hashlib.sha256).hexdigest()[:32]
    return f"bbph_{tag}"


@dataclass(frozen=True)
class Planner:
    """Makes the plan for a candidate slug; backends walk `instance_slugs(base_slug)` with it.
    The one place a manifest and these options become a `BottlePlan` (`plan_bottle` is it in one
    call)."""

    manifest: Manifest
    agent: str
    cwd: Path | None = None  # None: the manifest's directory
    subnet_pool: str = DEFAULT_SUBNET_POOL
    launch_token: str = "plan"
    backend_override: str | None = None
    shared_egress_network: str | None = None
    git_protected_paths: tuple[str, ...] = ()

    @classmethod
    def from_settings(
        cls,
        manifest: Manifest,
        agent: str,
        cwd: Path,
        settings: EngineSettings,
        *,
        launch_token: str = "plan",
        git_protected_paths: tuple[str, ...] = (),
    ) -> Planner:
        """The planner `plan`, `build` and `launch` all use: the environment's part of a plan
        comes from `settings` only, so the three agree by construction."""
        return cls(
            manifest=manifest,
            agent=agent,
            cwd=cwd,
            subnet_pool=settings.subnet_pool,
            launch_token=launch_token,
            backend_override=settings.backend,
            shared_egress_network=settings.egress_network,
            git_protected_paths=git_protected_paths,
        )

    @property
    def base_slug(self) -> str:
        return base_slug(self.manifest.path, self.agent)

    def __call__(
        self,
        slug: str | None = None,
        taken_subnets: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        *,
        subnet: ipaddress.IPv4Network | None = None,
    ) -> BottlePlan:
        """The plan for `slug` (the base slug when None): on `subnet` when given (a warm pool
        member's), else on a /28 of the pool that none of `taken_subnets` overlaps."""
        manifest = self.manifest
        agent = manifest.agents.get(self.agent)
        if agent is None:
            known = ", ".join(sorted(manifest.agents)) or "none"
            raise BottleError(
                f"{manifest.path}: no agent named '{self.agent}' (defined: {known})",
                fix="pick one of the [agents.NAME] tables, or add one",
            )
        bottle = manifest.bottle_for(agent)
        backend = bottle.backend
        if self.backend_override:
            check_backend(self.backend_override, source="BOTTLE_BACKEND")
            backend = self.backend_override  # type: ignore[assignment]
        slug = slug or self.base_slug
        secrets = tuple(
            SecretPlan(
                name=secret.name,
                placeholder=placeholder_for(secret.name, self.launch_token),
                hosts=secret.hosts,
                headers=secret.headers,
                from_env=secret.from_env,
                from_file=secret.from_file,
            )
            for secret in bottle.secrets.values()
        )
        return BottlePlan(
            # The agent's own keys: its bottle's name, command, prompt, prompt_file, skills, ...
            **_same_named(BottlePlan, agent),
            slug=slug,
            agent=agent.name,
            backend=backend,
            runtime=bottle.runtime,
            manifest_path=manifest.path,
            cwd=self.cwd or manifest.directory,
            subnet=subnet or choose_subnet(slug, self.subnet_pool, taken_subnets),
            cpus=bottle.cpus,
            memory_bytes=bottle.memory_bytes,
            egress_allow=bottle.egress.allow,
            upstream_ca=bottle.egress.upstream_ca,
            egress_ask=bottle.egress.ask,
            egress_intercept=bottle.egress.intercept,
            secrets=secrets,
            git=bottle.git,
            supervise=bottle.supervise,
            image=ImageInputs(**_same_named(ImageInputs, bottle)),
            user_env=bottle.env,
            shared_egress_network=self.shared_egress_network,
            git_protected_paths=self.git_protected_paths,
        )


def plan_bottle(
    manifest: Manifest,
    agent_name: str,
    *,
    slug: str | None = None,
    taken_subnets: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    subnet: ipaddress.IPv4Network | None = None,
    **options: Any,
) -> BottlePlan:
    """Decide everything about launching `agent_name` from `manifest`: one plan of a
    `Planner` made with `options` (its fields: `cwd`, `subnet_pool`, `launch_token`, ...)."""
    return Planner(manifest, agent_name, **options)(slug, taken_subnets, subnet=subnet)
