"""The engine's front door for bottles: launch, attach, stop, resume, list, gc.

The CLI and the language server both call these functions; they pick the backend from the
manifest (or BOTTLE_BACKEND) and keep the records in the state dir.
"""

from __future__ import annotations

import os
import secrets as random_tokens
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from bottle_engine import config_seal, limits, records, state, trust_store
from bottle_engine.artifacts.pack import Pack
from bottle_engine.backends import Backend, backend_named
from bottle_engine.backends.base import Availability
from bottle_engine.bottle_dir import SECRETS_DIR_NAME, BottleDir, read_regular_files
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError
from bottle_engine.git import toplevel
from bottle_engine.manifest import Manifest, load_manifest
from bottle_engine.plan import Planner, manifest_reads, protected_paths
from bottle_engine.pool import CLAIMED, FREE, MAKING
from bottle_engine.pool import Member as PoolMember
from bottle_engine.pool import listed as pool_listed
from bottle_engine.probes import (
    ProbeReport,
    ProbeTargets,
    build_probes,
    find_secret_leaks,
    run_probes,
)
from bottle_engine.progress import Progress, QuietProgress
from bottle_engine.records import BottleRecord
from bottle_engine.settings import BACKEND_NAMES, EngineSettings
from bottle_engine.status import RUNNING, UNKNOWN, BottleStatus
from bottle_engine.trust_store import TrustReview, UntrustedManifestError

POOL_STATES = (FREE, MAKING, CLAIMED)
MAX_POOL_FILL = 32  # per call: each member is a running bundle (memory) and a /28
MAX_SECRET_BYTES = 1024 * 1024  # a secret value `probe` looks for; a larger file is not one


def planner_for(
    manifest_path: Path | str | None,
    agent: str,
    cwd: Path | None = None,
    settings: EngineSettings | None = None,
    *,
    launch_token: str | None = None,
) -> Planner:
    """Load and validate the manifest, and make the planner for one launch of `agent` (a fresh
    random `launch_token` unless given: it makes the secret placeholders)."""
    manifest = load_manifest(manifest_path)
    if agent not in manifest.agents:
        known = ", ".join(sorted(manifest.agents)) or "none"
        raise BottleError(
            f"{manifest.path}: no agent named '{agent}' (defined: {known})",
            fix="pick one of the [agents.NAME] tables, or add one",
        )
    return Planner.from_settings(
        manifest,
        agent,
        (cwd or Path.cwd()).resolve(),
        settings or EngineSettings.from_env(),
        launch_token=launch_token or random_tokens.token_hex(16),
        git_protected_paths=git_protected_paths(manifest),
    )


def git_protected_paths(manifest: Manifest) -> tuple[str, ...]:
    """What the git gate refuses changes to: the files the manifest reads, relative to the root
    of the repository holding the manifest (its own directory outside a repository, the best
    guess of where an upstream's files land), as written, as symlinks resolve, and each symlink
    on the way (`links_on_the_way`)."""
    if not any(bottle.git for bottle in manifest.bottles.values()):
        return ()
    root = (toplevel(manifest.directory) or manifest.directory).resolve()
    reads = manifest_reads(manifest)
    absolute = [path.absolute() for path in reads]
    links = [link for path in absolute for link in links_on_the_way(path)]
    return protected_paths([*absolute, *(path.resolve() for path in absolute), *links], root)


MAX_LINKS = 40  # links one lookup follows, as Linux bounds them (a loop ends here)


def links_on_the_way(path: Path) -> list[Path]:
    """The symlinks that opening the absolute `path` follows, each where it stands (its
    directory resolved). Pointed elsewhere, any of them makes `path` open another file though
    neither `path` nor the file it opened changed: a link `docker` -> `build` on the way to
    docker/Dockerfile, retargeted, built the agent's Dockerfile."""
    links: list[Path] = []
    current, pending = Path(path.anchor), list(path.parts[1:])
    while pending and len(links) < MAX_LINKS:
        part = pending.pop(0)
        step = current / part
        if part == "..":
            current = current.parent
        elif not step.is_symlink():
            current = step
        else:
            links.append(step)
            target = Path(os.readlink(step))
            if target.is_absolute():
                current = Path(target.anchor)
            pending = [*target.parts[1 if target.is_absolute() else 0 :], *pending]
    return links


def launch(
    manifest_path: Path | str | None,
    agent: str,
    *,
    cwd: Path | None = None,
    progress: Progress | None = None,
    trust: bool = False,
    confirm: Callable[[TrustReview], bool] | None = None,
    on_first_use: Callable[[TrustReview], None] | None = None,
    terminal: bool | None = None,
    settings: EngineSettings | None = None,
) -> BottleRecord:
    """Start a bottle for `agent` (detached); attach with `attach(record.slug)`.

    Before anything is built or started, the manifest is checked against what was last trusted
    for its path (`trust_store`): a first use records it; a change that widens what its bottles
    may do raises `UntrustedManifestError`, unless `trust` is set or `confirm(review)` says yes.
    `on_first_use(review)` is told what a first use trusts. `terminal`: a person attaches from
    a terminal right after (the agent then gets a TTY whatever its command; `wants_tty`).
    """
    progress = progress or QuietProgress()
    settings = settings or EngineSettings.from_env()
    planner = planner_for(manifest_path, agent, cwd, settings)
    review = check_trust(planner.manifest, progress, trust=trust, confirm=confirm)
    if review.first_use and on_first_use is not None:
        on_first_use(review)
    backend = backend_named(planner(planner.base_slug).backend, settings)
    with state.launching():
        return backend.launch(planner, progress, terminal=terminal)


def check_trust(
    manifest: Manifest,
    progress: Progress,
    *,
    trust: bool = False,
    confirm: Callable[[TrustReview], bool] | None = None,
) -> TrustReview:
    """Stop a launch whose manifest widens what was trusted; record what it goes ahead with."""
    review = trust_store.review(manifest)
    if review.needs_trust and not trust and (confirm is None or not confirm(review)):
        raise UntrustedManifestError(review)
    if review.first_use:
        progress.stage(f"first launch of {safe_text(manifest.path)}: recorded as trusted")
    trust_store.record(review)  # what this launch goes ahead with is what was last launched
    return review


def require_trust(manifest: Manifest) -> TrustReview:
    """Stop a build without a launch (`build`, `pack`, `pool fill`) from a manifest that widens
    what was trusted: it reads the same host paths a launch would (context, Dockerfile, CA
    bundle) and runs the same Dockerfile. Records nothing; a launch does that."""
    review = trust_store.review(manifest)
    if review.needs_trust:
        raise UntrustedManifestError(review)
    return review


def find(slug: str) -> BottleRecord:
    record = records.load(slug)
    if record is None:
        known = ", ".join(r.slug for r in records.all_records()) or "none"
        raise BottleError(
            f"no bottle '{slug}' (known: {known})", fix="`bottle-engine ls` lists bottles"
        )
    return record


def _backend(record: BottleRecord) -> Backend:
    return backend_named(record.backend)


def attach(slug: str) -> int:
    record = find(slug)
    return _backend(record).attach(record)


def stop(slug: str, *, remove: bool = False) -> None:
    """Stop a bottle; with `remove`, delete its containers, networks and state too."""
    record = find(slug)
    _backend(record).stop(record, remove=remove)
    if remove:
        BottleDir.of(slug).remove()
        records.remove(slug)
        config_seal.forget(slug)


def resume(slug: str, progress: Progress | None = None) -> BottleRecord:
    record = find(slug)
    _backend(record).resume(record, progress or QuietProgress())
    return record.with_status(BottleStatus(RUNNING))


def logs(slug: str, *, bundle: bool = False, follow: bool = False) -> Iterator[bytes]:
    """The output of a bottle's agent (or its bundle), through the bottle's own backend."""
    record = find(slug)
    return _backend(record).logs(record, bundle=bundle, follow=follow)


def exec_in(slug: str, argv: Sequence[str], *, tty: bool) -> int:
    """Run `argv` in a running bottle as its agent (with a TTY when `tty`); its exit code."""
    if not argv:
        raise BottleError("no command to run", fix=f"`bottle-engine exec {slug} -- CMD...`")
    record = find(slug)
    return _backend(record).exec(record, argv, tty=tty)


def list_bottles() -> list[BottleRecord]:
    """Every recorded bottle with its current status; where its backend does not answer, the
    status is unknown and its fix says why (each backend is asked once)."""
    found = []
    backends: dict[str, tuple[Backend, Availability]] = {}
    for record in records.all_records():
        if record.backend not in backends:
            backend = _backend(record)
            backends[record.backend] = (backend, backend.available())
        backend, availability = backends[record.backend]
        if not availability:
            found.append(record.with_status(BottleStatus(UNKNOWN, availability.fix)))
            continue
        try:
            status = backend.status(record)
        except BottleError as exc:
            status = BottleStatus(UNKNOWN, exc.fix)
        found.append(record.with_status(status))
    return found


def probe(slug: str, targets: ProbeTargets) -> tuple[ProbeReport, list[str]]:
    """Run the escape probes in a bottle; also the places where a real secret value shows up."""
    record = find(slug)
    backend = _backend(record)
    config = BundleConfig.from_json(config_seal.checked_config_text(slug, BottleDir.of(slug)))
    targets = replace(targets, egress_allow=config.egress_allow)
    leaks = _secret_leaks(record, backend)
    report = run_probes(build_probes(targets), lambda argv: backend.exec_as_agent(record, argv))
    return report, leaks


def secret_leaks(slug: str) -> list[str]:
    """The places in a bottle's sandbox (environments, home, workspace, /tmp, /etc) that hold
    one of its real secret values."""
    record = find(slug)
    return _secret_leaks(record, _backend(record))


def _secret_leaks(record: BottleRecord, backend: Backend) -> list[str]:
    slug = record.slug
    bottle_dir = BottleDir.of(slug)
    # The values as the engine handed them: the bundle can write its copies, and a taken-over
    # one that leaked a value could leave a decoy in its place for the search below.
    handed = config_seal.checked_handed_files(slug, bottle_dir)
    if handed is not None:
        prefix = f"{SECRETS_DIR_NAME}/"
        found = {k.removeprefix(prefix): v for k, v in handed.items() if k.startswith(prefix)}
    else:
        found = _unsealed_secrets(slug, bottle_dir)
    values = [data.decode("utf-8", errors="replace").strip() for data in found.values()]
    if not values:
        return []
    seconds = limits.SECRET_SEARCH_SECONDS
    return find_secret_leaks(values, backend.secret_haystacks(record, seconds), seconds)


def _unsealed_secrets(slug: str, bottle_dir: BottleDir) -> dict[str, bytes]:
    """The secret values of a bottle launched before they were sealed, from its bundle's dir."""
    try:  # the bundle can write that dir: no link, FIFO or huge file is read from it
        return read_regular_files(bottle_dir.secrets_dir, MAX_SECRET_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BottleError(
            f"{bottle_dir.secrets_dir} is not the directory bot-bottle made ({exc.strerror}): "
            "the bottle's bundle, which can write its state dir, replaced it",
            fix=f"remove the bottle (`bottle-engine stop --rm {slug}`) and launch it again",
        ) from exc


def gc(waiting: Callable[[], None] = lambda: None) -> list[str]:
    """Remove resources labelled as ours that no record accounts for, in every backend that
    answers here (microVMs when a smolvm CLI is installed); their names. When none answers,
    the first one's reason is the error. Launches under way are waited for (`waiting()` is
    told): what they made has no record yet."""
    removed: list[str] = []
    unavailable: list[Availability] = []
    with state.collecting(waiting):
        for name in BACKEND_NAMES:
            backend = backend_named(name)
            availability = backend.available()
            if availability:
                removed += backend.remove_orphans()
            else:
                unavailable.append(availability)
    if len(unavailable) == len(BACKEND_NAMES):
        raise BottleError(unavailable[0].detail, fix=unavailable[0].fix)
    return removed


def pack(
    manifest_path: Path | str | None,
    agent: str,
    progress: Progress,
    *,
    via_registry: bool = False,
    settings: EngineSettings | None = None,
) -> Pack:
    """Build (or reuse) `agent`'s images and its microVM pack, as a launch on the
    smolmachines backend would, and stop there."""
    from bottle_engine.backends.smolmachines import SmolmachinesBackend

    settings = settings or EngineSettings.from_env()
    planner = planner_for(manifest_path, agent, settings=settings)
    require_trust(planner.manifest)
    backend = SmolmachinesBackend(settings=settings)
    _, _, packed = backend.prepare(planner(planner.base_slug), progress, via_registry=via_registry)
    return packed


# -- the warm pool (bottle_engine/pool.py) ---------------------------------------------------
def pool_fill(
    manifest_path: Path | str | None,
    agent: str,
    count: int,
    *,
    progress: Progress | None = None,
    settings: EngineSettings | None = None,
    up_to: bool = False,
) -> list[PoolMember]:
    """Start `count` warm gateways for `agent`'s bottle (its bundle image, runtime and size),
    so that its next launches only start the agent. Docker backend only. `up_to`: only as
    many as it takes for `count` free members of that kind (none when there are enough)."""
    if not 1 <= count <= MAX_POOL_FILL:
        raise BottleError(
            f"pool fill {count}: the count must be between 1 and {MAX_POOL_FILL}",
            fix=f"e.g. `bottle-engine pool fill 2 {agent}`",
        )
    progress = progress or QuietProgress()
    settings = settings or EngineSettings.from_env()
    planner = planner_for(manifest_path, agent, settings=settings)
    require_trust(planner.manifest)
    plan = planner(planner.base_slug)
    if plan.backend != "docker":
        raise BottleError(
            f"agent '{agent}' runs on the {plan.backend} backend; the warm pool is Docker's only",
            fix="launch it without a pool (cold), or use a docker bottle",
        )
    from bottle_engine.backends.docker import DockerBackend

    backend = DockerBackend(settings=settings)
    _, bundle_image = backend.prepare(plan, progress)  # the agent image too, for the launches
    choice = backend.runtime_for(plan.runtime, bundle_image.image_tag)
    key = backend.pool.key_for(bundle_image.image_tag, choice.docker_runtime, plan.memory_bytes)
    if up_to:
        count -= sum(1 for member in pool_listed(FREE) if member.key == key)
    if count <= 0:
        return []
    with state.launching():
        return backend.pool.fill(key, count, progress)


def pool_release(member_ids: Sequence[str], settings: EngineSettings | None = None) -> list[str]:
    """Remove these members if no launch has taken them meanwhile; the ids removed."""
    from bottle_engine.backends.docker import DockerBackend

    return DockerBackend(settings=settings).pool.release(member_ids)


def pool_members() -> list[tuple[str, PoolMember]]:
    """Every member with where it is: free, making (being started) or claimed (in use)."""
    return [(where, member) for where in POOL_STATES for member in pool_listed(where)]


def pool_drain(settings: EngineSettings | None = None) -> list[str]:
    """Remove every member no bottle uses; their ids."""
    from bottle_engine.backends.docker import DockerBackend

    return DockerBackend(settings=settings).pool.drain()
