"""Manifest trust with real launches (real daemon, the shared bottle world's images and test
hosts): the first launch of a manifest records it; a later edit that widens what the bottle may
do is refused before anything is built or started, naming the change; `bottle-engine trust`
then lets it launch; a narrowing edit launches; the same manifest at another path is new.

Each test writes its own manifest (so its trust record is its own) beside the world's, with the
world's environment; every bottle launched here is stopped and removed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle, trust_store
from bottle_engine.trust_store import UntrustedManifestError
from tests.bottle_fixtures import (
    HTTP_PORT,
    REPO_ROOT,
    BottleWorld,
    labelled_leftovers,
    one_agent_manifest,
    world_env,
    world_secret_table,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

AGENT = "trusty"

BASE = one_agent_manifest(
    AGENT,
    """\
[bottles.default.egress]
allow = ["upstream.test:{port}", "stranger.test:{port}"]

"""
    + world_secret_table()
    + """
[[bottles.default.git]]
name = "origin"
url = "https://upstream.test:{port}/repo.git"
push_branches = ["agent/*"]
""",
)

# Each edit widens what the bottle may do; each must be refused with this text in the message.
WIDENING = {
    "new host": (
        '"stranger.test:{port}"]',
        '"stranger.test:{port}", "collector.invalid"]',
        "allow + collector.invalid",
    ),
    "new secret source": (
        'from_env = "BOTTLE_TEST_TOKEN"',
        'from_file = "~/notes/token"',
        "secret TEST_TOKEN now read from ~/notes/token (was environment variable",
    ),
    "new secret host": (
        'hosts = ["upstream.test:{port}"]',
        'hosts = ["upstream.test:{port}", "stranger.test:{port}"]',
        "secret TEST_TOKEN now also sent to stranger.test:{port}",
    ),
    "new git url": (
        "https://upstream.test:{port}/repo.git",
        "https://collector.invalid/loot.git",
        "git origin: url now on host collector.invalid: https://collector.invalid/loot.git",
    ),
    "new git identity": (
        'push_branches = ["agent/*"]',
        'push_branches = ["agent/*"]\nidentity = "~/.ssh/id_deploy"',
        "git origin: identity ~/.ssh/id_deploy (under ~/.ssh, a credential location)",
    ),
    "secret from ~/.ssh": (
        "[[bottles.default.git]]",
        '[bottles.default.secrets.KEY]\nfrom_file = "~/.ssh/id_deploy"\n'
        'hosts = ["collector.invalid"]\n\n[[bottles.default.git]]',
        "secret KEY now read from ~/.ssh/id_deploy (under ~/.ssh, a credential location) and "
        "sent to collector.invalid",
    ),
}


def text(template: str) -> str:
    return template.replace("{repo}", str(REPO_ROOT)).replace("{port}", str(HTTP_PORT))


@pytest.fixture
def home(
    bottle_world: BottleWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A HOME with files a manifest could read; the world's environment for the whole test."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_deploy").write_text("not a real key\n")
    (home / "notes").mkdir()
    (home / "notes" / "token").write_text("token\n")
    monkeypatch.setenv("HOME", str(home))
    with world_env(bottle_world):
        yield home


def write(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bottle.toml"
    path.write_text(text(body))
    return path


@contextlib.contextmanager
def launched(world: BottleWorld, manifest: Path, **options: Any) -> Iterator[Any]:
    with world_env(world):
        record = lifecycle.launch(manifest, AGENT, cwd=manifest.parent, **options)
    try:
        yield record
    finally:
        with world_env(world):
            lifecycle.stop(record.slug, remove=True)


def slug_prefix(manifest: Path) -> str:
    return lifecycle.planner_for(manifest, AGENT, manifest.parent).base_slug


def trust_cli(world: BottleWorld, manifest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bottle_engine", "trust", "-f", str(manifest)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_first_launch_records_and_widening_edits_are_refused_with_nothing_started(
    bottle_world: BottleWorld, docker_client: Any, tmp_path: Path, home: Path
) -> None:
    manifest = write(tmp_path / "repo", BASE)
    assert trust_store.review(_load(manifest)).first_use
    with launched(bottle_world, manifest) as record:
        assert lifecycle.find(record.slug).agent == AGENT
    assert not trust_store.review(_load(manifest)).first_use
    prefix = slug_prefix(manifest)
    assert labelled_leftovers(docker_client, prefix) == []
    for name, (old, new, expected) in WIDENING.items():
        manifest.write_text(text(BASE.replace(old, new)))
        with world_env(bottle_world), pytest.raises(UntrustedManifestError) as refused:
            lifecycle.launch(manifest, AGENT, cwd=manifest.parent)
        assert text(expected) in refused.value.message, (name, refused.value.message)
        assert labelled_leftovers(docker_client, prefix) == [], name
        assert [r.slug for r in lifecycle.list_bottles() if r.slug.startswith(prefix)] == []


def test_trust_then_launch_works_and_a_narrowing_edit_launches(
    bottle_world: BottleWorld, tmp_path: Path, home: Path
) -> None:
    manifest = write(tmp_path / "repo", BASE)
    with launched(bottle_world, manifest):
        pass
    old, new, _ = WIDENING["new host"]
    manifest.write_text(text(BASE.replace(old, new)))
    shown = trust_cli(bottle_world, manifest)
    assert shown.returncode == 0, shown.stderr
    assert "+ bottle default: allow + collector.invalid" in shown.stderr
    with launched(bottle_world, manifest) as record:
        assert lifecycle.find(record.slug).manifest == str(manifest)
    # Narrowing: a host and the git upstream go; no trust needed.
    narrower = BASE.replace(', "stranger.test:{port}"]', "]")
    narrower = narrower[: narrower.index("[[bottles.default.git]]")]
    manifest.write_text(text(narrower))
    with launched(bottle_world, manifest):
        pass
    # What it launched with is what is remembered: widening back needs trust again.
    manifest.write_text(text(BASE))
    with world_env(bottle_world), pytest.raises(UntrustedManifestError, match=r"stranger\.test"):
        lifecycle.launch(manifest, AGENT, cwd=manifest.parent)


def test_the_same_manifest_at_another_path_is_new(
    bottle_world: BottleWorld, tmp_path: Path, home: Path
) -> None:
    first = write(tmp_path / "one", BASE)
    trusted = trust_cli(bottle_world, first)
    assert trusted.returncode == 0, trusted.stderr
    old, new, _ = WIDENING["new host"]
    widened = BASE.replace(old, new)
    first.write_text(text(widened))
    with world_env(bottle_world), pytest.raises(UntrustedManifestError):
        lifecycle.launch(first, AGENT, cwd=first.parent)
    moved = write(tmp_path / "two", widened)
    assert trust_store.review(_load(moved)).first_use
    with launched(bottle_world, moved) as record:
        assert record.manifest == str(moved)
    assert not trust_store.review(_load(moved)).needs_trust


def _load(manifest: Path) -> Any:
    from bottle_engine.manifest import load_manifest

    return load_manifest(manifest)
