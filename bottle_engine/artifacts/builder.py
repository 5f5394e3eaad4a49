"""Building artifacts: input key -> store hit, or docker build -> normalize -> store -> load.

`ensure_artifact` is what launches call: with a stored artifact for the input key it makes no
``docker build`` at all, only (if Docker lacks the image) a ``docker load`` of the stored layout.
`verify_artifact` builds twice without any cache and says which paths differ.
With a shared cache (``BOTTLE_ARTIFACT_REGISTRY``, `remote.py`), a store miss first asks the
registry for the input key, and a fresh build is pushed there; a registry that cannot be used
costs a note, never the build (unless `require_cache`). A spec with ``shared_cache=False`` (the
bundle) never meets the shared cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottle_engine.artifacts import oci
from bottle_engine.artifacts.base import base_image_digest, image_digest
from bottle_engine.artifacts.inputs import BuildInputs, prepare_inputs, write_context_tar
from bottle_engine.artifacts.normalize import NormalizeRules
from bottle_engine.artifacts.oci import (
    ArchiveFormat,
    Difference,
    diff_layouts,
    layout_from_docker_save,
    read_layout,
)
from bottle_engine.artifacts.remote import RemoteCache, RemoteCacheError
from bottle_engine.artifacts.spec import Artifact, BuildSpec
from bottle_engine.artifacts.store import ArtifactStore
from bottle_engine.dockerapi import images
from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress, QuietProgress
from bottle_engine.settings import EngineSettings

LAYER_CACHE_TAG = "build-cache"
# `build(remote=...)` default: the shared cache the settings name (BOTTLE_ARTIFACT_REGISTRY).
FROM_SETTINGS = "from-settings"


@dataclass(frozen=True)
class BuildResult:
    artifact: Artifact
    inputs: BuildInputs
    built: bool  # False: the store already held the artifact (no docker build ran)
    loaded: bool  # True: the image was loaded into Docker by this call
    pulled: bool = False  # True: it came from the shared cache (no docker build ran)
    notes: tuple[str, ...] = ()  # what went wrong with the shared cache, for people


@dataclass(frozen=True)
class VerifyResult:
    inputs: BuildInputs
    first_digest: str
    second_digest: str
    differences: list[Difference]
    artifact: Artifact | None  # stored when the two builds (and the shared cache) agree
    shared_digest: str | None = None  # what the shared cache holds for the key, if anything
    notes: tuple[str, ...] = ()  # the shared cache could not be asked, and why

    @property
    def reproducible(self) -> bool:
        return self.first_digest == self.second_digest and self.shared_digest in (
            None,
            self.first_digest,
        )


def ensure_artifact(
    client: Any,
    spec: BuildSpec,
    *,
    no_cache: bool = False,
    progress: Progress | None = None,
    settings: EngineSettings | None = None,
) -> Artifact:
    """The artifact for `spec`, built only when the store has none for its input key; the
    image is available in Docker as ``artifact.image_tag`` afterwards."""
    return build(client, spec, no_cache=no_cache, progress=progress, settings=settings).artifact


def resolve_inputs(client: Any, spec: BuildSpec, progress: Progress | None = None) -> BuildInputs:
    def read_image(ref: str) -> str:
        return image_digest(client, ref, progress, what="image the Dockerfile reads")

    base_digest = base_image_digest(client, spec.base_image, progress)
    return prepare_inputs(spec, base_digest, read_image, progress)


def build(
    client: Any,
    spec: BuildSpec,
    *,
    no_cache: bool = False,
    progress: Progress | None = None,
    store: ArtifactStore | None = None,
    remote: RemoteCache | str | None = FROM_SETTINGS,
    require_cache: bool = False,
    settings: EngineSettings | None = None,
) -> BuildResult:
    """`ensure_artifact` with the details the CLI prints (inputs, built or reused, loaded).

    `remote`: the shared cache to pull from on a store miss and push a fresh build to (None:
    none; ignored when `spec.shared_cache` is False). `require_cache`: fail instead of
    building when neither has the input key.
    `settings`: the shared cache and whether Docker's build is kept as a layer cache.
    """
    progress = progress or QuietProgress()
    store = store or ArtifactStore()
    settings = settings or EngineSettings.from_env()
    shared = _shared_cache(spec, remote, settings)
    progress.stage(f"{spec.name} image: hash inputs")
    inputs = resolve_inputs(client, spec, progress)
    # An artifact the shared cache may not give (the bundle) is trusted only if built here: a
    # record of one pulled (by `cache pull`, or by an engine before this rule) is built again.
    artifact = (
        None if no_cache else store.lookup(inputs.input_key, built_here=not spec.shared_cache)
    )
    notes: list[str] = []
    pulled = False
    if artifact is None and not no_cache and shared is not None:
        progress.stage(f"{spec.name} image: look up {shared.location}")
        try:
            artifact = shared.pull(inputs.input_key, store, expected_name=spec.name)
            pulled = artifact is not None
        except RemoteCacheError as exc:
            if require_cache:
                raise
            notes.append(f"shared cache not used, building locally: {exc}")
            progress.detail(notes[-1])
    if artifact is None and require_cache:
        where = f"the store or {shared.location}" if shared is not None else "the store"
        raise BottleError(
            f"--require-cache: no artifact for {spec.name} (input key {inputs.input_key}) "
            f"in {where}",
            fix="build it on a machine that pushes to the shared cache, or drop --require-cache",
        )
    built = artifact is None
    if artifact is None:
        with store.new_layout() as work:
            digest = _build_layout(
                client,
                inputs,
                work,
                no_cache=no_cache,
                keep_layer_cache=settings.layer_cache,
                progress=progress,
            )
            artifact = store.put(inputs.input_key, spec.name, digest, work / "layout")
        if shared is not None:
            progress.stage(f"{spec.name} image: push to {shared.location}")
            try:
                outcome = shared.push(artifact, spec.name)
                if outcome not in ("pushed", "present"):
                    notes.append(f"shared cache {shared.location}: {outcome}")
            except RemoteCacheError as exc:
                notes.append(f"shared cache not updated: {exc}")
                progress.detail(notes[-1])
    loaded = make_runnable(client, artifact, store=store, progress=progress)
    return BuildResult(
        artifact, inputs, built=built, loaded=loaded, pulled=pulled, notes=tuple(notes)
    )


def verify_artifact(
    client: Any,
    spec: BuildSpec,
    *,
    progress: Progress | None = None,
    store: ArtifactStore | None = None,
    remote: RemoteCache | str | None = FROM_SETTINGS,
    settings: EngineSettings | None = None,
) -> VerifyResult:
    """Build `spec` twice from scratch; store the artifact if both builds give one digest and
    the shared cache (if any) holds none other for the key. On a mismatch with the shared
    cache, its artifact is fetched (into a scratch dir, never the store) and compared."""
    progress = progress or QuietProgress()
    store = store or ArtifactStore()
    settings = settings or EngineSettings.from_env()
    shared = _shared_cache(spec, remote, settings)
    inputs = resolve_inputs(client, spec, progress)
    with (
        store.new_layout() as first,
        store.new_layout() as second,
        store.new_layout() as theirs,
    ):
        digests = []
        for number, work in enumerate((first, second), start=1):
            progress.stage(f"{spec.name} image: verify build {number}/2 (no cache)")
            digests.append(
                _build_layout(
                    client,
                    inputs,
                    work,
                    no_cache=True,
                    keep_layer_cache=number == 1 and settings.layer_cache,
                    progress=progress,
                )
            )
        if digests[0] != digests[1]:
            progress.stage("compare the two builds")
            differences = diff_layouts(first / "layout", second / "layout")
            return VerifyResult(inputs, digests[0], digests[1], differences, None)
        shared_digest: str | None = None
        notes: tuple[str, ...] = ()
        if shared is not None:
            progress.stage(f"compare with {shared.location}")
            try:
                found = shared.lookup(inputs.input_key)
                shared_digest = found[0].digest if found else None
                if shared_digest not in (None, digests[0]):
                    other = shared.pull(inputs.input_key, ArtifactStore(theirs / "store"))
                    assert other is not None
                    differences = diff_layouts(first / "layout", other.layout_dir)
                    return VerifyResult(
                        inputs, digests[0], digests[1], differences, None, shared_digest
                    )
            except RemoteCacheError as exc:
                notes = (f"shared cache not compared: {exc}",)
        artifact = store.put(inputs.input_key, spec.name, digests[0], first / "layout")
    make_runnable(client, artifact, store=store, progress=progress)
    return VerifyResult(inputs, digests[0], digests[1], [], artifact, shared_digest, notes)


def _shared_cache(
    spec: BuildSpec, remote: RemoteCache | str | None, settings: EngineSettings
) -> RemoteCache | None:
    """The shared cache `spec` may use: none for one built only where it runs (the bundle)."""
    if not spec.shared_cache:
        return None
    shared = RemoteCache.from_settings(settings) if remote == FROM_SETTINGS else remote
    assert not isinstance(shared, str)
    return shared


def _build_layout(
    client: Any,
    inputs: BuildInputs,
    work: Path,
    *,
    no_cache: bool,
    keep_layer_cache: bool,
    progress: Progress,
) -> str:
    """docker build, docker save, normalize into ``work/layout``; returns the artifact digest."""
    spec = inputs.spec
    context_tar = work / "context.tar"
    with context_tar.open("wb") as out:
        write_context_tar(inputs, out)
    progress.stage(f"{spec.name} image: docker build")
    raw_id = _docker_build(client, inputs, context_tar, no_cache=no_cache, progress=progress)
    if not no_cache and _reused_stale_layers(client, inputs, raw_id):
        # Clamping only lowers mtimes: cached layers older than the clamp time would keep
        # theirs and give another digest than a fresh build. Build them again.
        progress.detail("layer cache predates SOURCE_DATE_EPOCH; building without it")
        images.remove_image(client, raw_id)
        raw_id = _docker_build(client, inputs, context_tar, no_cache=True, progress=progress)
    context_tar.unlink()
    try:
        progress.stage(f"{spec.name} image: normalize")
        rules = NormalizeRules(source_date_epoch=inputs.source_date_epoch)
        exported = images.export_image(client, raw_id)
        digest = layout_from_docker_save(exported, work / "layout", rules, progress)
    finally:
        _settle_raw_image(client, spec, raw_id, keep=keep_layer_cache)
    return digest


def _docker_build(
    client: Any, inputs: BuildInputs, context_tar: Path, *, no_cache: bool, progress: Progress
) -> str:
    spec = inputs.spec
    with context_tar.open("rb") as context:
        return images.build_image(
            client,
            context,
            dockerfile=inputs.dockerfile_path,
            build_args=dict(inputs.build_args),
            labels=spec.labels,
            no_cache=no_cache,
            on_output=progress.detail,
            what=f"the {spec.name} image ({spec.dockerfile})",
        )


def _reused_stale_layers(client: Any, inputs: BuildInputs, raw_id: str) -> bool:
    """True when a step of the build (not of the base) was made before the clamp time."""
    built = images.step_times(client, raw_id)
    base = images.step_times(client, inputs.spec.base_image)
    return stale_steps(built, base, inputs.source_date_epoch)


def stale_steps(built: list[int], base: list[int], source_date_epoch: int) -> bool:
    """`built` and `base`: creation times of each history step, newest first."""
    own_steps = built[: len(built) - len(base)]
    return any(created < source_date_epoch for created in own_steps)


def layer_cache_ref(spec: BuildSpec) -> str:
    """The tag that keeps Docker's last build of this Dockerfile (its layer cache) alive.

    One per Dockerfile path, so bottles with different Dockerfiles do not evict each other's.
    """
    where = hashlib.sha256(str(spec.dockerfile.resolve()).encode()).hexdigest()[:12]
    return f"bot-bottle/{spec.name}:{LAYER_CACHE_TAG}-{where}"


def _settle_raw_image(client: Any, spec: BuildSpec, raw_id: str, *, keep: bool) -> None:
    """Keep Docker's build as the layer cache for the next build of `spec`, or remove it
    (``BOTTLE_LAYER_CACHE=0``, `EngineSettings.layer_cache`: test suites, CI runners with
    little disk)."""
    if not keep:
        images.remove_image(client, raw_id)
        return
    ref = layer_cache_ref(spec)
    previous = images.inspect_image(client, ref)
    repository, _, tag = ref.rpartition(":")
    images.tag_image(client, raw_id, repository, tag)
    if previous is not None and previous["Id"] != raw_id:
        images.remove_image(client, str(previous["Id"]))


def make_runnable(
    client: Any, artifact: Artifact, *, store: ArtifactStore, progress: Progress | None = None
) -> bool:
    """Load the artifact into Docker as ``artifact.image_tag``; False when it already is."""
    config_digest = read_layout(artifact.layout_dir).config_digest
    present = images.inspect_image(client, artifact.image_tag)
    if present is not None and present["Id"] == config_digest:
        return False
    (progress or QuietProgress()).stage(f"load {artifact.image_tag} into Docker")
    with store.new_layout() as work:
        archive = oci.write_image_archive(
            artifact.layout_dir, work / "image.tar", "docker-save", repo_tag=artifact.image_tag
        )
        images.load_image(client, archive)
    loaded = images.inspect_image(client, artifact.image_tag)
    if loaded is None or loaded["Id"] != config_digest:
        raise BottleError(
            f"Docker loaded {artifact.image_tag} with a different image ID than its config digest",
            fix=f"drop the entry (`bottle-engine cache rm {artifact.digest}`) and build again",
        )
    return True


def write_image_archive(artifact: Artifact, dest: Path, fmt: ArchiveFormat) -> Path:
    """`oci.write_image_archive` for an `Artifact` (the smolvm direct path takes either format)."""
    if fmt not in ("oci", "docker-save"):
        raise BottleError(f"unknown image archive format {fmt!r}", fix="use 'oci' or 'docker-save'")
    return oci.write_image_archive(artifact.layout_dir, dest, fmt, repo_tag=artifact.image_tag)
