"""The typed manifest, built from validated data with the schema's defaults.

The dataclasses carry types only; every default comes from `schema.py` (a test checks that the
field names here and there agree), so nothing about a field is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bottle_engine.manifest import schema
from bottle_engine.manifest.egress_rules import EgressRule, parse_egress_rule

Backend = Literal["docker", "smolmachines"]
Runtime = Literal["auto", "runc", "runsc"]

_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int | None:
    """`"4g"` -> bytes, or None when the text is not a size."""
    match = schema.format_match(schema.Format.MEMORY, text.strip())
    if match is None:
        return None
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class Agent:
    name: str
    bottle: str
    prompt: str | None
    prompt_file: Path | None
    command: tuple[str, ...]
    skills: tuple[str, ...]
    copy_cwd: bool


@dataclass(frozen=True)
class Secret:
    name: str
    from_env: str | None
    from_file: Path | None
    hosts: tuple[str, ...]
    headers: tuple[str, ...]  # the request headers the real value may be sent in


@dataclass(frozen=True)
class GitUpstream:
    name: str
    url: str
    identity: Path | None
    known_host_key: str | None
    push_branches: tuple[str, ...]
    allow_force_push: bool
    allow_delete: bool
    allow_manifest_changes: bool
    allow_ci_changes: bool


@dataclass(frozen=True)
class Egress:
    allow: tuple[str, ...]
    upstream_ca: Path | None = None
    ask: bool = False  # hold unlisted hosts for a person's answer
    intercept: str = schema.INTERCEPT_SECRETS  # which HTTPS tunnels the proxy opens

    @property
    def rules(self) -> tuple[EgressRule, ...]:
        return tuple(parse_egress_rule(entry) for entry in self.allow)


@dataclass(frozen=True)
class Bottle:
    name: str
    backend: Backend
    runtime: Runtime
    dockerfile: Path
    context: Path
    build_args: dict[str, str]
    base_image: str | None
    ca_bundle: Path | None
    env: dict[str, str]
    cpus: float
    memory: str
    supervise: bool
    egress: Egress
    secrets: dict[str, Secret]
    git: tuple[GitUpstream, ...]

    @property
    def memory_bytes(self) -> int:
        size = parse_memory(self.memory)
        assert size is not None, "validated before the model is built"
        return size


@dataclass(frozen=True)
class Manifest:
    path: Path  # resolved: the file's own paths are relative to where it really is
    agents: dict[str, Agent]
    bottles: dict[str, Bottle]
    # The path it was launched by, links not followed (None: loaded from text alone). Trust is
    # kept for it too: a `bottle.toml` replaced by a link is still that path (`trust_store`).
    found_at: Path | None = None

    @property
    def directory(self) -> Path:
        return self.path.parent

    def bottle_for(self, agent: Agent) -> Bottle:
        return self.bottles[agent.bottle]


def resolve_path(base: Path, text: str) -> Path:
    """A manifest path: `~` expands, relative paths are relative to the manifest's directory."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def build_model(path: Path, data: dict[str, Any]) -> Manifest:
    """Turn validated data into the typed model, filling schema defaults."""
    base = path.parent
    agents_field = schema.ROOT.child("agents")
    bottles_field = schema.ROOT.child("bottles")
    assert agents_field is not None and bottles_field is not None
    bottles = {
        name: _bottle(name, {**schema.defaults_of(bottles_field), **raw}, base)
        for name, raw in data.get("bottles", {}).items()
    }
    agents = {
        name: _agent(name, {**schema.defaults_of(agents_field), **raw}, base, list(bottles))
        for name, raw in data.get("agents", {}).items()
    }
    return Manifest(path=path, agents=agents, bottles=bottles)


def _optional_path(base: Path, value: str | None) -> Path | None:
    return resolve_path(base, value) if value is not None else None


def _agent(name: str, raw: dict[str, Any], base: Path, bottles: list[str]) -> Agent:
    return Agent(
        name=name,
        bottle=schema.implied_bottle(raw, bottles) or "",
        prompt=raw.get("prompt"),
        prompt_file=_optional_path(base, raw.get("prompt_file")),
        command=tuple(raw["command"]),
        skills=tuple(raw["skills"]),
        copy_cwd=bool(raw["copy_cwd"]),
    )


def _bottle(name: str, raw: dict[str, Any], base: Path) -> Bottle:
    egress_field = schema.field_at(("bottles", name, "egress"))
    secret_field = schema.field_at(("bottles", name, "secrets", "_"))
    git_field = schema.field_at(("bottles", name, "git", 0))
    assert egress_field and secret_field and git_field
    egress = {**schema.defaults_of(egress_field), **raw.get("egress", {})}
    secrets = {
        secret_name: Secret(
            name=secret_name,
            from_env=values.get("from_env"),
            from_file=_optional_path(base, values.get("from_file")),
            hosts=tuple(values.get("hosts", ())),
            headers=tuple({**schema.defaults_of(secret_field), **values}["headers"]),
        )
        for secret_name, values in raw.get("secrets", {}).items()
    }
    git = tuple(
        GitUpstream(
            name=values["name"],
            url=values["url"],
            identity=_optional_path(base, values.get("identity")),
            known_host_key=values.get("known_host_key"),
            push_branches=tuple(values["push_branches"]),
            allow_force_push=bool(values["allow_force_push"]),
            allow_delete=bool(values["allow_delete"]),
            allow_manifest_changes=bool(values["allow_manifest_changes"]),
            allow_ci_changes=bool(values["allow_ci_changes"]),
        )
        for values in ({**schema.defaults_of(git_field), **g} for g in raw.get("git", []))
    )
    return Bottle(
        name=name,
        backend=raw["backend"],
        runtime=raw["runtime"],
        dockerfile=resolve_path(base, raw["dockerfile"]),
        context=resolve_path(base, raw["context"]),
        build_args=dict(raw["build_args"]),
        base_image=raw.get("base_image"),
        ca_bundle=_optional_path(base, raw.get("ca_bundle")),
        env=dict(raw["env"]),
        cpus=float(raw["cpus"]),
        memory=str(raw["memory"]),
        supervise=bool(raw["supervise"]),
        egress=Egress(
            allow=tuple(egress["allow"]),
            upstream_ca=_optional_path(base, egress.get("upstream_ca")),
            ask=bool(egress.get("ask", False)),
            intercept=str(egress["intercept"]),
        ),
        secrets=secrets,
        git=git,
    )
