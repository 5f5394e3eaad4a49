"""The pure parts of egress asks (which refusals a person may overrule, what an approval still
checks) and `EgressAsker` against a real approval store, answered as the CLI answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bottle_engine.approvals import ApprovalLimits, ApprovalStore
from bottle_engine.bundle.audit import AuditEntry
from bottle_engine.bundle.egress_ask import AskAnswer, EgressAsker
from bottle_engine.bundle.egress_policy import (
    DEFAULT_DENY,
    EgressPolicy,
    decide,
    decide_approved,
    needs_ask,
)
from bottle_engine.errors import BottleError
from bottle_engine.manifest.egress_rules import parse_egress_rule


def policy(*allow: str, ask: bool = True) -> EgressPolicy:
    return EgressPolicy(
        rules=tuple(parse_egress_rule(entry) for entry in allow),
        own_addresses=frozenset({"10.243.0.2"}),
        bottle_name="dev",
        ask=ask,
    )


@pytest.mark.parametrize(
    ("host", "port", "asked"),
    [
        ("unlisted.example", 443, True),
        ("unlisted.example", 8080, True),
        ("203.0.113.7", 443, False),  # IP literals stay refused
        ("bad/name", 443, False),
        ("listed.example", 443, False),  # allowed anyway
    ],
)
def test_only_an_unlisted_host_name_is_asked_about(host: str, port: int, asked: bool) -> None:
    decision = decide(policy("listed.example"), host, port, "GET")
    assert needs_ask(policy("listed.example"), decision) is asked


def test_without_ask_nothing_is_asked_about() -> None:
    off = policy(ask=False)
    assert not needs_ask(off, decide(off, "unlisted.example", 443, "GET"))


@pytest.mark.parametrize(
    ("addresses", "allowed", "rule"),
    [
        (["93.184.215.14"], True, "approved:1a2b3c4d"),
        (["127.0.0.1"], False, "special-address"),
        (["10.1.2.3"], False, "special-address"),
        (["93.184.215.14", "192.168.1.1"], False, "special-address"),  # any bad address
        (["10.243.0.2"], False, "special-address"),  # the bundle itself
        ([], False, "unresolved"),
    ],
)
def test_an_approval_still_checks_every_address(
    addresses: list[str], allowed: bool, rule: str
) -> None:
    decision = decide_approved(
        policy(), "asked.example", 443, "CONNECT", addresses, "approved:1a2b3c4d"
    )
    assert (decision.allowed, decision.rule) == (allowed, rule)
    assert decision.asked is allowed


def test_a_cidr_rule_lifts_the_private_refusal_for_an_approved_name() -> None:
    decision = decide_approved(
        policy("10.1.2.0/24:443"), "internal.example", 443, "GET", ["10.1.2.3"], "approved:x"
    )
    assert decision.allowed and decision.address == "10.1.2.3" and decision.asked


def test_a_denial_says_how_to_allow_the_host() -> None:
    decision = decide(policy(), "unlisted.example", 8080, "GET")
    assert decision.rule == DEFAULT_DENY
    assert decision.fix and "unlisted.example:8080" in decision.fix


# --------------------------------------------------------------------------- the store


def store(tmp_path: Path, **limits: float) -> ApprovalStore:
    return ApprovalStore(tmp_path, "dev-1", ApprovalLimits(**limits))  # type: ignore[arg-type]


def test_asks_for_one_host_and_port_are_one_request_whatever_their_path(tmp_path: Path) -> None:
    approvals = store(tmp_path)
    first = approvals.open_egress_request("a.example", 443, "GET", "/one", 60)
    second = approvals.open_egress_request("a.example", 443, "POST", "/two", 60)
    other_port = approvals.open_egress_request("a.example", 8443, "GET", "/one", 60)

    assert second.id == first.id and second.path == "/one"
    assert other_port.id != first.id
    assert first.kind == "egress" and first.action == "egress: GET http://a.example:443/one"


def test_an_agents_own_request_never_joins_an_egress_ask(tmp_path: Path) -> None:
    approvals = store(tmp_path)
    ask = approvals.open_egress_request("a.example", 443, "CONNECT", None, 60)
    mimic = approvals.open_request("egress", "a.example:443", 60)
    assert mimic.id != ask.id and mimic.kind == "action"


def test_once_is_for_egress_asks_and_who_answered_is_kept(tmp_path: Path) -> None:
    approvals = store(tmp_path)
    action = approvals.open_request("deploy", "because", 60)
    with pytest.raises(BottleError, match="--once is for egress asks"):
        approvals.answer(action.id, True, None, once=True)
    ask = approvals.open_egress_request("a.example", 443, "CONNECT", None, 60)
    answered = approvals.answer(ask.id, True, None, once=True, by="cli (alice)")
    assert (answered.once, answered.answered_by) == (True, "cli (alice)")


def test_a_long_path_is_cut_for_the_person(tmp_path: Path) -> None:
    ask = store(tmp_path).open_egress_request("a.example", 80, "GET", "/" + "x" * 5000, 60)
    assert ask.path is not None and len(ask.path) == 1000


def test_a_cut_path_says_so_where_the_person_reads_it(tmp_path: Path) -> None:
    """A path of exactly what the person reads, then more (`?leak=...`): the action looked like
    a whole URL, and an answer --once let the longer request go."""
    shown = "/docs/" + "a" * 994
    ask = store(tmp_path).open_egress_request("a.example", 80, "GET", shown + "?leak=k3y", 60)
    assert ask.action.startswith(f"egress: GET http://a.example:80{shown}")
    assert ask.action.endswith("…[9 more characters cut by bot-bottle]")
    whole = store(tmp_path / "2").open_egress_request("a.example", 80, "GET", shown, 60)
    assert whole.action == f"egress: GET http://a.example:80{shown}"


# --------------------------------------------------------------------------- the asker


async def _answer_when_asked(
    approvals: ApprovalStore, host: str, approved: bool, once: bool
) -> str:
    while True:
        for request in approvals.all():
            if request.host == host and request.pending:
                approvals.answer(request.id, approved, None, once=once, by="test")
                return request.id
        await asyncio.sleep(0.02)


def test_approve_once_lets_the_shown_request_through_and_the_others_ask_again(
    tmp_path: Path,
) -> None:
    approvals = store(tmp_path)
    log: list[AuditEntry] = []
    asker = EgressAsker(approvals, 30, log.append, poll_seconds=0.02)

    async def scenario() -> tuple[bool, bool, str, str]:
        shown = asyncio.ensure_future(asker.ask("a.example", 443, "GET", "/shown"))
        await asyncio.sleep(0.05)
        joiner = asyncio.ensure_future(asker.ask("a.example", 443, "GET", "/joined"))
        first = await _answer_when_asked(approvals, "a.example", True, once=True)
        allowed = (await shown).allowed
        second = await _answer_when_asked(approvals, "a.example", False, once=True)
        return allowed, (await joiner).allowed, first, second

    shown_allowed, joiner_allowed, first, second = asyncio.run(scenario())
    assert shown_allowed and not joiner_allowed and first != second
    assert asker.standing_answer("a.example", 443) is None
    assert [(e.stage, e.decision) for e in log] == [
        ("asked", "ask"),
        ("answered", "allow"),
        ("asked", "ask"),
        ("answered", "deny"),
    ]


def test_an_answer_without_once_stands_and_asks_nobody_again(tmp_path: Path) -> None:
    approvals = store(tmp_path)
    asker = EgressAsker(approvals, 30, lambda entry: None, poll_seconds=0.02)

    async def scenario() -> None:
        asking = asyncio.ensure_future(asker.ask("A.example.", 80, "GET", "/"))
        await _answer_when_asked(approvals, "a.example", False, once=False)
        assert not (await asking).allowed
        again = await asker.ask("a.example", 80, "POST", "/other")
        assert again.rule == "ask-denied"

    asyncio.run(scenario())
    assert approvals.all() == []  # delivered and removed


def test_a_refusal_by_the_caps_is_an_answer_and_not_remembered(tmp_path: Path) -> None:
    approvals = store(tmp_path, burst=1, refill_seconds=3600)
    approvals.open_request("first", "uses the only token", 60)
    asker = EgressAsker(approvals, 30, lambda entry: None, poll_seconds=0.02)

    answer = asyncio.run(asker.ask("a.example", 443, "CONNECT", None))

    assert (answer.allowed, answer.rule) == (False, "ask-refused")
    assert asker.standing_answer("a.example", 443) is None


def test_a_hostile_path_reaches_the_editor_as_one_line_of_visible_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bottle_lsp.engine import Engine

    monkeypatch.setenv("BOTTLE_STATE_DIR", str(tmp_path))
    bottle = tmp_path / "bottles" / "dev-1"
    bottle.mkdir(parents=True)
    hostile = "/\x1b]52;c;ZWNobyBwd25lZA==\x07[run](command:workbench.action.terminal.new)\u202e"
    ApprovalStore(bottle, "dev-1").open_egress_request("a.example", 80, "GET", hostile, 60)

    (shown,) = Engine(lifecycle=None).pending_approvals()

    assert shown.egress and "\x1b" not in shown.summary and "\u202e" not in shown.summary
    assert "](" not in shown.summary and "\\x1b]52" in shown.summary


# --------------------------------------------------------------------------- across a restart


async def _settled(
    approvals: ApprovalStore, held: asyncio.Future[AskAnswer], old: str
) -> tuple[bool, str | None]:
    """The held request's fate: let through (True), or asked about anew as a request other
    than `old` (then denied --once, False, and the new request's id)."""
    while not held.done():
        for request in approvals.all():
            if request.pending and request.id != old:
                approvals.answer(request.id, False, None, once=True, by="test")
                return (await held).allowed, request.id
        await asyncio.sleep(0.02)
    return held.result().allowed, None


def test_an_answer_once_to_a_request_held_before_a_restart_lets_no_other_request_through(
    tmp_path: Path,
) -> None:
    """The old proxy held `GET /status` and its request is still open (the bundle was stopped
    and resumed, or crashed and restarted); the person approves it --once, as shown. The fresh
    proxy's held request to that host:port is another (`POST /upload`): the store's question is
    the host:port, so it waited on the shown request, and the answer let it go."""
    approvals = store(tmp_path)
    shown = approvals.open_egress_request("a.example", 80, "GET", "/status", 30)
    fresh = EgressAsker(approvals, 30, lambda entry: None, poll_seconds=0.02)

    async def scenario() -> tuple[bool, str | None]:
        held = asyncio.ensure_future(fresh.ask("a.example", 80, "POST", "/upload"))
        await asyncio.sleep(0.1)
        approvals.answer(shown.id, True, None, once=True, by="cli (alice)")  # what was shown
        return await _settled(approvals, held, shown.id)

    allowed, asked_again = asyncio.run(scenario())
    assert not allowed and asked_again is not None
    assert fresh.standing_answer("a.example", 80) is None


def test_an_answer_once_given_while_the_bundle_was_down_is_for_the_shown_request_only(
    tmp_path: Path,
) -> None:
    """Answered --once while no proxy ran (the request stays, an answer kept for a re-ask):
    it is for the request the person was shown, sent again, not for the first other request
    the fresh proxy holds for that host:port."""
    approvals = store(tmp_path)
    shown = approvals.open_egress_request("a.example", 80, "GET", "/status", 30)
    approvals.answer(shown.id, True, None, once=True, by="cli (alice)")
    fresh = EgressAsker(approvals, 30, lambda entry: None, poll_seconds=0.02)

    async def scenario() -> tuple[bool, str | None]:
        other = asyncio.ensure_future(fresh.ask("a.example", 80, "POST", "/upload"))
        return await _settled(approvals, other, shown.id)

    other_allowed, asked = asyncio.run(scenario())
    assert not other_allowed and asked is not None

    again = approvals.open_egress_request("a.example", 80, "GET", "/status", 30)
    approvals.answer(again.id, True, None, once=True, by="cli (alice)")
    sent_again = asyncio.run(fresh.ask("a.example", 80, "GET", "/status"))
    assert sent_again.allowed and sent_again.request_id == again.id


def test_an_answer_once_to_a_cut_path_is_not_for_another_tail(tmp_path: Path) -> None:
    """A held path over 1000 characters is shown cut, saying how many characters were left
    out. After a restart the fresh proxy held a request whose path began with the same 1000
    characters and went on otherwise (50,000 characters more, not the 24 the person was told
    of): it was taken for the one shown, and the answer --once let it go."""
    approvals = store(tmp_path)
    start = "/q?" + "a" * 997
    shown = approvals.open_egress_request("a.example", 80, "GET", start + "&page=2&size=10", 30)
    assert "…[15 more characters cut by bot-bottle]" in shown.action
    approvals.answer(shown.id, True, None, once=True, by="cli (alice)")
    fresh = EgressAsker(approvals, 30, lambda entry: None, poll_seconds=0.02)

    async def scenario() -> tuple[bool, str | None]:
        other = asyncio.ensure_future(
            fresh.ask("a.example", 80, "GET", start + "&d=" + "x" * 50_000)
        )
        return await _settled(approvals, other, shown.id)

    allowed, asked = asyncio.run(scenario())
    assert not allowed and asked is not None
