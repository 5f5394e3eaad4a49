"""A bottle.toml of any size, or a link to one that never ends: an agent's branch may hold a
bottle.toml of hundreds of MiB, or a symlink named bottle.toml that leads to /dev/zero. The
engine (`validate`, a launch, the editor's trust review) reads at most `MAX_MANIFEST_BYTES` of
it and says it is too large; it never holds the whole file, and reads no file but a regular one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bottle_engine.errors import BottleError
from bottle_engine.manifest import MAX_MANIFEST_BYTES, load_manifest_file, load_manifest_text
from tests.conftest import REPO_ROOT

LOAD_UNDER_A_MEMORY_LIMIT = """
import resource, sys
from pathlib import Path
from bottle_engine.manifest import load_manifest_file
limit = 768 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
loaded = load_manifest_file(Path(sys.argv[1]))
print(" ".join(p.code for p in loaded.problems))
"""


def manifest_of(size: int) -> str:
    """A valid manifest padded with comment lines to at least `size` bytes."""
    head = '[bottles.b]\n[agents.a]\nbottle = "b"\n'
    line = "# " + "x" * 77 + "\n"
    return head + line * ((size - len(head)) // len(line) + 1)


def test_a_manifest_over_the_limit_is_one_problem_and_is_not_parsed(tmp_path: Path) -> None:
    text = manifest_of(MAX_MANIFEST_BYTES + 1)
    loaded = load_manifest_text(text, tmp_path / "bottle.toml")
    [problem] = loaded.problems
    assert problem.code == "BB002" and problem.is_error
    assert str(MAX_MANIFEST_BYTES) in problem.message
    assert loaded.manifest is None and loaded.parsed.data == {}


def test_the_limit_counts_utf8_bytes_not_characters(tmp_path: Path) -> None:
    text = "[bottles.b]\n# " + "é" * (MAX_MANIFEST_BYTES // 2) + "\n"
    assert len(text) < MAX_MANIFEST_BYTES < len(text.encode())
    [problem] = load_manifest_text(text, tmp_path / "bottle.toml").problems
    assert problem.code == "BB002"


def test_a_manifest_under_the_limit_loads(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "bottle.toml"
    path.write_text(manifest_of(MAX_MANIFEST_BYTES - 200))
    loaded = load_manifest_file(path)
    assert loaded.problems == [] and loaded.manifest is not None


def test_a_huge_manifest_file_is_refused_unread(tmp_path: Path) -> None:
    """Read in a process limited to 768 MiB of address space: reading the whole file runs out."""
    path = tmp_path / "bottle.toml"
    with path.open("wb") as sparse:
        sparse.truncate(2 * 1024 * 1024 * 1024)  # 2 GiB of holes: no disk used
    done = subprocess.run(
        [sys.executable, "-c", LOAD_UNDER_A_MEMORY_LIMIT, str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "BB002"), done.stderr[-2000:]


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_a_manifest_that_is_no_regular_file_is_refused_unread(tmp_path: Path, target: str) -> None:
    """A device never ends; a FIFO, or the reader's own input, blocks until someone writes."""
    path = tmp_path / "bottle.toml"
    if target == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(target)
    with pytest.raises(BottleError, match="not a regular file"):
        load_manifest_file(path)
