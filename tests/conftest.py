"""Shared fixtures.

* Every test gets its own state dir; the artifact cache is shared for the whole run (so images
  are built once per run) unless ``BOTTLE_TEST_CACHE_DIR`` names one to reuse across runs.
* Docker tests use the real daemon. In CI (``CI=true``) a missing daemon is a failure, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "manifests"

pytest_plugins = ["tests.fixtures_artifacts", "tests.bottle_fixtures", "tests.fakes.fixtures"]


def fixture_manifest(name: str) -> str:
    """The text of tests/fixtures/manifests/`name`.toml: a whole manifest that several tests load
    and edit, kept as a TOML file that an editor checks as one. The files it names (Dockerfile,
    prompts, secret files) are made by the fixture that writes it into a project."""
    return (MANIFEST_FIXTURES / f"{name}.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    override = os.environ.get("BOTTLE_TEST_CACHE_DIR")
    if override:
        Path(override).mkdir(parents=True, exist_ok=True)
        return Path(override)
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_dirs(
    tmp_path: Path, session_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(session_cache_dir))
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(tmp_path / "state"))
    yield


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client for the real daemon; fails in CI, skips elsewhere, when there is none."""
    from bottle_engine.dockerapi import connect
    from bottle_engine.errors import BottleError

    try:
        return connect()
    except BottleError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Docker daemon: {exc}")
        pytest.skip(f"no Docker daemon: {exc}")


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The Debian base image every test image builds on, bootstrapped once (no registry)."""
    from bottle_engine.artifacts.base import ensure_base_image

    return ensure_base_image(docker_client)
