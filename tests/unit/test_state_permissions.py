"""State and cache dirs are private to the engine's user (0700), records are 0600, and doctor
names any directory that other users may enter."""

from __future__ import annotations

import stat
from pathlib import Path

from bottle_engine import doctor, records, state


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_bottle_dir_and_every_dir_above_it_up_to_the_state_root_are_0700() -> None:
    bottle = state.make_bottle_dir("dev-abc123")
    assert bottle.is_dir()
    for directory in (bottle, bottle.parent, state.state_dir()):
        assert mode(directory) == 0o700, directory


def test_an_existing_open_state_root_is_tightened(tmp_path: Path) -> None:
    state.state_dir().mkdir(parents=True)
    state.state_dir().chmod(0o755)
    (state.state_dir() / "bottles").mkdir(mode=0o777)
    (state.state_dir() / "bottles").chmod(0o777)

    state.make_bottle_dir("dev-abc123")

    assert mode(state.state_dir()) == 0o700
    assert mode(state.state_dir() / "bottles") == 0o700


def test_the_cache_dir_is_created_private() -> None:
    assert mode(state.make_cache_dir()) == 0o700


def test_a_saved_record_is_0600_in_a_0700_dir() -> None:
    record = records.BottleRecord(
        slug="dev-abc123",
        name="bottle-dev-abc123",
        agent="dev",
        bottle="default",
        backend="docker",
        manifest="/m/bottle.toml",
        cwd="/m",
        started_at="2026-01-01T00:00:00+00:00",
        bundle_ip="10.243.0.2",
        subnet="10.243.0.0/28",
    )
    records.save(record)
    path = records.record_path("dev-abc123")
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700


def test_doctor_names_directories_other_users_may_enter() -> None:
    state.make_bottle_dir("dev-abc123")
    state.make_cache_dir()
    assert doctor.check_dirs().ok

    open_bottle = state.bottle_dir("dev-abc123")
    open_bottle.chmod(0o755)
    check = doctor.check_dirs()

    assert not check.ok
    assert f"{open_bottle} (0755)" in check.detail
    assert check.fix == f"chmod go-rwx {open_bottle}"
