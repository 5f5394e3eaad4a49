"""A bundle the agent's traffic took over leaves the git gate's repositories prepared for the
next start: the gate on loopback, a real upstream over file://.

The gate's repositories live in the bottle's state dir, which the bundle can write and which
outlives it. What a taken-over bundle writes there (a repository's config naming a hooks
dir of its own, `core.alternateRefsCommand`, replace refs, alternates) must not survive into
the gate that `resume` starts: that gate would run the bundle's code on the next push, or
scan other bytes than it forwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate.gate import repo_path
from tests.integration.test_gitgate_local import AWS_KEY, commit_file, git, seed_upstream
from tests.integration.test_gitgate_support import gate_on_loopback


def test_a_hooks_dir_planted_in_the_gate_repo_is_not_used_after_a_restart(
    tmp_path: Path,
) -> None:
    upstream = seed_upstream(tmp_path)
    config = BundleConfig(
        slug="gated",
        bundle_ip="127.0.0.1",
        agent_subnet="127.0.0.0/8",
        git=(GitUpstreamConfig(name="origin", url=f"file://{upstream}", push_branches=("main",)),),
        state_dir=str(tmp_path / "state"),
    )
    marker = tmp_path / "planted-hook-ran"
    with gate_on_loopback(tmp_path, config):
        pass
    # The taken-over bundle: a hooks dir of its own (in the state dir, so it outlives the
    # bundle), named by the gate repository's config.
    gate_repo = repo_path(tmp_path / "gate", "origin")
    planted = tmp_path / "gate" / "planted-hooks"
    planted.mkdir()
    (planted / "pre-receive").write_text(f"#!/bin/sh\ntouch {marker}\ncat >/dev/null\nexit 0\n")
    (planted / "pre-receive").chmod(0o755)
    git(gate_repo, "config", "core.hooksPath", str(planted))
    shutil.rmtree(tmp_path / "agent")

    with gate_on_loopback(tmp_path, config) as (_, agent):
        commit_file(agent, "settings.py", f"KEY_ID = '{AWS_KEY}'\n")
        pushed = git(agent, "push", "origin", "HEAD:main", check=False)

    assert not marker.exists(), "the restarted gate ran the hook the bundle planted"
    assert pushed.returncode != 0, "the push with an AWS key was accepted"
    assert "AWS Access Key" in pushed.stderr
