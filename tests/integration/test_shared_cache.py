"""The shared artifact cache against a real registry (Debian's docker-registry) on 127.0.0.1:
machine A builds and pushes, machine B (empty store, image gone from Docker) pulls by input key
with no build step; tampered bytes, a registry that is down and refused credentials."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts.builder import build, layer_cache_ref, resolve_inputs, verify_artifact
from bottle_engine.artifacts.bundle_image import BUNDLE_ARTIFACT_NAME, bundle_build_spec
from bottle_engine.artifacts.oci import (
    MEDIA_CONFIG,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    canonical_json,
)
from bottle_engine.artifacts.remote import (
    MAX_DOCUMENT_BYTES,
    RemoteCache,
    RemoteCacheError,
    key_index,
    key_tag,
    parse_location,
)
from bottle_engine.artifacts.spec import Artifact, BuildSpec, image_tag_for
from bottle_engine.artifacts.store import ArtifactStore
from bottle_engine.cli import main
from bottle_engine.dockerapi.registry_container import remove_registry, start_registry
from bottle_engine.errors import BottleError
from bottle_engine.settings import EngineSettings
from tests.fakes.fixtures import REGISTRY_CONFIG
from tests.fixtures_artifacts import (
    RecordingClient,
    build_image_from_texts,
    remove_images,
    small_build_spec,
    write_small_context,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TEST_LABEL = {"bot-bottle.test": "1"}
REPOSITORY = "team/bot-bottle"
STORAGE = "/var/lib/docker-registry/docker/registry/v2"
# bcrypt of "cache-pass" (htpasswd accepts only bcrypt); the user is "builder".
HTPASSWD = "builder:$2b$04$TcO8vlU0zLnd7fkN9UywbOveJv7q7Wu0u6uwDcRYbDD0ZaZNojx.G\n"
# The test registry's own config, with htpasswd authentication added.
AUTH_CONFIG = (
    REGISTRY_CONFIG
    + """\
auth:
  htpasswd:
    realm: test
    path: /etc/docker/registry/htpasswd
"""
)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # as the `bundle_image` fixture
# Docker build steps create containers; a pull must create none.
BUILD_CALLS = {"build", "create_container", "commit"}


def _registry(docker_client: Any, image: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BOTTLE_REGISTRY_IMAGE", image)
    started = start_registry(docker_client, TEST_LABEL, image)
    try:
        yield started
    finally:
        remove_registry(docker_client, started.container_id)


@pytest.fixture
def registry(
    docker_client: Any, registry_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    yield from _registry(docker_client, registry_image, monkeypatch)


@pytest.fixture
def auth_registry(
    docker_client: Any, registry_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The same registry with htpasswd authentication (image built on top, once per test)."""
    dockerfile = (
        f"FROM {registry_image}\nCOPY config.yml /etc/docker/registry/config.yml\n"
        "COPY htpasswd /etc/docker/registry/htpasswd\n"
    )
    tag = build_image_from_texts(
        docker_client,
        "bot-bottle-test/auth-registry:local",
        {"Dockerfile": dockerfile, "config.yml": AUTH_CONFIG, "htpasswd": HTPASSWD},
    )
    try:
        yield from _registry(docker_client, tag, monkeypatch)
    finally:
        remove_images(docker_client, [tag])


def _wait_ready(cache: RemoteCache) -> None:
    import time

    for _ in range(600):  # up to a minute on a loaded machine
        try:
            cache.lookup("sha256:" + "0" * 64)
            return
        except RemoteCacheError as exc:
            if "refused access" in exc.message:
                return
            time.sleep(0.1)
    raise AssertionError("the test registry did not come up")


def _cache(registry: Any, credentials: tuple[str, str] | None = None) -> RemoteCache:
    cache = RemoteCache(parse_location(f"127.0.0.1:{registry.port}/{REPOSITORY}"), credentials)
    _wait_ready(cache)
    return cache


@pytest.fixture
def machine_a(
    docker_client: Any,
    small_spec: BuildSpec,
    registry: Any,
    tmp_path: Path,
    remove_test_images: list[str],
) -> tuple[BuildSpec, Any]:
    """The small image built on "machine A" (its own store) and pushed to the registry."""
    store = ArtifactStore(tmp_path / "machine-a")
    result = build(docker_client, small_spec, store=store, remote=_cache(registry))
    assert result.built and not result.notes
    remove_test_images.append(result.artifact.image_tag)
    # Machine B has neither the image nor any layer cache of it.
    remove_images(docker_client, [result.artifact.image_tag, layer_cache_ref(small_spec)])
    return small_spec, result


def test_machine_b_pulls_the_same_digest_and_builds_nothing(
    docker_client: Any, machine_a: tuple[BuildSpec, Any], registry: Any, tmp_path: Path
) -> None:
    spec, built_on_a = machine_a
    recording = RecordingClient(docker_client)
    store_b = ArtifactStore(tmp_path / "machine-b")
    result = build(recording, spec, store=store_b, remote=_cache(registry))
    assert result.pulled and not result.built and result.loaded
    assert result.artifact.digest == built_on_a.artifact.digest
    assert result.artifact.input_key == built_on_a.artifact.input_key
    assert not BUILD_CALLS & set(recording.calls), recording.calls
    loaded = docker_client.images.get(result.artifact.image_tag)
    config_digest = json.loads(
        (store_b.layout_dir(result.artifact.digest) / "index.json").read_text()
    )
    assert config_digest["manifests"][0]["digest"] == result.artifact.digest
    assert loaded.id.startswith("sha256:")
    assert store_b.lookup(result.artifact.input_key) is not None


def test_pushing_the_same_key_again_is_harmless(
    machine_a: tuple[BuildSpec, Any], registry: Any, tmp_path: Path
) -> None:
    _, built_on_a = machine_a
    cache = _cache(registry)
    assert cache.push(built_on_a.artifact, "test-small") == "present"
    assert [entry.digest for entry in cache.entries()] == [built_on_a.artifact.digest]


def test_a_tampered_layer_is_refused_and_nothing_is_stored(
    docker_client: Any, machine_a: tuple[BuildSpec, Any], registry: Any, tmp_path: Path
) -> None:
    _, built_on_a = machine_a
    layer = built_on_a.artifact.layout_dir
    manifest = json.loads(
        (
            layer / "blobs" / "sha256" / built_on_a.artifact.digest.removeprefix("sha256:")
        ).read_text()
    )
    layer_hex = manifest["layers"][-1]["digest"].removeprefix("sha256:")
    blob_data = f"{STORAGE}/blobs/sha256/{layer_hex[:2]}/{layer_hex}/data"
    # Same size, one byte flipped: only the digest check can notice.
    exit_code, output = docker_client.containers.get(registry.container_id).exec_run(
        ["sh", "-c", f"printf 'X' | dd of={blob_data} bs=1 seek=100 conv=notrunc"]
    )
    assert exit_code == 0, output
    store_b = ArtifactStore(tmp_path / "machine-b")
    with pytest.raises(RemoteCacheError) as refused:
        _cache(registry).pull(built_on_a.artifact.input_key, store_b)
    assert layer_hex in refused.value.message and "nothing was stored" in refused.value.message
    assert store_b.entries() == []
    assert not any(store_b.layouts.glob("*")) if store_b.layouts.exists() else True
    assert not any(store_b.tmp.iterdir())


def test_a_registry_that_is_down_costs_a_note_and_the_build_goes_on(
    docker_client: Any, small_spec: BuildSpec, tmp_path: Path, remove_test_images: list[str]
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = RemoteCache(parse_location(f"127.0.0.1:{port}/{REPOSITORY}"))
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(RemoteCacheError, match="cannot reach the shared cache"):
        build(docker_client, small_spec, store=store, remote=down, require_cache=True)
    assert store.entries() == []
    result = build(docker_client, small_spec, store=store, remote=down)
    remove_test_images.append(result.artifact.image_tag)
    assert result.built and not result.pulled
    assert any(f"127.0.0.1:{port}" in note and "building locally" in note for note in result.notes)


def test_refused_credentials_name_the_registry_and_never_print_the_password(
    auth_registry: Any, tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path / "store")
    wrong = _cache(auth_registry, ("builder", "wrong-secret-value"))
    with pytest.raises(RemoteCacheError) as refused:
        wrong.pull("sha256:" + "1" * 64, store)
    text = str(refused.value)
    assert "refused access (401)" in text and f"127.0.0.1:{auth_registry.port}" in text
    assert "docker login" in text
    assert "wrong-secret-value" not in text
    assert base64.b64encode(b"builder:wrong-secret-value").decode() not in text
    with pytest.raises(RemoteCacheError, match="with no credentials"):
        _cache(auth_registry).lookup("sha256:" + "1" * 64)
    right = _cache(auth_registry, ("builder", "cache-pass"))
    assert right.lookup("sha256:" + "1" * 64) is None
    assert store.entries() == []


def test_docker_config_credentials_reach_the_registry(
    auth_registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    auth = base64.b64encode(b"builder:cache-pass").decode()
    host = f"127.0.0.1:{auth_registry.port}"
    (config_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    monkeypatch.setenv("BOTTLE_ARTIFACT_REGISTRY", f"{host}/{REPOSITORY}")
    _cache(auth_registry, ("builder", "cache-pass"))  # wait until it listens
    cache = RemoteCache.from_settings(EngineSettings.from_env())
    assert cache is not None
    assert cache.lookup("sha256:" + "2" * 64) is None
    assert key_tag("sha256:" + "2" * 64) == "2" * 64


def test_require_cache_without_a_hit_fails_before_building(
    docker_client: Any, small_spec: BuildSpec, registry: Any, tmp_path: Path
) -> None:
    recording = RecordingClient(docker_client)
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(BottleError, match="--require-cache: no artifact for test-small"):
        build(recording, small_spec, store=store, remote=_cache(registry), require_cache=True)
    assert not BUILD_CALLS & set(recording.calls)
    assert store.entries() == []


def test_cli_lists_pulls_and_pushes_the_shared_cache(
    machine_a: tuple[BuildSpec, Any],
    registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, built_on_a = machine_a
    _cache(registry)  # listening
    monkeypatch.setenv("BOTTLE_ARTIFACT_REGISTRY", f"127.0.0.1:{registry.port}/{REPOSITORY}")
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "machine-c"))
    capsys.readouterr()
    assert main(["cache", "ls", "--remote", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {
            "input_key": built_on_a.artifact.input_key,
            "digest": built_on_a.artifact.digest,
            "name": "test-small",
        }
    ]
    assert main(["cache", "pull", built_on_a.artifact.input_key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["digest"] == built_on_a.artifact.digest
    assert main(["cache", "push", built_on_a.artifact.digest, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["outcome"] == "present"


def test_verify_compares_with_the_shared_cache_and_lists_what_differs(
    docker_client: Any,
    small_spec: BuildSpec,
    small_context: Path,
    base_image: str,
    registry: Any,
    tmp_path: Path,
    remove_test_images: list[str],
) -> None:
    """The registry maps the key to another image (a build elsewhere that differs, or a
    poisoned entry): --verify says so and names the path, and stores nothing."""
    other_context = write_small_context(tmp_path / "other", greeting_file="tampered\n")
    other_spec = small_build_spec(other_context, base_image)
    remove_test_images.append(layer_cache_ref(other_spec))
    scratch = ArtifactStore(tmp_path / "elsewhere")
    other = build(docker_client, other_spec, store=scratch, remote=None).artifact
    remove_test_images.append(other.image_tag)
    key = resolve_inputs(docker_client, small_spec).input_key
    cache = _cache(registry)
    assert cache.push(Artifact(key, other.digest, other.layout_dir, other.image_tag), "test-small")
    store = ArtifactStore(tmp_path / "store")
    verified = verify_artifact(docker_client, small_spec, store=store, remote=cache)
    assert verified.first_digest == verified.second_digest != other.digest
    assert verified.shared_digest == other.digest and not verified.reproducible
    assert any("greeting.txt" in difference.path for difference in verified.differences)
    assert verified.artifact is None and store.entries() == []


def test_the_bundle_image_is_never_taken_from_the_shared_cache(
    docker_client: Any,
    machine_a: tuple[BuildSpec, Any],
    base_image: str,
    bundle_image: str,
    registry: Any,
    tmp_path: Path,
    remove_test_images: list[str],
) -> None:
    """Whoever may push to the repository (an agent whose bottle allows the registry and binds
    a credential for it) tags the bundle's input key with an image of its own: the gateway
    that holds every secret value would run it. A launch builds the bundle itself."""
    _, built_on_a = machine_a
    poison = built_on_a.artifact
    spec = bundle_build_spec(base_image, HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None)
    key = resolve_inputs(docker_client, spec).input_key
    cache = _cache(registry)
    hostile = Artifact(key, poison.digest, poison.layout_dir, poison.image_tag)
    assert cache.push(hostile, BUNDLE_ARTIFACT_NAME) == "pushed"
    remove_test_images.append(image_tag_for(BUNDLE_ARTIFACT_NAME, poison.digest))
    store = ArtifactStore(tmp_path / "fresh")
    result = build(docker_client, spec, store=store, remote=cache)
    assert result.pulled is False and result.built
    assert result.artifact.digest != poison.digest
    assert result.artifact.image_tag == bundle_image
    # Nothing pulls a bundle from the cache, so nothing is pushed there either.
    found = cache.lookup(key)
    assert found is not None and found[0].digest == poison.digest

    # Pulled by hand (`cache pull KEY`, or by an engine before this rule), it is in the store,
    # recorded as pulled: the bundle is still built here, and its record says so afterwards.
    by_hand = ArtifactStore(tmp_path / "by-hand")
    pulled = cache.pull(key, by_hand)
    assert pulled is not None and pulled.digest == poison.digest
    assert [entry.origin for entry in by_hand.entries()] == ["pulled"]
    again = build(docker_client, spec, store=by_hand, remote=None)
    assert again.built and again.artifact.digest == result.artifact.digest
    assert [entry.origin for entry in by_hand.entries()] == ["built"]


def _nested(depth: int = 5000) -> bytes:
    """JSON that Go's parser reads (10000 brackets deep at most) and Python's recursed through."""
    return b"[" * depth + b"]" * depth


def _plant_config(cache: RemoteCache, key: str, config: bytes, tmp_path: Path) -> None:
    """Tag `key` with an artifact of no layers whose config blob is `config`, as a pusher can."""
    path = tmp_path / "config"
    path.write_bytes(config)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    cache.push_blob(path, config_digest)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [],
        }
    )
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    cache.put_manifest(manifest_digest, manifest, MEDIA_MANIFEST, doing="plant a manifest")
    index = key_index(key, "test-small", manifest_digest, len(manifest))
    cache.put_manifest(key_tag(key), index, MEDIA_INDEX, doing="tag it")


def test_documents_nested_past_the_parsers_depth_are_bad_entries_not_a_crash(
    registry: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whoever may push can tag a key with any index, and point it at any manifest and config,
    that the registry takes. Python's JSON parser recursed once per bracket and raised
    RecursionError, which no handler took: every build of such a key, and `cache ls --remote`,
    crashed instead of going on without the shared cache."""
    cache = _cache(registry)
    index_key, config_key = "sha256:" + "c" * 64, "sha256:" + "d" * 64
    planted_index = b'{"schemaVersion":2,"mediaType":"%s","manifests":[],"x":%s}' % (
        MEDIA_INDEX.encode(),
        _nested(),
    )
    cache.put_manifest(key_tag(index_key), planted_index, MEDIA_INDEX, doing="plant an index")
    _plant_config(cache, config_key, _nested(), tmp_path)

    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(RemoteCacheError, match="bad entry"):
        cache.pull(index_key, store)
    with pytest.raises(RemoteCacheError, match="incomplete"):
        cache.pull(config_key, store)
    assert store.entries() == []
    monkeypatch.setenv("BOTTLE_ARTIFACT_REGISTRY", f"127.0.0.1:{registry.port}/{REPOSITORY}")
    capsys.readouterr()
    assert main(["cache", "ls", "--remote", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["input_key"] for entry in listed] == [config_key]


def test_a_config_bigger_than_a_document_is_refused_before_it_is_fetched(
    registry: Any, tmp_path: Path
) -> None:
    """Whoever may push chooses the config blob a key's manifest names, and its size. The pull
    fetched it up to the free disk space, and then read and parsed it whole: JSON of empty
    objects takes about 23 times its size in memory (50 MB gave 1.2 GB), so a config of a
    gigabyte or so put every machine that pulled the key out of memory."""
    cache = _cache(registry)
    key = "sha256:" + "e" * 64
    config = b"[" + b"{}," * (MAX_DOCUMENT_BYTES // 3) + b"{}]"
    size = len(config)
    _plant_config(cache, key, config, tmp_path)

    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(RemoteCacheError, match=f"config of {size} bytes"):
        cache.pull(key, store)
    assert store.entries() == []
    assert not any(store.tmp.iterdir())
