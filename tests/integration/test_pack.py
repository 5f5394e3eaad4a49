"""Packing against the smolvm contract fake and the real daemon: the path follows smolvm's
capability, the pushed image keeps the artifact digest, the registry never outlives the pack
(success, failure, Ctrl-C), and a cache hit runs nothing at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts.pack import cached_pack, pack_artifact, packs_dir
from bottle_engine.dockerapi.client import LABEL_PACK
from bottle_engine.dockerapi.registry_container import list_registries
from bottle_engine.progress import RecordingProgress
from tests.conftest import REPO_ROOT
from tests.fakes.fixtures import (
    FakeSmolvm,
    failing_without_kvm,
    install_fake_smolvm,
    no_docker_env,
)
from tests.fakes.oci_layout import LayoutArtifact, make_layout
from tests.polling import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pack cache of this test's own (the session cache is shared between tests)."""
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def artifact(tmp_path: Path) -> LayoutArtifact:
    return make_layout(tmp_path, f"pack-{tmp_path.name}")


def pack_creates(fake: FakeSmolvm) -> list[list[str]]:
    return [a for a in fake.commands() if a[:2] == ["pack", "create"] and "--help" not in a]


def image_of(argv: list[str]) -> str:
    return argv[argv.index("--image") + 1]


def registries_for(docker_client: Any, artifact: LayoutArtifact) -> list[Any]:
    return list_registries(docker_client, {LABEL_PACK: artifact.digest[7:19]})


def sidecar_source_digest(sidecar: Path) -> str:
    return str(json.loads(sidecar.read_text())["manifest_digest"])


@pytest.mark.usefixtures("cache")
def test_recent_smolvm_packs_from_a_local_archive_without_a_registry(
    fake_smolvm: FakeSmolvm, artifact: LayoutArtifact, docker_client: Any
) -> None:
    pack = pack_artifact(artifact, docker_client=docker_client)
    assert pack.method == "direct"
    [argv] = pack_creates(fake_smolvm)
    assert image_of(argv).endswith("image.tar")
    assert sidecar_source_digest(pack.sidecar) == artifact.digest
    assert pack.launcher.is_file()
    assert not (pack.directory / "image.tar").exists()


@pytest.mark.usefixtures("cache", "use_test_registry")
def test_registry_only_smolvm_pulls_the_artifact_from_a_loopback_registry(
    legacy_smolvm: FakeSmolvm, artifact: LayoutArtifact, docker_client: Any
) -> None:
    progress = RecordingProgress()
    pack = pack_artifact(artifact, docker_client=docker_client, progress=progress)
    assert pack.method == "registry"
    [argv] = pack_creates(legacy_smolvm)
    assert image_of(argv).startswith("localhost:")
    assert image_of(argv).endswith(f"/bot-bottle@{artifact.digest}")
    # The fake fetched manifest and blobs over HTTP and checked every digest.
    assert sidecar_source_digest(pack.sidecar) == artifact.digest
    assert "pack: push image" in progress.stages
    assert not registries_for(docker_client, artifact)


@pytest.mark.usefixtures("cache", "use_test_registry")
def test_via_registry_forces_the_hop_even_when_archives_work(
    fake_smolvm: FakeSmolvm, artifact: LayoutArtifact, docker_client: Any
) -> None:
    pack = pack_artifact(artifact, via_registry=True, docker_client=docker_client)
    assert pack.method == "registry"
    assert image_of(pack_creates(fake_smolvm)[0]).startswith("localhost:")


@pytest.mark.usefixtures("cache")
def test_cache_hit_runs_no_docker_and_no_smolvm(
    fake_smolvm: FakeSmolvm,
    artifact: LayoutArtifact,
    docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = pack_artifact(artifact, docker_client=docker_client)
    fake_smolvm.forget_calls()
    monkeypatch.setenv("DOCKER_HOST", no_docker_env()["DOCKER_HOST"])
    again = pack_artifact(artifact)
    assert again.cache_hit
    assert again.sidecar == first.sidecar
    assert fake_smolvm.calls() == []


@pytest.mark.usefixtures("use_test_registry")
def test_failed_pack_leaves_no_registry_and_no_cache_entry(
    legacy_smolvm: FakeSmolvm,
    artifact: LayoutArtifact,
    docker_client: Any,
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with failing_without_kvm(monkeypatch, "pack"):
        pack_artifact(artifact, docker_client=docker_client)
    assert not registries_for(docker_client, artifact)
    assert cached_pack(artifact.digest) is None
    assert list(packs_dir().iterdir()) == []


PACK_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bottle_engine.artifacts.pack import pack_artifact
    from tests.fakes.oci_layout import make_layout
    artifact = make_layout(Path(sys.argv[1]), sys.argv[2])
    print(pack_artifact(artifact).method, flush=True)
    """
)


def start_pack_process(
    tmp_path: Path, marker: str, fake: FakeSmolvm, cache: Path, delay: float
) -> tuple[subprocess.Popen[str], LayoutArtifact]:
    env = {
        **os.environ,
        "BOTTLE_SMOLVM": str(fake.binary),
        "BOTTLE_CACHE_DIR": str(cache),
        "SMOLVM_FAKE_PACK_DELAY": str(delay),
        "PYTHONPATH": str(REPO_ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", PACK_SCRIPT, str(tmp_path), marker],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The child makes the same layout from the same marker, so the digest is known here.
    return process, make_layout(tmp_path / "mirror", marker)


@pytest.mark.usefixtures("use_test_registry")
def test_ctrl_c_mid_pack_removes_the_registry(
    tmp_path: Path, legacy_smolvm: FakeSmolvm, docker_client: Any, cache: Path
) -> None:
    process, artifact = start_pack_process(tmp_path, "interrupt", legacy_smolvm, cache, 60)
    try:
        wait_for(lambda: pack_creates(legacy_smolvm), "smolvm pack create to start")
        assert registries_for(docker_client, artifact)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert "KeyboardInterrupt" in stderr
    assert not registries_for(docker_client, artifact)
    assert cached_pack(artifact.digest) is None
    assert list(packs_dir().iterdir()) == []


@pytest.mark.usefixtures("use_test_registry")
def test_two_concurrent_packs_use_two_registries(
    tmp_path: Path, docker_client: Any, cache: Path
) -> None:
    fake = install_fake_smolvm(tmp_path / "smolvm", "0.8.0")
    started = [
        start_pack_process(tmp_path / marker, marker, fake, cache, 3)
        for marker in ("left", "right")
    ]
    try:
        refs = wait_for(
            lambda: (
                [image_of(a) for a in pack_creates(fake)][:2]
                if len(pack_creates(fake)) >= 2
                else None
            ),
            "both packs to reach smolvm",
        )
        for process, _ in started:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            assert out.strip() == "registry"
    finally:
        for process, _ in started:
            process.kill()
            process.wait()
    ports = {ref.split("/")[0] for ref in refs}
    assert len(ports) == 2
    for _, artifact in started:
        assert cached_pack(artifact.digest, fake.binary.resolve()) is not None
        assert not registries_for(docker_client, artifact)
