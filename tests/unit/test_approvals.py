"""The approvals store and the host-side API over every bottle's state dir."""

from __future__ import annotations

import json

import pytest

from bottle_engine import approvals, state
from bottle_engine.approvals import ApprovalStore
from bottle_engine.cli import main
from bottle_engine.errors import BottleError


def store(slug: str = "b1") -> ApprovalStore:
    return ApprovalStore(state.bottle_dir(slug), slug)


def test_a_new_request_is_pending_and_kept_as_a_file() -> None:
    request = store().open_request("push to main", "release", timeout_seconds=60)

    assert request.pending
    saved = json.loads((state.bottle_dir("b1") / "approvals" / f"{request.id}.json").read_text())
    assert (saved["action"], saved["status"]) == ("push to main", "pending")


def test_asking_the_same_question_again_returns_the_same_request() -> None:
    first = store().open_request("push", "why", 60)

    assert store().open_request("push", "why", 60).id == first.id
    assert store().open_request("push", "another reason", 60).id != first.id


def test_once_delivered_the_same_question_makes_a_new_request() -> None:
    first = store().open_request("push", "why", 60)
    store().answer(first.id, True, None)
    store().mark_delivered(first.id)

    assert store().open_request("push", "why", 60).id != first.id


def test_answer_approves_by_id_across_bottles_with_a_note() -> None:
    request = store("b2").open_request("deploy", "release", 60)
    store("b1").open_request("other", "x", 60)

    answered = approvals.answer(request.id, approved=True, note="go ahead")

    assert (answered.status, answered.note, answered.slug) == ("approved", "go ahead", "b2")
    assert store("b2").get(request.id) == answered


def test_an_answered_request_cannot_be_answered_again() -> None:
    request = store().open_request("deploy", "release", 60)
    approvals.answer(request.id, approved=False)

    with pytest.raises(BottleError, match="already answered: denied"):
        approvals.answer(request.id, approved=True)


def test_an_expired_request_counts_as_timed_out_and_refuses_an_answer() -> None:
    request = store().open_request("deploy", "release", timeout_seconds=0)

    assert [r.status for r in approvals.list_requests()] == ["timed_out"]
    with pytest.raises(BottleError, match="timed out"):
        approvals.answer(request.id, approved=True)
    assert store().get(request.id).status == "timed_out"  # type: ignore[union-attr]


def test_unknown_ids_and_bottles_are_named_in_the_error() -> None:
    store().open_request("a", "b", 60)

    with pytest.raises(BottleError, match="no approval request 'nope'"):
        approvals.answer("nope", approved=True)
    with pytest.raises(BottleError, match="no approval request"):
        approvals.answer("../../b1/approvals/x", approved=True)
    with pytest.raises(BottleError, match="no bottle 'ghost'"):
        approvals.list_requests("ghost")


def test_pending_only_hides_answered_requests() -> None:
    kept = store().open_request("a", "b", 60)
    answered = store().open_request("c", "d", 60)
    approvals.answer(answered.id, approved=True)

    assert [r.id for r in approvals.list_requests(pending_only=True)] == [kept.id]
    assert {r.id for r in approvals.list_requests()} == {kept.id, answered.id}


def test_every_change_is_appended_to_the_audit_log() -> None:
    request = store().open_request("a", "b", 60)
    approvals.answer(request.id, approved=True, note="ok")
    store().mark_delivered(request.id)

    lines = (state.bottle_dir("b1") / "approvals.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["requested", "answered", "delivered"]


def test_no_state_dir_yet_means_no_requests() -> None:
    assert approvals.list_requests() == []


def test_cli_approve_and_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    request = store().open_request("deploy", "release", 60)

    assert main(["approvals", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [request.id]
    assert main(["approve", request.id, "--note", "fine"]) == 0
    assert request.id in capsys.readouterr().out
    assert main(["approvals", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["deny", request.id]) == 1
    assert "already answered" in capsys.readouterr().err
