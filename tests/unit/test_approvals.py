"""The approvals store and the host-side API over every bottle's state dir."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bottle_engine import approvals, state
from bottle_engine.approvals import (
    AUDIT_LOG,
    ApprovalLimits,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    RateBucket,
    take_token,
)
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
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["fingerprint"]) == (request.id, request.fingerprint)
    assert (
        main(["approve", request.id, "--note", "fine", "--fingerprint", request.fingerprint]) == 0
    )
    assert request.id in capsys.readouterr().out
    assert main(["approvals", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["deny", request.id]) == 1
    assert "already answered" in capsys.readouterr().err


# -- limits: what a flooding agent gets ------------------------------------------------------------

SMALL = ApprovalLimits(max_pending=3, burst=5, refill_seconds=60, keep_answered_seconds=60)


def limited(limits: ApprovalLimits = SMALL) -> ApprovalStore:
    return ApprovalStore(state.bottle_dir("b1"), "b1", limits)


def request_files() -> list[str]:
    return sorted(p.name for p in (state.bottle_dir("b1") / "approvals").glob("[0-9a-f]*.json"))


@pytest.mark.parametrize(
    ("tokens", "at", "now", "allowed", "left"),
    [
        (None, 0.0, 100.0, True, 4.0),  # a new bottle starts with a full bucket
        (0.0, 100.0, 100.0, False, 0.0),  # empty: refused
        (0.0, 100.0, 130.0, False, 0.5),  # half refilled: still refused
        (0.0, 100.0, 160.0, True, 0.0),  # one refill period later: one more
        (0.0, 100.0, 10_000.0, True, 4.0),  # refills up to the burst, no further
        (2.0, 100.0, 50.0, True, 1.0),  # a clock that went back refills nothing
    ],
)
def test_the_rate_bucket(
    tokens: float | None, at: float, now: float, allowed: bool, left: float
) -> None:
    bucket = None if tokens is None else RateBucket(tokens, at)

    after, wait = take_token(bucket, now, SMALL)

    assert (wait == 0.0) is allowed
    assert after.tokens == pytest.approx(left)
    if not allowed:
        assert wait == pytest.approx((1 - left) * SMALL.refill_seconds)


def test_requests_beyond_the_pending_cap_are_refused_and_leave_nothing() -> None:
    opened = [limited().open_request(f"a{n}", "r", 60) for n in range(3)]
    log_before = (state.bottle_dir("b1") / AUDIT_LOG).read_text()

    with pytest.raises(ApprovalRefused, match="3 approval requests of bottle b1 are already"):
        limited().open_request("a3", "r", 60)

    assert request_files() == sorted(f"{r.id}.json" for r in opened)
    assert (state.bottle_dir("b1") / AUDIT_LOG).read_text() == log_before


def test_asking_an_open_question_again_is_not_a_new_request_even_at_the_cap() -> None:
    first = limited().open_request("a0", "r", 60)
    for n in range(1, 3):
        limited().open_request(f"a{n}", "r", 60)

    assert limited().open_request("a0", "r", 60).id == first.id


def test_an_answered_request_frees_its_place_under_the_cap() -> None:
    first = limited().open_request("a0", "r", 60)
    for n in range(1, 3):
        limited().open_request(f"a{n}", "r", 60)
    limited().answer(first.id, approved=False, note=None)

    assert limited().open_request("a3", "r", 60).pending


def test_expired_requests_time_out_and_stale_answers_are_pruned_when_the_cap_is_reached() -> None:
    expired = limited().open_request("old", "r", timeout_seconds=0)
    answered = limited().open_request("answered", "r", 60)
    limited().answer(answered.id, approved=True, note=None)
    limited().open_request("waiting", "r", 60)

    # Nothing stale yet: the expired one times out, the answer is kept for a re-ask.
    limited().open_request("new", "r", 60)
    assert limited().get(expired.id).status == "timed_out"  # type: ignore[union-attr]
    assert limited().get(answered.id) is not None

    # Once answers are older than keep_answered_seconds, the sweep removes them.
    impatient = replace(SMALL, keep_answered_seconds=0)
    limited(impatient).open_request("newer", "r", 60)
    assert limited().get(expired.id) is None and limited().get(answered.id) is None
    log = [
        json.loads(line) for line in (state.bottle_dir("b1") / AUDIT_LOG).read_text().splitlines()
    ]
    assert {e["id"] for e in log if e["event"] == "pruned"} == {expired.id, answered.id}


def test_the_rate_refuses_the_request_after_the_burst() -> None:
    store = limited(replace(SMALL, max_pending=100))
    for n in range(SMALL.burst):
        store.open_request(f"a{n}", "r", 60)

    with pytest.raises(ApprovalRefused, match="too often") as refused:
        store.open_request("one more", "r", 60)
    assert 0 < refused.value.retry_after_seconds <= SMALL.refill_seconds
    assert len(request_files()) == SMALL.burst


def test_opening_a_request_reads_no_earlier_request(monkeypatch: pytest.MonkeyPatch) -> None:
    store = limited(replace(SMALL, max_pending=1000, burst=1000))
    for n in range(50):
        store.open_request(f"a{n}", "r", 60)
    reads: list[Path] = []
    real_read = ApprovalStore._read

    def counting_read(self: ApprovalStore, path: Path) -> ApprovalRequest | None:
        reads.append(path)
        return real_read(self, path)

    monkeypatch.setattr(ApprovalStore, "_read", counting_read)
    store.open_request("a-new-one", "r", 60)
    store.open_request("a7", "r", 60)  # a re-ask: found through the index

    assert len(reads) == 1


def test_the_delivered_answer_leaves_the_store_and_a_second_waiter_still_gets_it() -> None:
    request = store().open_request("deploy", "release", 60)
    store_in_bundle = store()
    store().answer(request.id, approved=True, note=None)

    first = store_in_bundle.mark_delivered(request.id)
    second = store_in_bundle.mark_delivered(request.id)

    assert first == second and first.approved and first.delivered
    assert store().get(request.id) is None
    assert store().open_request("deploy", "release", 60).id != request.id


def test_the_audit_log_is_rotated_at_its_size_cap() -> None:
    small_log = replace(SMALL, audit_log_max_bytes=2000, max_pending=100, burst=100)
    for n in range(20):
        limited(small_log).open_request(f"action {n}", "r" * 200, 60)

    log = state.bottle_dir("b1") / AUDIT_LOG
    old = log.with_name(AUDIT_LOG + ".1")
    assert log.stat().st_size <= 2000 and old.stat().st_size <= 2000
    assert json.loads(log.read_text().splitlines()[-1])["action"] == "action 19"


def test_answering_a_request_that_left_the_store_says_how_it_ended() -> None:
    request = store().open_request("deploy", "release", 60)
    approvals.answer(request.id, approved=False)
    store().mark_delivered(request.id)

    with pytest.raises(BottleError, match="has ended: denied, and the agent has the answer"):
        approvals.answer(request.id, approved=True)


def test_asking_an_open_question_again_and_again_does_not_wash_out_the_audit_log() -> None:
    """Asking an open question again takes no place under the caps, but each time wrote the
    whole request into approvals.jsonl: an agent re-asking one 4,000-character question 700
    times (about 24 KB a line as JSON) pushed every earlier request and the person's answer out
    of both generations of the log. A re-ask is logged only while the rate allows a request."""
    limits = ApprovalLimits(audit_log_max_bytes=256 * 1024)
    asked = limited(limits).open_request("deploy to production", "release", 3600)
    answered = limited(limits).answer(asked.id, True, None)
    limited(limits).mark_delivered(answered.id)

    texts = ("\u00e9" * 2000, "\u00e8" * 2000)
    first = limited(limits).open_request(*texts, 3600)
    for _ in range(100):
        assert limited(limits).open_request(*texts, 3600).id == first.id

    kept = limited(limits).history(asked.id)
    assert kept is not None and kept.approved and kept.delivered
