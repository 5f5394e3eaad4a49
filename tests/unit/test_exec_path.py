"""Programs are looked up in absolute PATH directories only: the engine and the language server
run in the editor's workspace folder, which an agent may have written (exec_path.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bottle_engine.exec_path import absolute_entries, keep_absolute_entries
from tests.conftest import REPO_ROOT
from tests.lsp.test_hostile_workspace import SMOL_RECORD, plant


def test_empty_and_relative_entries_are_dropped_in_order() -> None:
    assert absolute_entries(":/usr/bin:.:bin:/bin:") == ("/usr/bin:/bin", ["", ".", "bin", ""])


def test_a_path_of_relative_entries_only_becomes_the_default_path() -> None:
    environ = {"PATH": ":."}
    assert keep_absolute_entries(environ) == ["", "."]
    assert environ["PATH"] == os.defpath  # an empty PATH would be "here" to execvp
    assert all(os.path.isabs(entry) for entry in environ["PATH"].split(os.pathsep))


def test_an_unset_or_absolute_path_is_left_alone() -> None:
    environ: dict[str, str] = {}
    assert keep_absolute_entries(environ) == [] and environ == {}
    environ = {"PATH": "/usr/bin:/bin"}
    assert keep_absolute_entries(environ) == [] and environ == {"PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("entry", ["", ".", "bin"])
def test_bottle_engine_ls_in_a_hostile_checkout_runs_none_of_its_programs(
    tmp_path: Path, entry: str
) -> None:
    """`bottle-engine ls` (or attach, from the editor's terminal) in a repository holding a
    `smolvm`, with a relative PATH entry, while a smolmachines bottle is recorded."""
    checkout = tmp_path / "checkout"
    (checkout / "bin").mkdir(parents=True)
    marker = tmp_path / "ran"
    for where in (checkout, checkout / "bin"):
        plant(where, "smolvm", marker)
    record = tmp_path / "state" / "records" / "dev-1.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps(SMOL_RECORD))
    env = {
        **os.environ,
        "PATH": os.pathsep.join([os.environ.get("PATH", ""), entry]),
        "PYTHONPATH": str(REPO_ROOT),
        "BOTTLE_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("BOTTLE_SMOLVM", None)
    done = subprocess.run(
        [sys.executable, "-P", "-m", "bottle_engine", "ls"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "dev-1" in done.stdout, done.stdout + done.stderr
    assert not marker.exists(), marker.read_text()
