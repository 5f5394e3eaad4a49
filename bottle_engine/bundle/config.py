"""The bundle's configuration: the contract between the engine (host side) and the bundle.

The engine builds it from the plan, writes it as JSON, and mounts it read-only into the bundle
container. Real secret values are never in this file: each secret names a file that is mounted
into the bundle only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bottle_engine.manifest.schema import DEFAULT_SECRET_HEADERS, INTERCEPT_MODES, INTERCEPT_SECRETS

# Paths inside the bundle container.
CONFIG_PATH = Path("/etc/bot-bottle/bundle.json")
STATE_MOUNT = Path("/var/lib/bot-bottle")  # the bottle's host state dir, read-write
SECRETS_MOUNT = Path("/run/bot-bottle/secrets")  # one file per secret, read-only
GIT_KEYS_MOUNT = Path("/run/bot-bottle/git")  # identity files + known_hosts, read-only
UPSTREAM_CA_MOUNT = Path("/run/bot-bottle/upstream-ca.pem")  # [egress] upstream_ca, read-only
# The per-bottle CA certificate (no private key) the proxy writes under STATE_MOUNT/ca; the engine
# copies it into the agent, which trusts it.
CA_CERT_NAME = "mitmproxy-ca-cert.pem"

# Names in the bottle's state dir (STATE_MOUNT here, `bottle_engine.bottle_dir.BottleDir` on the
# host): both sides spell them from these constants only.
CONFIG_FILE_NAME = "bundle.json"  # this config; mounted read-only at CONFIG_PATH
EGRESS_LOG_NAME = "egress.jsonl"  # the proxy's audit log, rotated to egress.jsonl.1 ..
CA_DIR_NAME = "ca"  # the proxy's confdir: the per-bottle CA
READY_FILE_NAME = "bundle.ready"  # written once every service is up
GIT_GATE_LOG_NAME = "git-gate.jsonl"  # one line per push and its verdict
GIT_GATE_REPOS_NAME = "git-gate"  # the git gate's mirrors
APPROVALS_DIR_NAME = "approvals"  # one file per open approval request
APPROVALS_LOG_NAME = "approvals.jsonl"  # every approval request's states, rotated once


def git_identity_name(upstream: str) -> str:
    """A git upstream's key file: in the state dir's git keys, and under GIT_KEYS_MOUNT."""
    return f"{upstream}.key"


def git_known_hosts_name(upstream: str) -> str:
    """A git upstream's pinned host key, beside its key file."""
    return f"{upstream}.known_hosts"


# The git gate's bounds on one push (README: "The git gate"). Beyond any of them the push is
# refused, never forwarded unscanned.
MIB = 1024 * 1024
DEFAULT_MAX_PUSH_BYTES = 32 * MIB  # the pack the agent sends (receive.maxInputSize)
DEFAULT_MAX_BLOB_BYTES = 8 * MIB  # one blob, or what a compressed blob inflates to
DEFAULT_MAX_SCAN_BYTES = 32 * MIB  # all text the scanner reads for one push (0.5-3 MB/s)
# What the gate keeps of the pushes it accepted (their packs, in its repository in the state
# dir, a host directory) from one start of the bundle to the next: each push is bounded, their
# number is not, and pushes of clean 32 MiB packs filled the host's disk.
DEFAULT_MAX_STORED_BYTES = 1024 * MIB
# New refs cost the gate no pack, only files: each ref it takes is a file in its repository and
# each '/' in the name a directory (store.ref_bytes charges them to the budget above). A push
# of a thousand new branches at one commit sent no object at all.
DEFAULT_MAX_PUSH_REFS = 1000  # refs (branches) one push may update
MAX_REF_NAME_BYTES = 255  # a whole ref name, UTF-8: no part can pass NAME_MAX on any fs
MAX_REF_COMPONENTS = 16  # parts between '/' of a new ref ("refs/heads/a/b" has four)
# Protected at any depth whatever the manifest's place in the repository: a bottle.toml in the
# pushed tree is one someone may launch later.
MANIFEST_NAME = "bottle.toml"

EGRESS_PORT = 8888
GIT_GATE_PORT = 9418
SUPERVISE_PORT = 9100


@dataclass(frozen=True)
class SecretBinding:
    """A secret as the bundle sees it: the placeholder the agent holds and where it may go."""

    name: str
    placeholder: str
    hosts: tuple[str, ...]
    value_file: str  # path inside the bundle container
    # The request headers the real value may be sent in (any case); the placeholder in another
    # header is refused.
    headers: tuple[str, ...] = tuple(DEFAULT_SECRET_HEADERS)


@dataclass(frozen=True)
class GitUpstreamConfig:
    """One upstream the git gate serves and forwards pushes to."""

    name: str
    url: str
    push_branches: tuple[str, ...]
    allow_force_push: bool = False
    allow_delete: bool = False
    identity_file: str | None = None  # path inside the bundle container
    known_hosts_file: str | None = None  # path inside the bundle container
    # Off: a push that changes a bottle.toml or a file the manifest reads is refused.
    allow_manifest_changes: bool = False
    # Off: a push that changes a CI definition (`gitgate.policy.is_ci_definition`) is refused.
    allow_ci_changes: bool = False
    protected_paths: tuple[str, ...] = ()  # repository-relative, computed by the engine
    max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES
    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES
    max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES
    max_stored_bytes: int = DEFAULT_MAX_STORED_BYTES
    max_push_refs: int = DEFAULT_MAX_PUSH_REFS


@dataclass(frozen=True)
class BundleConfig:
    """Everything the bundle's services need to know about their bottle."""

    slug: str
    bundle_ip: str
    agent_subnet: str
    egress_allow: tuple[str, ...] = ()
    secrets: tuple[SecretBinding, ...] = ()
    git: tuple[GitUpstreamConfig, ...] = ()
    supervise: bool = False
    supervise_timeout_seconds: float = 600.0
    state_dir: str = str(STATE_MOUNT)
    extra: dict[str, Any] = field(default_factory=dict)
    bottle_name: str = ""  # the [bottles.NAME] table, named in the proxy's "how to allow" hints
    # Extra PEM files the proxy trusts for upstream TLS, beside the image's system bundle.
    upstream_ca_files: tuple[str, ...] = ()
    # The only client the services answer (bundle/clients.py). The supervisor refuses to start
    # without it: empty is for code that runs one service alone, on loopback.
    agent_ip: str = ""
    # [egress] ask: a request to a host name no rule allows waits for a person's answer (an
    # egress approval request) this long, then is refused.
    egress_ask: bool = False
    ask_timeout_seconds: float = 120.0
    # [egress] intercept: the HTTPS tunnels the proxy opens (INTERCEPT_MODES).
    egress_intercept: str = INTERCEPT_SECRETS

    @property
    def audit_log(self) -> Path:
        return Path(self.state_dir) / EGRESS_LOG_NAME

    @property
    def ca_dir(self) -> Path:
        return Path(self.state_dir) / CA_DIR_NAME

    @property
    def ready_file(self) -> Path:
        return Path(self.state_dir) / READY_FILE_NAME

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BundleConfig:
        raw = json.loads(text)
        return cls(
            slug=raw["slug"],
            bundle_ip=raw["bundle_ip"],
            agent_subnet=raw["agent_subnet"],
            egress_allow=tuple(raw.get("egress_allow", ())),
            secrets=tuple(
                SecretBinding(
                    name=s["name"],
                    placeholder=s["placeholder"],
                    hosts=tuple(s["hosts"]),
                    value_file=s["value_file"],
                    headers=tuple(s.get("headers", DEFAULT_SECRET_HEADERS)),
                )
                for s in raw.get("secrets", ())
            ),
            git=tuple(
                GitUpstreamConfig(
                    **{
                        **g,
                        "push_branches": tuple(g["push_branches"]),
                        "protected_paths": tuple(g.get("protected_paths", ())),
                    }
                )
                for g in raw.get("git", ())
            ),
            supervise=bool(raw.get("supervise", False)),
            supervise_timeout_seconds=float(raw.get("supervise_timeout_seconds", 600.0)),
            state_dir=raw.get("state_dir", str(STATE_MOUNT)),
            extra=dict(raw.get("extra", {})),
            bottle_name=raw.get("bottle_name", ""),
            upstream_ca_files=tuple(raw.get("upstream_ca_files", ())),
            agent_ip=raw.get("agent_ip", ""),
            egress_ask=bool(raw.get("egress_ask", False)),
            ask_timeout_seconds=float(raw.get("ask_timeout_seconds", 120.0)),
            egress_intercept=_intercept_mode(raw.get("egress_intercept", INTERCEPT_SECRETS)),
        )

    @classmethod
    def load(cls, path: Path = CONFIG_PATH) -> BundleConfig:
        return cls.from_json(path.read_text())


def _intercept_mode(value: object) -> str:
    """A mode the proxy knows, or the config is refused: a bundle that would quietly open fewer
    tunnels than its bottle asked for must not start."""
    if value not in INTERCEPT_MODES:
        raise ValueError(f"egress_intercept: {value!r} is not one of {', '.join(INTERCEPT_MODES)}")
    return str(value)
