"""Another host user who gets to a state or cache root (or a dir above it) first.

``BOTTLE_STATE_DIR`` / ``BOTTLE_CACHE_DIR`` (or ``XDG_STATE_HOME`` / ``XDG_CACHE_HOME``) may name
a place others can create in, as a shared ``/tmp`` path on a CI runner. Making the root 0700
protects nothing when the root, or a dir above it, belongs to someone else: its owner reads
the records, writes trust records (a wider manifest then counts as trusted) and artifact key
records (the person's input key then names the other user's image), or renames the root away
and puts its own in its place. The engine refuses such a root before it writes anything there.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle_engine import state
from bottle_engine.artifacts.store import ArtifactStore
from bottle_engine.errors import BottleError
from tests.host_users import NOBODY, as_user, open_tmp_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return as_user(NOBODY, list(command))


def made_by_nobody(shared_tmp: Path, variable: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`nobody` makes a 0700 dir of its own where `variable` then points."""
    root = shared_tmp / variable.lower()
    assert as_nobody("mkdir", "-m", "700", str(root)).returncode == 0
    monkeypatch.setenv(variable, str(root))
    return root


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A dir every user may create in, with the sticky bit, like /tmp."""
    with open_tmp_dir(0o1777) as directory:
        yield directory


def test_a_state_root_another_user_made_first_is_refused(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = made_by_nobody(shared_tmp, "BOTTLE_STATE_DIR", monkeypatch)  # there first

    with pytest.raises(BottleError, match="belongs to another user"):
        state.make_bottle_dir("dev-abc123")

    assert as_nobody("ls", "-A", str(root)).stdout == ""  # nothing of the person's in it


def test_a_cache_root_another_user_made_first_is_refused(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_by_nobody(shared_tmp, "BOTTLE_CACHE_DIR", monkeypatch)

    with pytest.raises(BottleError, match="belongs to another user"):
        ArtifactStore()


def test_a_root_linked_by_another_user_to_a_dir_of_the_persons_is_refused(
    shared_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link's owner may point it elsewhere at any moment after the check."""
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    link = shared_tmp / "bot-bottle-state"
    assert as_nobody("ln", "-s", str(mine), str(link)).returncode == 0
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(link))

    with pytest.raises(BottleError, match="belongs to another user"):
        state.make_bottle_dir("dev-abc123")


def test_a_root_under_a_dir_another_user_owns_is_refused(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 0700 root the engine makes there is the person's, but the dir's owner can rename it
    away and put an open one of its own in its place between two of the engine's writes."""
    theirs = shared_tmp / "team"
    assert as_nobody("mkdir", "-m", "755", str(theirs)).returncode == 0
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(theirs / "state"))

    with pytest.raises(BottleError, match="belongs to another user"):
        state.make_bottle_dir("dev-abc123")
    assert not (theirs / "state").exists()


def test_a_root_under_an_open_dir_without_the_sticky_bit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everyone may rename entries of a world-writable dir unless it is sticky (as /tmp is)."""
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    tmp_path.chmod(0o755)
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(open_dir / "state"))

    with pytest.raises(BottleError, match="others may rename"):
        state.make_bottle_dir("dev-abc123")


def test_a_root_of_the_persons_own_in_a_sticky_shared_dir_is_used(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(shared_tmp / "state"))
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(shared_tmp / "cache"))

    bottle = state.make_bottle_dir("dev-abc123")
    ArtifactStore()

    assert bottle.is_dir()
    assert as_nobody("ls", str(shared_tmp / "state")).returncode != 0


def test_doctor_names_a_root_another_user_owns(
    shared_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bottle_engine import doctor

    root = made_by_nobody(shared_tmp, "BOTTLE_CACHE_DIR", monkeypatch)

    check = doctor.check_dirs()

    assert not check.ok
    assert f"{root} belongs to another user (uid {NOBODY})" in check.detail


def test_a_root_whose_parents_do_not_exist_yet_is_made_private(shared_tmp: Path) -> None:
    root = shared_tmp / "a" / "b" / "state"
    assert state.owned_root(root, "BOTTLE_STATE_DIR") == root
    assert state.private_dir(root).is_dir()
    assert oct(root.parent.stat().st_mode & 0o777) == oct(0o700)


def test_a_root_under_a_dir_writable_by_another_group_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = tmp_path / "team"
    team.mkdir()
    os.chown(team, 0, NOBODY)
    team.chmod(0o775)
    tmp_path.chmod(0o755)
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(team / "state"))

    with pytest.raises(BottleError, match="others may rename"):
        state.make_bottle_dir("dev-abc123")
