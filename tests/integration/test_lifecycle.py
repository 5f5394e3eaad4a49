"""The docker backend's lifecycle on the real daemon: names, subnets, cleanup, stop/resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle, records
from bottle_engine.errors import BottleError
from bottle_engine.progress import QuietProgress
from tests.bottle_fixtures import (
    REPO_ROOT,
    BottleWorld,
    labelled_leftovers,
    running_bottle,
    world_env,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _slug_prefix(world: BottleWorld, agent: str) -> str:
    from bottle_engine.plan import base_slug

    return base_slug(world.manifest, agent)


def test_two_concurrent_launches_get_distinct_names_and_subnets(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    with world_env(bottle_world), ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(lifecycle.launch, bottle_world.manifest, "twin") for _ in range(2)]
        launched = []
        errors = []
        for future in futures:
            try:
                launched.append(future.result())
            except Exception as exc:  # reported below, after the other launch is stopped
                errors.append(exc)
        try:
            assert not errors, errors
            first, second = launched
            assert {first.slug, second.slug} == {
                _slug_prefix(bottle_world, "twin"),
                _slug_prefix(bottle_world, "twin") + "-2",
            }
            assert first.subnet != second.subnet
            assert first.bundle_ip != second.bundle_ip
        finally:
            for record in launched:
                lifecycle.stop(record.slug, remove=True)
    assert labelled_leftovers(docker_client, _slug_prefix(bottle_world, "twin")) == []


def test_ctrl_c_during_launch_leaves_nothing_behind(
    bottle_world: BottleWorld, docker_client: Any
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bottle_engine",
            "launch",
            "-f",
            str(bottle_world.manifest),
            "victim",
            "--detach",
        ],
        env={**os.environ, **bottle_world.env},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 900
    for line in process.stderr:  # progress lines, one per stage
        seen.append(line)
        if "start bundle" in line:  # networks exist, the bundle is being created
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "the launch never reached the bundle stage"
    rest = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(seen) + rest[1]
    prefix = _slug_prefix(bottle_world, "victim")
    assert labelled_leftovers(docker_client, prefix) == []
    with world_env(bottle_world):
        assert [r for r in records.all_records() if r.slug.startswith(prefix)] == []
    assert not (bottle_world.state_dir / "bottles" / prefix).exists()


def test_a_launch_that_fails_half_way_removes_what_it_made(
    bottle_world: BottleWorld, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world_env(bottle_world):
        monkeypatch.delenv("BOTTLE_TEST_TOKEN")  # the secret's source is missing
        with pytest.raises(BottleError, match="BOTTLE_TEST_TOKEN is not set"):
            lifecycle.launch(bottle_world.manifest, "victim")
    assert labelled_leftovers(docker_client, _slug_prefix(bottle_world, "victim")) == []


def test_guest_files_then_stop_and_resume(bottle_world: BottleWorld, tmp_path: Path) -> None:
    """What a launch puts in the sandbox, and that stop + resume bring the same bottle back."""
    from bottle_engine.backends import backend_named

    home = tmp_path / "home"
    (home / ".claude" / "skills" / "review").mkdir(parents=True)
    (home / ".claude" / "skills" / "review" / "SKILL.md").write_text("# review\n")
    world = dataclasses.replace(bottle_world, env={**bottle_world.env, "HOME": str(home)})
    with running_bottle(world, "lifecycle") as record, world_env(world):
        backend = backend_named("docker")

        def agent_sh(script: str) -> str:
            code, output = backend.exec_as_agent(record, ["sh", "-c", script])
            assert code == 0, output
            return output.strip()

        assert "bottle.toml" in agent_sh("ls /workspace")  # copy_cwd copied the directory
        prompt = "/home/agent/.bot-bottle/prompt.md"
        assert agent_sh(f"stat -c '%a %U' {prompt}") == "600 agent"
        assert agent_sh(f"cat {prompt}") == "Review only."
        assert agent_sh("cat ~/.claude/skills/review/SKILL.md") == "# review"
        claude = json.loads(agent_sh("cat ~/.claude.json"))
        assert claude["projects"]["/workspace"]["hasTrustDialogAccepted"] is True

        lifecycle.stop(record.slug)
        assert {b.slug: b.status.text for b in lifecycle.list_bottles()}[record.slug] in (
            "exited",
            "stopped",
        )
        lifecycle.resume(record.slug)
        assert {b.slug: b.status.text for b in lifecycle.list_bottles()}[record.slug] == "running"
        assert agent_sh("id -un") == "agent"
        assert agent_sh(f"cat {prompt}") == "Review only."  # the container came back, files too


def test_attach_without_a_terminal_shows_all_output_and_returns_the_exit_code(
    bottle_world: BottleWorld,
) -> None:
    """`attach` from a pipe (CI, scripts): what the agent wrote before the attach too."""
    with world_env(bottle_world):
        record = lifecycle.launch(bottle_world.manifest, "talker")
    try:
        attached = subprocess.run(
            [sys.executable, "-m", "bottle_engine", "attach", record.slug],
            env={**os.environ, **bottle_world.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert attached.stdout.split() == [b"before", b"after"]
        assert attached.returncode == 7
    finally:
        with world_env(bottle_world):
            lifecycle.stop(record.slug, remove=True)


def test_ls_json_finds_bottles_from_a_new_process(
    bottle_world: BottleWorld, probe_bottle: Any
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bottle_engine", "ls", "--json"],
        env={**os.environ, **bottle_world.env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    listed = {entry["slug"]: entry for entry in json.loads(result.stdout)}
    assert listed[probe_bottle.slug]["status"] == "running"
    assert listed[probe_bottle.slug]["agent"] == "probe"


def test_gc_removes_orphans_by_label_and_only_its_own(
    bottle_world: BottleWorld, docker_client: Any, tmp_path: Path
) -> None:
    # Someone else's bottle on the same daemon: another state dir, so not ours to collect.
    elsewhere = {**bottle_world.env, "BOTTLE_STATE_DIR": str(tmp_path / "other-state")}
    with running_bottle(dataclasses.replace(bottle_world, env=elsewhere), "twin") as theirs:
        with world_env(bottle_world):
            record = lifecycle.launch(bottle_world.manifest, "victim")
            # The CLI "crashed": the record is gone, the containers and network are not.
            records.record_path(record.slug).unlink()
            removed = lifecycle.gc()
        assert record.name in removed
        assert labelled_leftovers(docker_client, record.slug) == []
        assert theirs.name not in removed
        assert theirs.name in labelled_leftovers(docker_client, theirs.slug)


class _PausedAfterNetworks(QuietProgress):
    """Holds a launch once its networks exist and before its bundle starts: what it made so
    far has no record yet."""

    def __init__(self) -> None:
        self.halfway, self.go_on = threading.Event(), threading.Event()

    def stage(self, name: str) -> None:
        if name.startswith("start bundle"):
            self.halfway.set()
            self.go_on.wait(300)


def test_gc_waits_for_a_launch_under_way_instead_of_removing_what_it_made(
    bottle_world: BottleWorld,
) -> None:
    progress = _PausedAfterNetworks()
    env = {**os.environ, **bottle_world.env, "PYTHONPATH": str(REPO_ROOT)}
    with world_env(bottle_world), ThreadPoolExecutor(1) as pool:
        launching = pool.submit(
            lifecycle.launch, bottle_world.manifest, "victim", progress=progress
        )
        try:
            assert progress.halfway.wait(600), "the launch never got to its bundle"
            gc = subprocess.Popen(
                [sys.executable, "-m", "bottle_engine", "gc"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert gc.stdout is not None
            first = gc.stdout.readline()  # what gc does while the launch is held
        finally:
            progress.go_on.set()
        record = launching.result(timeout=600)
        try:
            rest, _ = gc.communicate(timeout=120)
            assert "waiting for the launches under way to finish" in first, first + rest
            assert gc.returncode == 0, rest
            assert "nothing to remove" in rest, rest
            assert lifecycle.find(record.slug).slug == record.slug
        finally:
            lifecycle.stop(record.slug, remove=True)


def test_launch_of_an_unknown_agent_names_the_defined_ones(bottle_world: BottleWorld) -> None:
    with world_env(bottle_world), pytest.raises(BottleError, match=r"defined: .*lifecycle"):
        lifecycle.launch(bottle_world.manifest, "nobody")


def test_stop_of_an_unknown_bottle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BottleError, match="no bottle 'nope'"):
        lifecycle.stop("nope")
