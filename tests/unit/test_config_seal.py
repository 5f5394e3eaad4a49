"""The config seal: `resume` and `probe` take the bundle's config only as the engine wrote it."""

from __future__ import annotations

import contextlib
import json
import os

import pytest

from bottle_engine import approvals, config_seal, records, state
from bottle_engine.approvals import ApprovalStore
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.waiting import config_digest
from bottle_engine.errors import BottleError

TEXT = '{"slug": "b1", "egress_allow": ["api.example"]}'


def _bottle(text: str = TEXT) -> BottleDir:
    bottle_dir = BottleDir.create("b1")
    bottle_dir.write_private(bottle_dir.bundle_config, text)
    config_seal.seal("b1", config_digest(text.encode()))
    return bottle_dir


def test_the_config_as_written_is_returned() -> None:
    assert config_seal.checked_config_text("b1", _bottle()) == TEXT


def test_a_rewritten_config_is_refused_naming_it() -> None:
    bottle_dir = _bottle()
    bottle_dir.bundle_config.write_text(TEXT.replace("api.example", "collector.example"))
    with pytest.raises(BottleError, match="differs from the config") as refused:
        config_seal.checked_config_text("b1", bottle_dir)
    assert str(bottle_dir.bundle_config) in str(refused.value)
    assert "stop --rm b1" in str(refused.value.fix)


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_link_or_fifo_in_the_configs_place_is_refused_unread(kind: str) -> None:
    bottle_dir = _bottle()
    bottle_dir.bundle_config.unlink()
    if kind == "symlink":
        bottle_dir.bundle_config.symlink_to("/etc/hostname")
    else:
        os.mkfifo(bottle_dir.bundle_config)
    with pytest.raises(BottleError, match="not a regular file"):
        config_seal.checked_config_text("b1", bottle_dir)


def test_a_bottle_launched_before_seals_is_read_unchecked() -> None:
    bottle_dir = _bottle()
    config_seal.forget("b1")
    assert config_seal.checked_config_text("b1", bottle_dir) == TEXT
    assert not config_seal.seal_path("b1").exists()


# -- the other files handed to the bundle ------------------------------------------------------
def _handed() -> BottleDir:
    """A bottle dir with a secret, a git key and an upstream CA, sealed as a launch seals them."""
    bottle_dir = BottleDir.create("b1")
    bottle_dir.private_subdir(bottle_dir.secrets_dir)
    bottle_dir.write_private(bottle_dir.secret_file("TOKEN"), "real-value")
    bottle_dir.private_subdir(bottle_dir.git_keys_dir)
    bottle_dir.write_private(bottle_dir.git_known_hosts("origin"), "host ssh-ed25519 AAAA\n")
    bottle_dir.write_private(bottle_dir.upstream_ca, "-----BEGIN CERTIFICATE-----\n")
    config_seal.seal_handed("b1", config_seal.handed_digests(bottle_dir.path))
    return bottle_dir


def test_the_handed_files_as_written_are_returned() -> None:
    found = config_seal.checked_handed_files("b1", _handed())
    assert found is not None
    assert found["secrets/TOKEN"] == b"real-value"
    assert set(found) == {"secrets/TOKEN", "git-keys/origin.known_hosts", "upstream-ca.pem"}


@pytest.mark.parametrize(
    "name", ["secrets/TOKEN", "git-keys/origin.known_hosts", "upstream-ca.pem"]
)
def test_a_rewritten_handed_file_is_refused_naming_it(name: str) -> None:
    bottle_dir = _handed()
    (bottle_dir.path / name).write_text("chosen by the bundle")
    with pytest.raises(BottleError, match="differs from the file") as refused:
        config_seal.checked_handed_files("b1", bottle_dir)
    assert str(bottle_dir.path / name) in str(refused.value)


def test_a_removed_handed_file_is_refused() -> None:
    bottle_dir = _handed()
    bottle_dir.secret_file("TOKEN").unlink()
    with pytest.raises(BottleError, match="is missing"):
        config_seal.checked_handed_files("b1", bottle_dir)


def test_a_link_in_place_of_a_handed_dir_is_not_followed() -> None:
    """The secrets dir swapped for a link to a dir holding a file of the same name and value:
    the engine would read the same bytes, but from a place of the bundle's choosing."""
    bottle_dir = _handed()
    elsewhere = BottleDir.create("b2")
    elsewhere.private_subdir(elsewhere.secrets_dir)
    elsewhere.write_private(elsewhere.secret_file("TOKEN"), "real-value")
    os.rename(bottle_dir.secrets_dir, bottle_dir.path / "old")
    bottle_dir.secrets_dir.symlink_to(elsewhere.secrets_dir)
    with pytest.raises(BottleError, match="symbolic link"):
        config_seal.checked_handed_files("b1", bottle_dir)


def test_a_bottle_launched_before_handed_seals_has_none() -> None:
    bottle_dir = _handed()
    config_seal.forget("b1")
    assert config_seal.checked_handed_files("b1", bottle_dir) is None
    assert not config_seal.handed_seal_path("b1").exists()


# -- approvals: only a person's answers survive a resume ----------------------------------------
def _asked(store: ApprovalStore, host: str) -> str:
    return store.open_egress_request(host, 443, "GET", "/", 600).id


def test_an_approval_the_bundle_wrote_itself_is_dropped_and_a_persons_kept() -> None:
    bottle_dir = BottleDir.create("b1")
    store = ApprovalStore(bottle_dir.path, "b1")  # as the bundle sees it
    by_person = store.open_request("deploy", "to staging", 600).id
    by_bundle = store.open_request("push", "to main", 600).id
    waiting = _asked(store, "waiting.example")
    approvals.answer(by_person, True, slug="b1")  # the host's path (CLI, editor)
    store.answer(by_bundle, True, None, by="cli (root)")  # the bundle's own code, no person
    dropped = config_seal.drop_unvouched_approvals("b1", bottle_dir)
    assert [r.id for r in dropped] == [by_bundle]
    assert store.get(by_bundle) is None
    assert store.get(by_person) is not None and store.get(by_person).approved  # type: ignore[union-attr]
    assert store.get(waiting) is not None  # a pending question is a person's to answer


def test_a_persons_approval_the_bundle_widened_is_dropped() -> None:
    """Approved for one held request (`once`), rewritten to stand for the host:port."""
    bottle_dir = BottleDir.create("b1")
    store = ApprovalStore(bottle_dir.path, "b1")
    asked = _asked(store, "asked.example")
    answered = approvals.answer(asked, True, slug="b1", once=True)
    path = bottle_dir.approvals_dir / f"{asked}.json"
    path.write_text(json.dumps({**answered.to_dict(), "once": False}))
    assert [r.id for r in config_seal.drop_unvouched_approvals("b1", bottle_dir)] == [asked]


def test_the_seals_beside_the_records_are_not_read_as_records() -> None:
    """`records` lists every `<slug>.json` in the records dir: no seal may be named so."""
    _bottle()
    _handed()
    store = ApprovalStore(BottleDir.of("b1").path, "b1")
    approvals.answer(_asked(store, "asked.example"), True, slug="b1")
    assert len(list(state.records_dir().iterdir())) == 3
    assert records.all_records() == []


def test_resume_makes_no_approvals_dir_where_there_was_none() -> None:
    """Made by the engine (root), the bundle's own user could not write its requests there."""
    bottle_dir = BottleDir.create("b1")
    assert config_seal.drop_unvouched_approvals("b1", bottle_dir) == []
    assert not bottle_dir.approvals_dir.exists()


@pytest.mark.parametrize(
    "field",
    [
        {"host": "collector.example"},
        {"port": 8443},
    ],
)
def test_an_ask_whose_fields_are_not_the_destination_its_text_shows_gets_no_approval(
    field: dict[str, object],
) -> None:
    """The bundle writes the approvals dir: an ask whose action and reason (what a person
    reads) name `docs.example:443` while its host and port (what the proxy obeys, and what the
    engine vouches for) name another. The person's approval was vouched for, kept by the
    resume, and let the fresh bundle reach the other destination."""
    bottle_dir = BottleDir.create("b1")
    store = ApprovalStore(bottle_dir.path, "b1")
    shown = store.open_egress_request("docs.example", 443, "CONNECT", None, 600)
    assert shown.action == "egress: CONNECT docs.example:443"
    path = bottle_dir.approvals_dir / f"{shown.id}.json"
    path.write_text(json.dumps({**shown.to_dict(), **field}))

    with contextlib.suppress(BottleError):
        approvals.answer(shown.id, True, slug="b1")  # what `approvals` lists
    config_seal.drop_unvouched_approvals("b1", bottle_dir)

    kept = [r for r in ApprovalStore(bottle_dir.path, "b1").all() if r.approved]
    assert [(r.host, r.port) for r in kept] in ([], [("docs.example", 443)])


@pytest.mark.parametrize("once", [False, True])
def test_an_egress_approval_the_bundle_wrote_back_after_its_delivery_is_dropped(once: bool) -> None:
    """A person approved `docs.example:443` for the bundle's life (or one request); the proxy
    took the answer and the file left the store. The bundle (which writes the dir and reads
    approvals.jsonl) writes it back, as it was: the answer's key is one the engine vouched for,
    so the resume kept it and the fresh bundle's proxy took it as its own."""
    bottle_dir = BottleDir.create("b1")
    store = ApprovalStore(bottle_dir.path, "b1")
    asked = _asked(store, "docs.example")
    answered = approvals.answer(asked, True, slug="b1", once=once)
    store.mark_delivered(asked)  # the old bundle's proxy
    assert store.get(asked) is None
    path = bottle_dir.approvals_dir / f"{asked}.json"
    path.write_text(json.dumps(answered.to_dict()))  # written back

    assert [r.id for r in config_seal.drop_unvouched_approvals("b1", bottle_dir)] == [asked]
    assert store.get(asked) is None
