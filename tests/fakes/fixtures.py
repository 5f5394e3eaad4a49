"""Fixtures for smolmachines tests: the smolvm contract fake and a locally built registry image.

Registered as a pytest plugin in tests/conftest.py (``pytest_plugins``): a test names them
as parameters; the helpers (`FakeSmolvm`, `install_fake_smolvm`, ...) are imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from bottle_engine.errors import BottleError
from tests.fixtures_artifacts import build_image_from_texts

FAKE_SMOLVM = Path(__file__).resolve().parent / "smolvm"
TEST_REGISTRY_TAG = "bot-bottle/test-registry:local"

_REGISTRY_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends docker-registry \\
 && rm -rf /var/lib/apt/lists/*
COPY config.yml /etc/docker/registry/config.yml
EXPOSE 5000
CMD ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]
"""
# Debian's packaged config asks for htpasswd auth; the ephemeral registry has none.
REGISTRY_CONFIG = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
"""


@dataclass(frozen=True)
class FakeSmolvm:
    """One installed fake: its binary (a wrapper naming the emulated version), state and log."""

    binary: Path
    state: Path
    log: Path

    def calls(self) -> list[list[str]]:
        """Every argv the fake was run with, in order."""
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        """Like `calls`, without the global options (``--error-format``, ``--state-dir``)."""
        stripped = []
        for argv in self.calls():
            while argv[:1] in (["--error-format"], ["--state-dir"]):
                argv = argv[2:]
            stripped.append(argv)
        return stripped

    def machine(self, name: str) -> dict[str, Any] | None:
        path = self.state / "machines" / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def forget_calls(self) -> None:
        self.log.unlink(missing_ok=True)

    def remove_standins(self) -> None:
        """Force-remove the stand-in containers this fake started (they are labelled with its
        state dir), if Docker answers at all."""
        try:
            import docker

            client = docker.from_env()
            label = f"fake-smolvm.state={self.state.resolve()}"
            for container in client.containers.list(all=True, filters={"label": label}):
                container.remove(force=True)
        except Exception:  # no daemon answers: nothing was started
            pass


@contextlib.contextmanager
def failing_without_kvm(
    monkeypatch: pytest.MonkeyPatch, step: Literal["pack", "start"]
) -> Iterator[None]:
    """The fake fails `step` as smolvm does on a host without KVM; the block must raise the
    engine's error saying so, whose fix names the docker backend as the way out."""
    monkeypatch.setenv("SMOLVM_FAKE_FAIL", step)
    with pytest.raises(BottleError, match="KvmOpen") as caught:
        yield
    assert "docker" in str(caught.value.fix)


def install_fake_smolvm(directory: Path, version: str) -> FakeSmolvm:
    """A wrapper script that runs the fake as smolvm `version` with its own state and log."""
    directory.mkdir(parents=True, exist_ok=True)
    fake = FakeSmolvm(directory / "smolvm", directory / "state", directory / "argv.jsonl")
    fake.binary.write_text(
        "#!/bin/sh\n"
        f"export SMOLVM_FAKE_VERSION='{version}'\n"
        f"export SMOLVM_FAKE_STATE='{fake.state}'\n"
        f"export SMOLVM_FAKE_LOG='{fake.log}'\n"
        f"exec '{sys.executable}' '{FAKE_SMOLVM}' \"$@\"\n"
    )
    fake.binary.chmod(0o755)
    return fake


@pytest.fixture
def fake_smolvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmolvm]:
    """The fake as smolvm 1.32.2 (its command lines checked by the real one), on BOTTLE_SMOLVM."""
    fake = install_fake_smolvm(tmp_path / "smolvm-1.32", "1.32.2")
    monkeypatch.setenv("BOTTLE_SMOLVM", str(fake.binary))
    try:
        yield fake
    finally:
        fake.remove_standins()


@pytest.fixture
def legacy_smolvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSmolvm:
    """The fake as smolvm 0.8 (registry references only), on BOTTLE_SMOLVM."""
    fake = install_fake_smolvm(tmp_path / "smolvm-0.8", "0.8.0")
    monkeypatch.setenv("BOTTLE_SMOLVM", str(fake.binary))
    return fake


@pytest.fixture(scope="session")
def registry_image(docker_client: Any, base_image: str) -> str:
    """A registry:2 image built from Debian's docker-registry package (none can be pulled)."""
    return build_registry_image(docker_client, base_image)


def build_registry_image(docker_client: Any, base_image: str) -> str:
    """Build (once; cached by tag) the registry image FROM `base_image`; return its tag."""
    import docker.errors

    try:
        docker_client.images.get(TEST_REGISTRY_TAG)
        return TEST_REGISTRY_TAG
    except docker.errors.ImageNotFound:
        pass
    return build_image_from_texts(
        docker_client,
        TEST_REGISTRY_TAG,
        {"Dockerfile": _REGISTRY_DOCKERFILE, "config.yml": REGISTRY_CONFIG},
        {"BASE": base_image},
    )


@pytest.fixture
def use_test_registry(registry_image: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the engine's ephemeral registry at the locally built image."""
    monkeypatch.setenv("BOTTLE_REGISTRY_IMAGE", registry_image)
    yield registry_image


def no_docker_env() -> dict[str, str]:
    """An environment in which any Docker call fails at once (to prove none is made)."""
    return {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
