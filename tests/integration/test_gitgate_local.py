"""The git gate end to end on loopback: real git clients push through ``git daemon`` and the
gate's hooks to a real upstream repository (a bare repo on this machine, reached over file://;
the ssh variant with pinned host keys is in test_gitgate_ssh.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bottle_engine.bundle.config import (
    GIT_GATE_LOG_NAME,
    GitUpstreamConfig,
)
from tests.bundle_helpers import secret_in_file
from tests.integration.test_gitgate_support import gate_on_loopback, loopback_gate_config

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PLACEHOLDER = "BOTTLE_SECRET_PLACEHOLDER_0d1f"


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["git", "-c", "user.name=Agent", "-c", "user.email=agent@bottle.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stderr}")
    return result


def commit_file(repo: Path, path: str, text: str, message: str = "change") -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


@dataclass
class Gate:
    url: str  # what the agent uses: GIT_GATE_URL + "/origin"
    upstream: Path  # the real upstream (bare)
    agent: Path  # the agent's clone
    audit_log: Path

    def upstream_ref(self, ref: str) -> str | None:
        result = git(self.upstream, "rev-parse", "--verify", "--quiet", ref, check=False)
        return result.stdout.strip() or None

    def push(self, *args: str) -> subprocess.CompletedProcess[str]:
        return git(self.agent, "push", "origin", *args, check=False)


def seed_upstream(tmp_path: Path) -> Path:
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(upstream))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(upstream), str(seed))
    commit_file(seed, "README.md", "hello\n", "initial")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return upstream


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    upstream = seed_upstream(tmp_path)
    config = loopback_gate_config(
        tmp_path,
        "gated",
        GitUpstreamConfig(
            name="origin", url=f"file://{upstream}", push_branches=("agent/*", "main")
        ),
        secrets=(
            secret_in_file(
                tmp_path / "secret-value",
                "api",
                PLACEHOLDER,
                ("api.example.invalid",),
                "s3cr3t-value-of-the-bottle",
            ),
        ),
    )
    with gate_on_loopback(tmp_path, config) as (port, agent):
        url = f"git://127.0.0.1:{port}/origin"
        yield Gate(url, upstream, agent, Path(config.state_dir) / GIT_GATE_LOG_NAME)


def test_clone_gets_the_upstream_history(gate: Gate) -> None:
    assert (gate.agent / "README.md").read_text() == "hello\n"
    assert git(gate.agent, "rev-parse", "HEAD").stdout.strip() == gate.upstream_ref("main")


def test_push_to_an_allowed_branch_arrives_upstream(gate: Gate) -> None:
    head = commit_file(gate.agent, "src/app.py", "print('hi')\n")

    result = gate.push("HEAD:main")

    assert result.returncode == 0, result.stderr
    assert gate.upstream_ref("main") == head


def test_new_branch_matching_a_glob_arrives_upstream(gate: Gate) -> None:
    head = commit_file(gate.agent, "fix.txt", "fixed\n")

    assert gate.push("HEAD:refs/heads/agent/fix-1").returncode == 0
    assert gate.upstream_ref("agent/fix-1") == head


def test_push_to_a_branch_outside_push_branches_is_refused_and_nothing_arrives(
    gate: Gate,
) -> None:
    commit_file(gate.agent, "x.txt", "x\n")

    result = gate.push("HEAD:refs/heads/release")

    assert result.returncode != 0
    assert "branch 'release' is not in push_branches" in result.stderr
    assert gate.upstream_ref("release") is None


def test_tags_are_refused(gate: Gate) -> None:
    git(gate.agent, "tag", "v1")

    result = gate.push("refs/tags/v1")

    assert "only branches" in result.stderr
    assert gate.upstream_ref("refs/tags/v1") is None


def test_a_commit_adding_an_aws_key_is_refused_naming_file_and_line(gate: Gate) -> None:
    before = gate.upstream_ref("main")
    commit_file(gate.agent, "config/settings.py", f"REGION = 'eu'\nKEY_ID = '{AWS_KEY}'\n")

    result = gate.push("HEAD:main")

    assert result.returncode != 0
    assert "config/settings.py:2: AWS Access Key" in result.stderr
    assert gate.upstream_ref("main") == before
    [entry] = [json.loads(line) for line in gate.audit_log.read_text().splitlines()]
    assert entry["accepted"] is False
    assert any("config/settings.py:2" in line for line in entry["detail"])


def test_a_private_key_buried_under_a_later_clean_commit_is_still_refused(gate: Gate) -> None:
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn\n"
        "-----END RSA PRIVATE KEY-----\n"
    )
    commit_file(gate.agent, "deploy/id_rsa", key, "add key")
    git(gate.agent, "rm", "-q", "deploy/id_rsa")
    git(gate.agent, "commit", "-q", "-m", "remove key again")

    result = gate.push("HEAD:refs/heads/agent/keys")

    assert "deploy/id_rsa:1: Private Key" in result.stderr
    assert gate.upstream_ref("agent/keys") is None


def test_the_bottles_own_placeholder_is_refused(gate: Gate) -> None:
    commit_file(gate.agent, ".env", f"API_TOKEN={PLACEHOLDER}\n")

    result = gate.push("HEAD:main")

    assert ".env:1: placeholder of the bottle's secret 'api'" in result.stderr
    assert gate.upstream_ref("main") == git(gate.agent, "rev-parse", "HEAD~1").stdout.strip()


def test_force_push_is_refused_and_upstream_keeps_its_commit(gate: Gate) -> None:
    commit_file(gate.agent, "a.txt", "a\n")
    assert gate.push("HEAD:main").returncode == 0
    published = gate.upstream_ref("main")
    git(gate.agent, "commit", "-q", "--amend", "-m", "rewritten")

    result = gate.push("--force", "HEAD:main")

    assert result.returncode != 0
    assert "allow_force_push" in result.stderr
    assert gate.upstream_ref("main") == published


def test_deleting_a_branch_is_refused(gate: Gate) -> None:
    result = gate.push(":main")

    assert "allow_delete" in result.stderr
    assert gate.upstream_ref("main") is not None


def test_fetch_mirrors_commits_made_upstream_meanwhile(gate: Gate, tmp_path: Path) -> None:
    elsewhere = tmp_path / "colleague"
    git(tmp_path, "clone", "-q", str(gate.upstream), str(elsewhere))
    theirs = commit_file(elsewhere, "theirs.txt", "from a colleague\n")
    git(elsewhere, "push", "-q", "origin", "HEAD:main")

    git(gate.agent, "pull", "-q", "--ff-only", "origin", "main")

    assert git(gate.agent, "rev-parse", "HEAD").stdout.strip() == theirs


def test_push_that_would_overwrite_newer_upstream_commits_is_refused(
    gate: Gate, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "colleague"
    git(tmp_path, "clone", "-q", str(gate.upstream), str(elsewhere))
    theirs = commit_file(elsewhere, "theirs.txt", "first\n")
    git(elsewhere, "push", "-q", "origin", "HEAD:main")
    commit_file(gate.agent, "mine.txt", "second\n")

    result = gate.push("HEAD:main")

    # The gate advertised the upstream's newer commit, so git itself asks to fetch first.
    assert "fetch first" in result.stderr
    assert gate.upstream_ref("main") == theirs
