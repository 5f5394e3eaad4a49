"""The bundle's per-bottle uid: outside every range the host hands to accounts or user
namespaces, stable for a slug, moved past anything taken."""

from __future__ import annotations

from bottle_engine.host_ids import (
    ID_RANGE_SIZE,
    ID_RANGE_START,
    IdRange,
    agent_id_for,
    bundle_id_for,
    login_defs_ranges,
    pick_id,
    subordinate_ranges,
)

LOGIN_DEFS = """\
# comment UID_MAX 99
UID_MIN			 1000
UID_MAX			60000
SUB_UID_MIN		   100000
SUB_UID_MAX		600100000
SUB_UID_COUNT		    65536
"""


def test_login_defs_reserve_accounts_and_subordinate_ids() -> None:
    [reserved] = login_defs_ranges(LOGIN_DEFS)
    assert 0 in reserved and 10001 in reserved and 600100000 + 65535 in reserved
    assert ID_RANGE_START not in reserved


def test_login_defs_with_a_larger_subordinate_range_reserve_it_too() -> None:
    [reserved] = login_defs_ranges("SUB_UID_MAX 2100000000\nSUB_UID_COUNT 65536\n")
    assert ID_RANGE_START in reserved


def test_subuid_lines_are_ranges() -> None:
    ranges = subordinate_ranges("alice:100000:65536\nbroken line\nbob:2080374784:10\n")
    assert ranges == [IdRange(100000, 65536), IdRange(2080374784, 10)]


def test_the_id_is_stable_for_a_slug_and_in_the_range() -> None:
    first = pick_id("dev-abc123", lambda _: False)
    assert first == pick_id("dev-abc123", lambda _: False)
    assert ID_RANGE_START <= first < ID_RANGE_START + ID_RANGE_SIZE
    assert first != pick_id("dev-abc123-2", lambda _: False)
    assert first < 2**31 - 1


def test_a_taken_id_is_skipped() -> None:
    first = pick_id("dev-abc123", lambda _: False)
    assert pick_id("dev-abc123", lambda candidate: candidate == first) != first


def test_no_account_on_this_host_holds_the_bundles_id() -> None:
    import grp
    import pwd

    uid = bundle_id_for("dev-abc123")
    assert uid not in {entry.pw_uid for entry in pwd.getpwall()}
    assert uid not in {entry.gr_gid for entry in grp.getgrall()}


def test_a_bottles_agent_gets_a_free_id_apart_from_its_bundles() -> None:
    import pwd

    uid = agent_id_for("dev-abc123")
    assert uid == agent_id_for("dev-abc123")
    assert uid != bundle_id_for("dev-abc123")
    assert uid >= ID_RANGE_START
    assert uid not in {entry.pw_uid for entry in pwd.getpwall()}
