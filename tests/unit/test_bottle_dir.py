"""`BottleDir`: the one place that names the files of a bottle's state dir and gives them their
modes (0700 dirs, 0600 files), agreeing with the names the bundle uses inside its container."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bottle_engine import state
from bottle_engine.bottle_dir import BottleDir, read_regular_files
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.errors import BottleError
from bottle_engine.manifest import load_manifest_file
from bottle_engine.plan import BottlePlan, plan_bottle
from bottle_engine.secrets import copy_upstream_ca, write_bundle_secrets

FULL = Path(__file__).resolve().parent.parent / "manifests" / "good" / "full.toml"
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")  # any real PEM CA will do


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that lets everyone read new files: modes must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def full_plan(monkeypatch: pytest.MonkeyPatch) -> BottlePlan:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-real-value")
    return plan_bottle(load_manifest_file(FULL).require(), "reviewer", slug="rev-1")


def test_the_host_names_are_the_names_the_bundle_uses_inside_its_container(
    tmp_path: Path,
) -> None:
    config = BundleConfig(slug="s", bundle_ip="10.0.0.2", agent_subnet="10.0.0.0/28")
    inside = BottleDir(Path(config.state_dir))
    assert inside.egress_log == config.audit_log
    assert inside.ca_dir == config.ca_dir
    assert inside.ready_file == config.ready_file
    assert BottleDir.of("s").path == state.bottle_dir("s")


def test_create_makes_the_dir_and_the_state_root_0700(open_umask: None) -> None:
    bottle_dir = BottleDir.create("dev-1")
    for directory in (bottle_dir.path, bottle_dir.path.parent, state.state_dir()):
        assert mode(directory) == 0o700, directory


def test_write_private_is_0600_whatever_the_umask_and_tightens_an_existing_file(
    tmp_path: Path, open_umask: None
) -> None:
    bottle_dir = BottleDir(tmp_path)
    fresh = bottle_dir.write_private(tmp_path / "fresh", "x")
    loose = tmp_path / "loose"
    loose.write_text("old")
    loose.chmod(0o666)
    bottle_dir.write_private(loose, b"new")
    assert (mode(fresh), mode(loose)) == (0o600, 0o600)
    assert loose.read_bytes() == b"new"


def test_write_private_refuses_a_symlink_planted_in_its_place(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / "secret").symlink_to(target)
    with pytest.raises(BottleError, match="nothing written"):
        BottleDir(tmp_path).write_private(tmp_path / "secret", "value")
    assert target.read_text() == "untouched"


def test_a_symlink_in_place_of_a_private_dir_is_refused_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    bottle_dir = BottleDir(tmp_path / "bottle")
    bottle_dir.path.mkdir()
    bottle_dir.secrets_dir.symlink_to(elsewhere)
    with pytest.raises(BottleError, match="symbolic link"):
        bottle_dir.private_subdir(bottle_dir.secrets_dir)
    assert mode(elsewhere) == 0o755 and list(elsewhere.iterdir()) == []


def test_secrets_git_keys_and_the_upstream_ca_are_0600_in_0700_dirs(
    full_plan: BottlePlan, tmp_path: Path, open_umask: None
) -> None:
    keys = FULL.parent / "keys"
    ca = tmp_path / "ca.pem"
    ca.write_text(SYSTEM_CAS.read_text())
    plan = replace(full_plan, upstream_ca=ca)
    bottle_dir = BottleDir.create(plan.slug)

    files, git_dir = write_bundle_secrets(plan, bottle_dir)
    copy = copy_upstream_ca(plan, bottle_dir)

    assert set(files) == {"ANTHROPIC_API_KEY", "GITHUB_TOKEN"}
    assert files["ANTHROPIC_API_KEY"] == bottle_dir.secret_file("ANTHROPIC_API_KEY")
    assert files["ANTHROPIC_API_KEY"].read_text() == "sk-real-value"
    assert git_dir == bottle_dir.git_keys_dir
    assert bottle_dir.git_identity("origin").read_bytes() == (keys / "bot_ed25519").read_bytes()
    assert copy == bottle_dir.upstream_ca
    written = [*files.values(), *git_dir.iterdir(), copy]
    assert {path: mode(path) for path in written} == {path: 0o600 for path in written}
    for directory in (bottle_dir.secrets_dir, bottle_dir.git_keys_dir):
        assert mode(directory) == 0o700


def test_a_secret_is_never_written_through_a_symlink_planted_in_the_state_dir(
    full_plan: BottlePlan, tmp_path: Path
) -> None:
    """The bundle writes in the state dir: a link it left where a secret goes must not send the
    value (as the engine's user, root included) into the file it points at."""
    target = tmp_path / "target"
    target.write_text("untouched")
    bottle_dir = BottleDir.create(full_plan.slug)
    bottle_dir.private_subdir(bottle_dir.secrets_dir)
    bottle_dir.secret_file("ANTHROPIC_API_KEY").symlink_to(target)
    with pytest.raises(BottleError, match="symbolic link"):
        write_bundle_secrets(full_plan, bottle_dir)
    assert target.read_text() == "untouched"


def test_a_name_with_a_path_in_it_never_names_a_file_outside_the_dir(tmp_path: Path) -> None:
    bottle_dir = BottleDir(tmp_path)
    for name in ("../bottle.json", "a/b", "..", ""):
        with pytest.raises(BottleError, match="cannot name a file"):
            bottle_dir.secret_file(name)
        with pytest.raises(BottleError, match="cannot name a file"):
            bottle_dir.git_identity(name)


@pytest.mark.parametrize("slug", ["../x", "a/b", ".", "..", ".hidden", "", "a\0b", "s" * 201])
def test_a_slug_naming_a_path_reaches_no_dir(
    slug: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`approvals SLUG`, `--bottle SLUG` and the editor pass a person's text here; `create`
    makes the dir, so it refuses the same names before any dir is made."""
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(BottleError, match="is not a bottle's name"):
        BottleDir.of(slug)
    with pytest.raises(BottleError, match="is not a bottle's name"):
        BottleDir.create(slug)
    assert list(tmp_path.iterdir()) == []


def test_read_regular_files_leaves_out_links_fifos_and_oversized_files(tmp_path: Path) -> None:
    """What `probe` reads of a bottle's secrets: the bundle can write that dir."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "TOKEN").write_text("value\n")
    (directory / "big").write_bytes(b"x" * 65)
    host = tmp_path / "host-file"
    host.write_text("host only\n")
    (directory / "link").symlink_to(host)
    os.mkfifo(directory / "fifo")

    assert read_regular_files(directory, 64) == {"TOKEN": b"value\n"}


def test_read_regular_files_refuses_a_linked_dir(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "secrets").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        read_regular_files(tmp_path / "secrets", 64)
