"""The Egress view's fold of an audit log, the Allow edit, and which bottles count as running."""

from __future__ import annotations

import tomllib

import pytest

from bottle_engine.approvals import egress_question
from bottle_engine.errors import BottleError
from bottle_lsp.allow_edit import line_edit, with_allowed
from bottle_lsp.egress_view import aggregate, allow_entry
from bottle_lsp.lenses import bottle_state, is_running
from tests.audit_entries import audit_entry as entry


def test_rows_count_requests_and_bytes_per_host_and_decision() -> None:
    activity = aggregate(
        [
            entry("api.example", bytes_sent=10, bytes_received=90),
            entry("API.example.", bytes_received=100, time="2026-11-30T04:00:05.000+00:00"),
            entry("stranger.test", "deny", reason="not on the egress allowlist"),
            entry("stranger.test", "deny", time="2026-11-30T04:00:09.000+00:00"),
        ]
    )
    rows = {(r.decision, r.host): r for r in activity.sorted_rows()}
    allowed = rows[("allow", "api.example")]
    assert (allowed.count, allowed.bytes, allowed.last) == (2, 200, "2026-11-30T04:00:05.000+00:00")
    denied = rows[("deny", "stranger.test")]
    assert (denied.count, denied.rule, denied.allow_entry) == (2, "default-deny", "stranger.test")
    assert (activity.denied, activity.allowed) == (2, 2)
    assert [r.decision for r in activity.sorted_rows()] == ["deny", "allow"]


def test_a_tunnel_is_one_request_whose_bytes_come_with_its_close() -> None:
    activity = aggregate(
        [
            entry("up.test", kind="tunnel", stage="open"),
            entry("up.test", kind="tunnel", stage="close", bytes_sent=5, bytes_received=7),
        ]
    )
    (row,) = activity.sorted_rows()
    assert (row.count, row.bytes, activity.allowed) == (1, 12, 1)


def test_a_row_offers_no_ask_whose_request_is_about_another_destination() -> None:
    """The bundle logs an ask for one host under the id of a request about another: the row
    would offer Approve for a destination it does not show."""
    activity = aggregate([entry("docs.test", "ask", kind="ask", stage="asked", request_id="r1")])
    pending = {"r1": egress_question("collector.test", 443)}
    assert activity.to_json(pending)["hosts"][0]["pending"] == []
    assert activity.to_json({"r1": egress_question("docs.test", 443)})["hosts"][0]["pending"]


def test_an_ask_is_pending_until_answered_and_the_picture_drops_asks_answered_elsewhere() -> None:
    asked = entry("new.test", "ask", kind="ask", stage="asked", request_id="r1", rule="ask")
    activity = aggregate(
        [asked, entry("new.test", "ask", kind="ask", stage="asked", request_id="r2")]
    )
    (row,) = activity.sorted_rows()
    assert (row.decision, row.count) == ("ask", 2)
    question = egress_question("new.test", 443)
    assert activity.to_json({"r1": question, "r2": question})["hosts"][0]["pending"] == [
        "r1",
        "r2",
    ]
    # r2 was answered from the CLI: the approvals store no longer has it pending.
    assert activity.to_json({"r1": question})["hosts"][0]["pending"] == ["r1"]
    activity.add(
        entry(
            "new.test",
            "deny",
            kind="ask",
            stage="answered",
            request_id="r1",
            rule="ask-denied",
            answered_by="editor (me)",
        )
    )
    assert row.reason.startswith("deny (by editor (me))")
    assert activity.denied == 0  # the refused request's own entry counts it


def test_only_a_refused_host_name_offers_allow() -> None:
    rows = aggregate(
        [
            entry("10.0.0.1", "deny", rule="ip-literal"),
            entry("up.test", "deny", rule="special-address"),
            entry("odd.test", "deny", port=8443),
            entry("ok.test"),
        ]
    ).sorted_rows()
    offers = {r.host: r.allow_entry for r in rows}
    assert offers == {
        "10.0.0.1": None,
        "up.test": None,
        "odd.test": "odd.test:8443",
        "ok.test": None,
    }


@pytest.mark.parametrize(
    "host", ["*.example.com", "10.0.0.0/8", "a b", 'evil"]\nsecrets = 1', "x" * 300, "1.2.3.4", ""]
)
def test_agent_chosen_names_that_are_not_exact_hosts_cannot_be_allowed(host: str) -> None:
    assert allow_entry(host, 443) is None
    with pytest.raises(BottleError):
        with_allowed("[bottles.web]\n", "web", host)


def test_an_agent_inventing_hosts_cannot_grow_the_view_past_its_bound() -> None:
    activity = aggregate((entry(f"h{i}.test", "deny") for i in range(50)), max_rows=10)
    assert len(activity.rows) == 10 and activity.hidden == 40 and activity.denied == 50


def test_hostile_text_in_the_log_reaches_the_editor_escaped() -> None:
    activity = aggregate([entry("x.test", "deny", reason="\x1b]52;c;AAAA\x07 [go](command:x)")])
    shown = activity.to_json()["hosts"][0]["reason"]
    assert "\x1b" not in shown and "](command" not in shown and "\\x1b" in shown


MANIFEST = """\
# the team's bottle
[bottles.web]
backend = "docker"  # keep me

[bottles.web.egress]
allow = [
    "api.example.com",  # the API
]

[bottles.other]
memory = "1g"
"""


def test_allow_appends_to_the_right_bottle_keeping_comments_and_layout() -> None:
    new = with_allowed(MANIFEST, "web", "stranger.test")
    assert new is not None
    assert new == MANIFEST.replace("the API\n", 'the API\n    "stranger.test",\n')
    assert tomllib.loads(new)["bottles"]["web"]["egress"]["allow"][-1] == "stranger.test"
    change = line_edit(MANIFEST, new)
    assert (change.start, change.end, change.text) == (7, 7, '    "stranger.test",\n')
    assert with_allowed(new, "web", "Stranger.test") is None  # already there


def test_allow_adds_the_egress_table_when_the_bottle_has_none() -> None:
    new = with_allowed(MANIFEST, "other", "up.test:8443")
    assert new is not None and new.startswith(MANIFEST)
    assert tomllib.loads(new)["bottles"]["other"]["egress"]["allow"] == ["up.test:8443"]


def test_allow_names_a_bottle_the_manifest_no_longer_has() -> None:
    with pytest.raises(BottleError, match=r"no \[bottles\.gone\]"):
        with_allowed(MANIFEST, "gone", "up.test")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("running", "running"),
        ("degraded: bundle gone", "degraded"),
        ("degraded: bundle down", "degraded"),
        ("exited, degraded: bundle gone", "degraded"),
        ("stopped", "stopped"),
        ("exited", "stopped"),
        ("missing", "stopped"),
        ("unknown", "stopped"),
    ],
)
def test_only_a_running_bottle_is_running(status: str, state: str) -> None:
    assert bottle_state(status) == state
    assert is_running({"status": status}) == (state == "running")
