"""Manifest trust, the pure part: what in a bottle.toml decides a bottle's way out, and how two
versions of that differ.

A hostile agent cannot edit the user's manifest, but it can propose one (a branch that changes
`bottle.toml`, a repository that ships one). `surface_of` reduces a manifest to its
`TrustedSurface`: egress rules, secrets (source, the hosts their values go to, the headers they
go in), git upstreams, supervise, backend and runtime, the agent's share of the host (`cpus`,
`memory`: nothing on the host clamps them), and every host path the manifest reads outside its
own directory.
`changes` compares two surfaces as readable lines, each marked widening (needs the
person's trust) or narrowing (a bottle that can do less; no trust needed). Anything not known to
narrow counts as widening.

Paths are compared after symlinks are resolved: a committed symlink `token -> ~/.aws/credentials`
makes `from_file = "token"` read outside the manifest's directory, and the surface says so.
Resolving is the only file-system access here, and it is injected (`resolve`). A resolved path
under the home directory is kept as `~/...`: what `~` means is the person's, not the
manifest's, so running with another HOME (a test, sudo -E) is no change of the manifest.

The texts are raw manifest values: show them through `bottle_engine.display.safe_text`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from bottle_engine.git import upstream_place
from bottle_engine.manifest.model import GitUpstream, Manifest
from bottle_engine.manifest.schema import DEFAULT_SECRET_HEADERS, INTERCEPT_ALL, INTERCEPT_SECRETS

SURFACE_VERSION = 1

# Files and directories under the home directory that hold credentials. A manifest that reads
# one of them is called out, whatever key reads it.
CREDENTIAL_LOCATIONS = (
    ".ssh",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".config/glab-cli",
    ".config/op",
    ".config/git/credentials",
    ".docker/config.json",
    ".kube",
    ".netrc",
    ".git-credentials",
    ".gitcookies",
    ".gnupg",
    ".password-store",
    ".local/share/keyrings",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials.toml",
    ".cargo/credentials",
    ".gem/credentials",
    ".terraform.d",
    ".vault-token",
    ".claude/.credentials.json",
)

# The manifest keys (`schema.walk` paths) trust does not compare, and why: every other key of the
# schema is in the surface (a test changes each one and checks).
OUTSIDE_SURFACE = {
    "agents.AGENT.prompt": "text the agent reads, inside the bottle",
    "agents.AGENT.command": "runs inside the bottle",
    "bottles.BOTTLE.env": "set inside the bottle only; the engine's own variables win",
    "bottles.BOTTLE.build_args": "inputs of the Dockerfile, whose content is not reviewed "
    "(`unreviewed`)",
    "bottles.BOTTLE.base_image": "the Dockerfile's base, like its FROM line (`unreviewed`)",
}

Resolve = Callable[[Path], Path]
_Surface = TypeVar("_Surface")  # a bottle's, an agent's, a secret's or a git upstream's


def _real_path(path: Path) -> Path:
    return Path(os.path.realpath(path))


@dataclass(frozen=True)
class SecretSurface:
    source: str  # "env NAME" or "file /resolved/path"
    hosts: tuple[str, ...]  # sorted
    # The request headers the value may go in: sorted, lower-case (names are case-insensitive).
    # None: a record stored before the surface held them, when any header carried the value.
    headers: tuple[str, ...] | None = None


def git_surface(upstream: GitUpstream, where: Callable[[Path], str]) -> GitUpstream:
    """A git upstream as trust keeps it: the manifest model's own dataclass, so a new git key
    is in the record and the fingerprint without a second list of fields here. The identity
    becomes its resolved path (`where`: `~/...` under the home directory), the push branches a
    sorted set."""
    return replace(
        upstream,
        identity=Path(where(upstream.identity)) if upstream.identity else None,
        push_branches=tuple(sorted(set(upstream.push_branches))),
    )


@dataclass(frozen=True)
class BottleSurface:
    backend: str
    runtime: str
    supervise: bool
    allow: tuple[str, ...]
    ask: tuple[str, ...]
    secrets: dict[str, SecretSurface] = field(default_factory=dict)
    git: dict[str, GitUpstream] = field(default_factory=dict)  # see `git_surface`
    paths: dict[str, str] = field(default_factory=dict)  # what reads it -> resolved path
    # The agent's size. None: a record stored before the surface held it, which trusts no size.
    cpus: float | None = None
    memory: int | None = None  # bytes
    # `[egress] intercept`: the tunnels the proxy opens to judge what is inside. None: a record
    # stored before the surface held it, when only a secret's host's were opened.
    intercept: str | None = None


@dataclass(frozen=True)
class AgentSurface:
    bottle: str
    paths: dict[str, str] = field(default_factory=dict)
    # `copy_cwd`: the directory `launch` runs in (the person's, wherever that is) goes into the
    # bottle. None: a record stored before the surface held it.
    copies_cwd: bool | None = None


@dataclass(frozen=True)
class TrustedSurface:
    """The security-relevant content of one manifest, as plain comparable values."""

    manifest: str  # the resolved manifest path
    home: str = field(default="", compare=False)  # what `~` meant; for display only
    bottles: dict[str, BottleSurface] = field(default_factory=dict)
    agents: dict[str, AgentSurface] = field(default_factory=dict)

    @property
    def directory(self) -> str:
        return str(Path(self.manifest).parent)

    def to_json(self) -> dict[str, Any]:
        return {"version": SURFACE_VERSION, **asdict(self, dict_factory=_json_fields)}

    @property
    def fingerprint(self) -> str:
        """A digest of the content: what a review showed is what gets recorded."""
        content = {k: v for k, v in self.to_json().items() if k != "home"}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrustedSurface:
        """The surface stored by `to_json`; `ValueError` when it is not one."""
        try:
            if data.get("version") != SURFACE_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            bottles = {
                name: BottleSurface(
                    backend=str(b["backend"]),
                    runtime=str(b["runtime"]),
                    supervise=bool(b["supervise"]),
                    allow=tuple(b["allow"]),
                    ask=tuple(b["ask"]),
                    secrets={
                        s: SecretSurface(
                            str(v["source"]),
                            tuple(v["hosts"]),
                            tuple(v["headers"]) if v.get("headers") is not None else None,
                        )
                        for s, v in b["secrets"].items()
                    },
                    git={g: _git_surface_from_json(g, v) for g, v in b["git"].items()},
                    paths={str(k): str(v) for k, v in b["paths"].items()},
                    cpus=float(b["cpus"]) if b.get("cpus") is not None else None,
                    memory=int(b["memory"]) if b.get("memory") is not None else None,
                    intercept=str(b["intercept"]) if b.get("intercept") is not None else None,
                )
                for name, b in data["bottles"].items()
            }
            agents = {
                name: AgentSurface(
                    str(a["bottle"]),
                    {str(k): str(v) for k, v in a["paths"].items()},
                    bool(a["copies_cwd"]) if a.get("copies_cwd") is not None else None,
                )
                for name, a in data["agents"].items()
            }
            return cls(str(data["manifest"]), str(data["home"]), bottles, agents)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a trusted surface: {exc!r}") from exc


def _json_fields(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """`asdict`'s dict factory for the stored form: paths as their text."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in items}


def _git_surface_from_json(name: str, stored: dict[str, Any]) -> GitUpstream:
    """A stored upstream. Its name is the key it is stored under (records written before the
    surface held the model's dataclass have no `name` in the value, and read the same)."""
    identity = stored["identity"]
    return GitUpstream(
        **{
            **stored,
            "name": name,
            "identity": Path(identity) if identity is not None else None,
            "push_branches": tuple(stored["push_branches"]),
        }
    )


# -- manifest -> surface -------------------------------------------------------------------------


def surface_of(
    manifest: Manifest, *, home: Path | None = None, resolve: Resolve = _real_path
) -> TrustedSurface:
    """The trusted surface of `manifest`; `home` is where `~/.claude/skills` lives."""
    home = home if home is not None else Path.home()
    real_home = resolve(home)
    directory = resolve(manifest.directory)

    def where(path: Path) -> str:
        """The resolved path, as `~/...` when it is under the home directory."""
        real = resolve(path)
        if real_home != Path("/") and real.is_relative_to(real_home):
            return str(Path("~") / real.relative_to(real_home))
        return str(real)

    def outside(path: Path | None) -> str | None:
        """Where the path leads when it leaves the manifest's directory, else None."""
        if path is None:
            return None
        return None if resolve(path).is_relative_to(directory) else where(path)

    bottles = {}
    for name, bottle in manifest.bottles.items():
        paths = {
            key: found
            for key, value in (
                ("dockerfile", bottle.dockerfile),
                ("context", bottle.context),
                ("ca_bundle", bottle.ca_bundle),
                ("upstream_ca", _as_path(getattr(bottle.egress, "upstream_ca", None))),
            )
            if (found := outside(value)) is not None
        }
        secrets = {
            secret.name: SecretSurface(
                source=f"file {where(secret.from_file)}"
                if secret.from_file is not None
                else f"env {secret.from_env}",
                hosts=tuple(sorted(set(secret.hosts))),
                headers=tuple(sorted({name.lower() for name in secret.headers})),
            )
            for secret in bottle.secrets.values()
        }
        git = {upstream.name: git_surface(upstream, where) for upstream in bottle.git}
        bottles[name] = BottleSurface(
            backend=bottle.backend,
            runtime=bottle.runtime,
            supervise=bottle.supervise,
            allow=tuple(sorted(set(bottle.egress.allow))),
            ask=_as_entries(getattr(bottle.egress, "ask", None)),
            secrets=secrets,
            git=git,
            paths=paths,
            cpus=bottle.cpus,
            memory=bottle.memory_bytes,
            intercept=bottle.egress.intercept,
        )
    agents = {}
    for name, agent in manifest.agents.items():
        paths = {}
        if (prompt := outside(agent.prompt_file)) is not None:
            paths["prompt_file"] = prompt
        for skill in agent.skills:  # always outside: they come from ~/.claude/skills
            paths[f"skill {skill}"] = where(home / ".claude" / "skills" / skill)
        agents[name] = AgentSurface(bottle=agent.bottle, paths=paths, copies_cwd=agent.copy_cwd)
    return TrustedSurface(
        manifest=str(resolve(manifest.path)), home=str(real_home), bottles=bottles, agents=agents
    )


def unreviewed(
    manifest: Manifest, surface: TrustedSurface, *, resolve: Resolve = _real_path
) -> tuple[str, ...]:
    """What a build reads and runs that the surface does not hold, one line per Dockerfile and
    context (by design: a person's own image edits would otherwise need trust each time; the
    git gate refuses an agent's push of the Dockerfile and `.dockerignore`). Said with every
    review, so that "no change" is not read as "the build is unchanged"."""
    places = _Places(Path(surface.home), Path(surface.directory))
    builds = sorted(
        {(str(resolve(b.dockerfile)), str(resolve(b.context))) for b in manifest.bottles.values()}
    )
    return tuple(
        f"not reviewed here: the content of {places.show(dockerfile)} and the build context "
        f"{places.show(context)}: a build runs their RUN steps with the network of the host's "
        "Docker; read their changes yourself"
        for dockerfile, context in builds
    )


def _as_path(value: object) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    return Path(str(value))


def _as_entries(value: object) -> tuple[str, ...]:
    """A key whose shape another change decides (`ask`): as a sorted tuple of texts."""
    if value is None or value is False:
        return ()
    if value is True:  # `ask = true`: a person may let unlisted hosts through
        return ("unlisted hosts held for a person's answer",)
    if isinstance(value, str | int | float):
        return (str(value),)
    if isinstance(value, Iterable):
        return tuple(sorted({str(item) for item in value}))
    return (str(value),)


# -- surface x surface -> changes ----------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One readable difference. `widening`: the bottle may do something it could not before."""

    text: str
    widening: bool

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "widening": self.widening}


def empty_surface(like: TrustedSurface) -> TrustedSurface:
    """Nothing trusted yet, for the same manifest (a first use lists everything as new)."""
    return TrustedSurface(manifest=like.manifest, home=like.home)


def changes(old: TrustedSurface, new: TrustedSurface) -> list[Change]:
    """What differs from `old` to `new`, bottles then agents, each in name order."""
    places = _Places(Path(new.home), Path(new.directory))
    return [
        *_named_changes("bottle", old.bottles, new.bottles, places, _bottle_changes),
        *_named_changes("agent", old.agents, new.agents, places, _agent_changes),
    ]


def widening(found: Iterable[Change]) -> list[Change]:
    return [change for change in found if change.widening]


@dataclass(frozen=True)
class _Places:
    """Shows paths (`~/...` as stored, the manifest's own files relative to it), and says when
    one is somewhere a person should look twice."""

    home: Path
    directory: Path

    def _absolute(self, path: str) -> Path:
        return self.home / path[2:] if path.startswith("~/") or path == "~" else Path(path)

    def show(self, path: str) -> str:
        real = self._absolute(path)
        if real.is_relative_to(self.directory):
            return str(real.relative_to(self.directory))
        return path

    def callouts(self, path: str) -> str:
        in_home = path == "~" or path.startswith("~/")
        notes = []
        if not in_home and not self._absolute(path).is_relative_to(self.directory):
            notes.append("outside your home and the manifest's directory")
        if in_home:
            relative = Path(path[2:]) if path != "~" else Path()
            for location in CREDENTIAL_LOCATIONS:
                if relative.is_relative_to(location):
                    notes.append(f"under ~/{location}, a credential location")
                    break
        return f" ({'; '.join(notes)})" if notes else ""

    def describe(self, path: str) -> str:
        return self.show(path) + self.callouts(path)


def _named_changes(
    prefix: str,
    before: Mapping[str, _Surface],
    after: Mapping[str, _Surface],
    places: _Places,
    changed: Callable[[str, _Surface | None, _Surface, _Places], Iterator[Change]],
) -> Iterator[Change]:
    """Per name, in name order: `PREFIX NAME removed` where `after` has it no more, else what
    `changed` finds from its `before` (None: it is new) to its `after`."""
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name), after.get(name)
        if now is None:
            yield Change(f"{prefix} {name} removed", widening=False)
        else:
            yield from changed(f"{prefix} {name}", was, now, places)


def _agent_changes(
    prefix: str, was: AgentSurface | None, now: AgentSurface, places: _Places
) -> Iterator[Change]:
    if was is None:
        yield Change(f"{prefix}: new, runs in bottle {now.bottle}", widening=True)
    elif was.bottle != now.bottle:
        yield Change(f"{prefix}: now runs in bottle {now.bottle} (was {was.bottle})", True)
    if now.copies_cwd and (was is None or not was.copies_cwd):
        yield Change(f"{prefix}: copies the directory launch runs in into the bottle", True)
    elif was is not None and was.copies_cwd and not now.copies_cwd:
        yield Change(f"{prefix}: no longer copies the directory launch runs in", False)
    yield from _path_changes(prefix, was.paths if was else {}, now.paths, places)


def _bottle_changes(
    prefix: str, before: BottleSurface | None, after: BottleSurface, places: _Places
) -> Iterator[Change]:
    if before is None:
        yield Change(
            f"{prefix}: new bottle (backend {after.backend}, runtime {after.runtime}, "
            f"supervise {_on_off(after.supervise)}, {_size_text('cpus', after.cpus)}, "
            f"{_size_text('memory', after.memory)})",
            widening=True,
        )
        before = BottleSurface(
            after.backend,
            after.runtime,
            after.supervise,
            (),
            (),
            cpus=after.cpus,
            memory=after.memory,
            intercept=after.intercept,
        )
    if before.backend != after.backend:
        yield Change(f"{prefix}: backend {after.backend} (was {before.backend})", True)
    if before.runtime != after.runtime:
        yield Change(
            f"{prefix}: runtime {after.runtime} (was {before.runtime})",
            widening=after.runtime != "runsc",  # only gVisor is known to be no weaker
        )
    if before.supervise != after.supervise:
        was, now = _on_off(before.supervise), _on_off(after.supervise)
        yield Change(f"{prefix}: supervise {now} (was {was})", widening=True)
    for size in ("cpus", "memory"):
        yield from _size_changes(prefix, size, getattr(before, size), getattr(after, size))
    yield from _set_changes(f"{prefix}: allow", before.allow, after.allow)
    yield from _set_changes(f"{prefix}: ask", before.ask, after.ask)
    was, now = before.intercept or INTERCEPT_SECRETS, after.intercept or INTERCEPT_SECRETS
    if was != now:
        # Fewer tunnels opened: fewer requests judged, a shared front's other sites in reach.
        yield Change(f"{prefix}: intercept {now} (was {was})", widening=now != INTERCEPT_ALL)
    yield from _named_changes(
        f"{prefix}: secret", before.secrets, after.secrets, places, _secret_changes
    )
    yield from _named_changes(f"{prefix}: git", before.git, after.git, places, _git_changes)
    yield from _path_changes(prefix, before.paths, after.paths, places)


def _size_changes(prefix: str, key: str, was: float | None, now: float | None) -> Iterator[Change]:
    """A larger share of the host widens (the host bounds a bottle only by these); a smaller
    one narrows."""
    if was != now:
        before = "not recorded" if was is None else _size_text(key, was, named=False)
        yield Change(
            f"{prefix}: {_size_text(key, now)} (was {before})",
            widening=was is None or (now is not None and now > was),
        )


def _size_text(key: str, value: float | None, *, named: bool = True) -> str:
    if value is None:
        shown = "unset"
    elif key == "memory":
        shown = f"{value / 1024**3:g} GiB" if value >= 1024**3 else f"{value / 1024**2:g} MiB"
    else:
        shown = f"{value:g}"
    return f"{key} {shown}" if named else shown


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _set_changes(prefix: str, before: Iterable[str], after: Iterable[str]) -> Iterator[Change]:
    was, now = set(before), set(after)
    for entry in sorted(now - was):
        yield Change(f"{prefix} + {entry}", widening=True)
    for entry in sorted(was - now):
        yield Change(f"{prefix} - {entry}", widening=False)


def _source_text(source: str, places: _Places) -> str:
    kind, _, value = source.partition(" ")
    if kind == "file":
        return places.describe(value)
    return f"environment variable {value}"


def _secret_changes(
    prefix: str, was: SecretSurface | None, now: SecretSurface, places: _Places
) -> Iterator[Change]:
    hosts = ", ".join(now.hosts) or "no host"
    if was is None:
        yield Change(
            f"{prefix} now read from {_source_text(now.source, places)} and sent to {hosts}"
            + _unusual_headers(now.headers),
            True,
        )
        return
    if was.source != now.source:
        yield Change(
            f"{prefix} now read from {_source_text(now.source, places)} "
            f"(was {_source_text(was.source, places)}) and sent to {hosts}",
            widening=True,
        )
    added = sorted(set(now.hosts) - set(was.hosts))
    removed = sorted(set(was.hosts) - set(now.hosts))
    if added:
        yield Change(f"{prefix} now also sent to {', '.join(added)}", widening=True)
    if removed:
        yield Change(f"{prefix} no longer sent to {', '.join(removed)}", widening=False)
    yield from _header_changes(prefix, was.headers, now.headers)


_DEFAULT_HEADERS = tuple(sorted({name.lower() for name in DEFAULT_SECRET_HEADERS}))


def _unusual_headers(headers: tuple[str, ...] | None) -> str:
    """The headers a new secret goes in, said when they are not the default credential ones."""
    return "" if headers == _DEFAULT_HEADERS else f" in headers {_headers_text(headers)}"


def _headers_text(headers: tuple[str, ...] | None) -> str:
    return "any" if headers is None else ", ".join(headers) or "none"


def _header_changes(
    prefix: str, was: tuple[str, ...] | None, now: tuple[str, ...] | None
) -> Iterator[Change]:
    """A header the value may newly go in widens (a server may keep it as data and hand it
    back); one it may no longer go in narrows. A record from before headers were kept allowed
    any header: any list narrows it."""
    if was is None and now is not None:
        yield Change(f"{prefix} now sent only in headers {_headers_text(now)}", widening=False)
    elif was is not None and now is not None:
        yield from _set_changes(f"{prefix} headers", was, now)


# The git upstream fields `_git_changes` describes in words; any other field of the model is
# still compared, and a difference in it counts as widening.
_GIT_FLAGS = {
    "allow_force_push": "force push",
    "allow_delete": "branch deletion",
    "allow_manifest_changes": "pushes that change the manifest",
    "allow_ci_changes": "pushes that change CI definitions",
}
_GIT_DESCRIBED = {"name", "url", "identity", "known_host_key", "push_branches", *_GIT_FLAGS}


def _git_changes(
    prefix: str, was: GitUpstream | None, now: GitUpstream, places: _Places
) -> Iterator[Change]:
    if was is None:
        yield Change(f"{prefix}: new upstream {upstream_place(now.url)}: {now.url}", widening=True)
        was = replace(
            now,
            identity=None,
            push_branches=(),
            allow_force_push=False,
            allow_delete=False,
            allow_manifest_changes=False,
            allow_ci_changes=False,
        )
    elif was.url != now.url:
        yield Change(
            f"{prefix}: url now {upstream_place(now.url)}: {now.url} (was {was.url})", widening=True
        )
    if was.identity != now.identity:
        if now.identity is None:
            yield Change(f"{prefix}: no identity (was {places.show(str(was.identity))})", False)
        else:
            previously = f" (was {places.show(str(was.identity))})" if was.identity else ""
            yield Change(
                f"{prefix}: identity {places.describe(str(now.identity))}{previously}", True
            )
    if was.known_host_key != now.known_host_key:
        if now.known_host_key is None:
            yield Change(f"{prefix}: host key no longer pinned", widening=True)
        else:
            yield Change(f"{prefix}: known host key now {now.known_host_key}", widening=True)
    yield from _set_changes(f"{prefix}: push branches", was.push_branches, now.push_branches)
    yield from _git_field_changes(prefix, was, now)


def _git_field_changes(prefix: str, was: GitUpstream, now: GitUpstream) -> Iterator[Change]:
    """The flags, then every field no line above describes."""
    for flag, label in _GIT_FLAGS.items():
        before, after = bool(getattr(was, flag)), bool(getattr(now, flag))
        if before != after:
            verb = "now allowed" if after else "no longer allowed"
            yield Change(f"{prefix}: {label} {verb}", widening=after)
    for other in fields(now):
        old, new = getattr(was, other.name, None), getattr(now, other.name)
        if other.name not in _GIT_DESCRIBED and old != new:
            yield Change(f"{prefix}: {other.name} now {new!r} (was {old!r})", widening=True)


def _path_changes(
    prefix: str, before: dict[str, str], after: dict[str, str], places: _Places
) -> Iterator[Change]:
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key), after.get(key)
        if now is None:
            yield Change(f"{prefix}: {key} no longer read from {places.show(was or '')}", False)
        elif was != now:
            previously = f" (was {places.show(was)})" if was else ""
            yield Change(f"{prefix}: {key} read from {places.describe(now)}{previously}", True)
