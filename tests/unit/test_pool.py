"""The warm pool's bookkeeping on disk: taking a member and a bottle name atomically, across
processes, and never handing out what another launch holds."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bottle_engine import pool, state
from bottle_engine.backends.gateway import claim_bottle_dir
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.dockerapi.bundle_container import wait_bundle_ready
from bottle_engine.errors import BottleError
from bottle_engine.pool import Member, PoolKey

KEY = PoolKey("bot-bottle/bundle:abc", "", "", (("upstream.test", "10.0.0.2"),), 512 << 20)


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTTLE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _member(number: int, key: PoolKey = KEY) -> Member:
    member_id = f"m{number:04d}"
    internal, egress = pool.member_names(member_id, key)
    return Member(member_id, key, f"10.243.{number}.0/28", internal, egress, float(number))


def _free(member: Member) -> None:
    pool.record_making(member)
    member.directory.mkdir(parents=True)
    pool.mark_free(member)


def _take_all(state_dir: str, out: Any) -> None:
    os.environ["BOTTLE_STATE_DIR"] = state_dir
    out.put([member.id for member in pool.take(KEY)])


def test_members_taken_by_racing_processes_go_to_one_each(state_root: Path) -> None:
    members = [_member(n) for n in range(6)]
    for member in members:
        _free(member)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    racers = [context.Process(target=_take_all, args=(str(state_root), out)) for _ in range(4)]
    for racer in racers:
        racer.start()
    taken = [member_id for _ in racers for member_id in out.get(timeout=120)]
    for racer in racers:
        racer.join(timeout=60)
    assert sorted(taken) == sorted(m.id for m in members)  # each once, none twice
    assert list(pool.take(KEY)) == []  # and none returns to the pool


def test_a_member_of_another_bottle_kind_is_never_taken(state_root: Path) -> None:
    other = PoolKey("bot-bottle/bundle:abc", "runsc", "", KEY.bundle_hosts, KEY.memory_bytes)
    _free(_member(1, other))
    assert list(pool.take(KEY)) == []
    assert [m.id for m in pool.take(other)] == ["m0001"]


def test_a_member_made_by_another_engine_is_never_taken(state_root: Path) -> None:
    """The bundle image holds the bundle's code only: how its container is made (capabilities,
    read-only root, limits, log rotation, mounts, user) is the engine's. A member made by
    another engine (one before an upgrade, or another install sharing the state dir) runs with
    that engine's container, and a launch took it as this engine's."""
    older = _member(1)
    _free(older)
    description = pool.pool_root() / pool.FREE / older.id
    raw = json.loads(description.read_text())
    raw["key"].pop("engine", None)  # as an engine before this field described its members
    description.write_text(json.dumps(raw))
    other_engine = replace(KEY, engine="0" * 64)  # a member of an engine of other code
    _free(_member(2, other_engine))
    assert list(pool.take(KEY)) == []
    assert "made by another engine" in other_engine.describe()  # what `pool status` says
    _free(_member(3))
    assert [member.id for member in pool.take(KEY)] == ["m0003"]


def test_the_bundle_cannot_put_its_member_back_in_the_pool(state_root: Path) -> None:
    """The markers that make a member free are outside the dir mounted into its bundle: a
    bundle that writes anything into its own dir after its claim is not offered again."""
    member = _member(1)
    _free(member)
    (taken,) = pool.take(KEY)
    for name in ("free", "making", taken.id, "member.json"):
        (member.directory / name).write_text(taken.to_json())
    assert list(pool.take(KEY)) == []
    assert pool.where_is(taken.id) == pool.CLAIMED


def test_a_bottle_name_is_never_shared_even_with_an_empty_dir_in_place(state_root: Path) -> None:
    """A plain rename replaces an empty directory: a cold launch that has just made its
    bottle dir would then share it with a launch from the pool."""
    member = _member(1)
    _free(member)
    (state_root / "bottles" / "dev").mkdir(parents=True)
    assert pool.link_bottle_dir("dev", member) is False
    assert not (state_root / "bottles" / "dev").is_symlink()
    assert claim_bottle_dir("dev") is None
    assert pool.link_bottle_dir("dev-2", member) is True
    assert claim_bottle_dir("dev-2") is None  # taken by the link
    assert sorted(p.name for p in (state_root / "bottles").iterdir()) == ["dev", "dev-2"]


def test_a_filesystem_without_no_replace_renames_is_a_clear_error(
    state_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NFS answers renameat2(RENAME_NOREPLACE) with EINVAL: falling back to a plain rename
    would let two launches share a dir, so the launch stops and says where to put the state."""
    import ctypes
    import errno

    from bottle_engine import dirclaim

    def refused(*_: object) -> int:
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(dirclaim, "_RENAME", refused)
    source, target = state_root / "a", state_root / "b"
    source.mkdir(parents=True)
    with pytest.raises(BottleError, match="cannot rename without replacing") as raised:
        dirclaim.move_noreplace(source, target)
    assert "BOTTLE_STATE_DIR" in (raised.value.fix or "")
    assert source.is_dir() and not target.exists()


def test_removing_a_pooled_bottle_removes_its_link_and_its_members_dir_only(
    state_root: Path, tmp_path: Path
) -> None:
    member = _member(1)
    _free(member)
    assert pool.link_bottle_dir("dev", member)
    (state.bottle_dir("dev") / "bottle.json").write_text("{}")
    assert (member.directory / "bottle.json").is_file()  # the link leads to the member's dir
    state.remove_bottle_dir("dev")
    assert not state.bottle_dir("dev").exists() and not member.directory.exists()
    # A name whose member is gone (removed by gc after its launch died) is freed by gc.
    member2 = _member(2)
    _free(member2)
    assert pool.link_bottle_dir("gone", member2)
    pool.forget(member2.id)
    assert pool.remove_dangling_links() == [str(state.bottle_dir("gone"))]
    assert not state.bottle_dir("gone").is_symlink()
    # A link elsewhere (not ours) is only unlinked, its target left alone.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state.bottle_dir("odd").symlink_to(elsewhere)
    state.remove_bottle_dir("odd")
    assert elsewhere.is_dir() and not state.bottle_dir("odd").is_symlink()


class _ReadyContainer:
    name = "bottle-x-bundle"
    status = "running"
    attrs: ClassVar[dict[str, Any]] = {}

    def reload(self) -> None:
        pass

    def logs(self, tail: int) -> bytes:
        return b"bundle: ready"


def test_a_bundle_reporting_another_config_is_not_ready(tmp_path: Path) -> None:
    config = BundleConfig(slug="x", bundle_ip="10.0.0.2", agent_subnet="10.0.0.0/28")
    (tmp_path / "bundle.ready").write_text(json.dumps({"config_sha256": "0" * 64}))
    with pytest.raises(BottleError, match="reports a config other than"):
        wait_bundle_ready(_ReadyContainer(), config, 5, state_dir=tmp_path, config_sha256="1" * 64)
    wait_bundle_ready(_ReadyContainer(), config, 5, state_dir=tmp_path, config_sha256="0" * 64)


def test_a_ready_file_linked_to_another_file_is_not_read(tmp_path: Path) -> None:
    """The ready file is in the bundle's dir: a link to a file holding the right digest (any
    host file the bundle names) is not followed."""
    config = BundleConfig(slug="x", bundle_ip="10.0.0.2", agent_subnet="10.0.0.0/28")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"config_sha256": "0" * 64}))
    (tmp_path / "bundle.ready").symlink_to(elsewhere)
    with pytest.raises(BottleError, match="reports a config other than"):
        wait_bundle_ready(_ReadyContainer(), config, 5, state_dir=tmp_path, config_sha256="0" * 64)


def test_a_ready_file_nested_past_the_parsers_depth_is_a_clear_refusal(tmp_path: Path) -> None:
    config = BundleConfig(slug="x", bundle_ip="10.0.0.2", agent_subnet="10.0.0.0/28")
    (tmp_path / "bundle.ready").write_text("[" * 5_000 + "]" * 5_000)
    with pytest.raises(BottleError, match="reports a config other than"):
        wait_bundle_ready(_ReadyContainer(), config, 5, state_dir=tmp_path, config_sha256="0" * 64)


SECRET_MANIFEST = """\
[agents.dev]
command = ["sleep", "infinity"]
copy_cwd = false

[bottles.default.secrets.TOKEN]
from_env = "POOL_TEST_TOKEN"
hosts = ["api.invalid"]
"""


def test_a_planted_symlink_in_the_members_dir_never_leads_the_engines_writes(
    state_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: the member's bundle (which can write its own dir) plants `secrets`, the
    config and the upstream CA as symlinks into a host directory before its claim; the engine
    must not write the bottle's secret (or anything) through them."""
    from types import SimpleNamespace

    from bottle_engine.backends.warm_pool import WarmPool
    from bottle_engine.manifest import load_manifest_text
    from bottle_engine.plan import Planner

    monkeypatch.setenv("POOL_TEST_TOKEN", "real-value-123")
    manifest = load_manifest_text(SECRET_MANIFEST, tmp_path / "bottle.toml").require()
    member = _member(1)
    _free(member)
    host = tmp_path / "host"
    host.mkdir()
    for name in ("secrets", "bundle.json", "git-keys"):
        (member.directory / name).symlink_to(host / name if name != "secrets" else host)
    plan = Planner(manifest, "dev", tmp_path)("dev", subnet=member.network)
    warm = WarmPool(SimpleNamespace(client=None, settings=None))  # type: ignore[arg-type]
    with pytest.raises(BottleError, match="already has a"):
        warm._hand_config(plan, member)
    assert list(host.iterdir()) == []  # nothing written through the links
    # An untouched member gets its files.
    for name in ("secrets", "bundle.json", "git-keys"):
        (member.directory / name).unlink()
    digest, handed = warm._hand_config(plan, member)
    assert (member.directory / "secrets" / "TOKEN").read_text() == "real-value-123"
    assert json.loads((member.directory / "bundle.json").read_text())["agent_ip"] == "10.243.1.3"
    assert len(digest) == 64
    assert handed == {"secrets/TOKEN": hashlib.sha256(b"real-value-123").hexdigest()}
    assert list(host.iterdir()) == []


def test_the_ca_certificate_is_never_read_through_a_symlink(tmp_path: Path) -> None:
    from bottle_engine.guest import bundle_ca

    host_file = tmp_path / "host-secret"
    host_file.write_text("root's secret")
    bottle = tmp_path / "bottle"
    (bottle / "ca").mkdir(parents=True)
    (bottle / "ca" / "mitmproxy-ca-cert.pem").symlink_to(host_file)
    with pytest.raises(BottleError, match="did not write its CA certificate"):
        bundle_ca(BottleDir(bottle))
    other = tmp_path / "other"
    (other).mkdir()
    (other / "mitmproxy-ca-cert.pem").write_text("root's secret")
    (tmp_path / "bottle2").mkdir()
    (tmp_path / "bottle2" / "ca").symlink_to(other)
    with pytest.raises(BottleError, match="did not write its CA certificate"):
        bundle_ca(BottleDir(tmp_path / "bottle2"))
    (bottle / "ca" / "mitmproxy-ca-cert.pem").unlink()
    (bottle / "ca" / "mitmproxy-ca-cert.pem").write_text("-----BEGIN CERTIFICATE-----")
    assert bundle_ca(BottleDir(bottle)) == b"-----BEGIN CERTIFICATE-----"
