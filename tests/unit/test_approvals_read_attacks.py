"""A person's answer approves what the person read, not what the request file says later.

The approvals dir is the bundle's to write: a taken-over bundle rewrites a pending request
under the same id between the person's `bottle-engine approvals` (or the question `approve`
shows) and the answer. `approve ID` then approved, vouched for (so a `resume` keeps it for the
fresh bundle) and logged as the person's a request nobody was shown.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

from bottle_engine import config_seal, state
from bottle_engine.approvals import APPROVALS_DIR_NAME, ApprovalRequest, ApprovalStore
from bottle_engine.cli import main

HONEST = ("run the test suite", "to check my change")
HOSTILE = "git push --force origin main"


def _store(slug: str = "hostile") -> ApprovalStore:
    return ApprovalStore(state.bottle_dir(slug), slug)


def _rewrite(request: ApprovalRequest, slug: str = "hostile", **fields: object) -> None:
    """The bundle replaces the request's file with another question under the same id."""
    raw = {**request.to_dict(), "slug": slug, "action": HOSTILE, **fields}
    path = state.bottle_dir(slug) / APPROVALS_DIR_NAME / f"{request.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))


def _listed(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    assert main(["approvals", "--json"]) == 0
    return {str(r["id"]): r for r in json.loads(capsys.readouterr().out)}


def _unanswered(request: ApprovalRequest, slug: str = "hostile") -> None:
    still = _store(slug).get(request.id)
    assert still is not None and still.pending, "a request nobody read was answered"
    assert not config_seal.answers_path(slug).exists(), "an answer nobody gave was vouched for"


class _Terminal(io.StringIO):
    """The person's terminal: `on_read` runs while the prompt waits (the bundle's move)."""

    def __init__(self, typed: str, on_read: Callable[[], None] = lambda: None) -> None:
        super().__init__(typed)
        self.on_read = on_read

    def isatty(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:
        self.on_read()
        return super().readline(size)


def test_approve_off_a_terminal_without_what_was_read_answers_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A script (or a person piping) lists, the bundle rewrites, `approve ID` answers: it
    approved the force push. Off a terminal nothing was shown, so an approve names what was
    read (`--fingerprint`) or answers nothing, and the error shows the request as it is now."""
    request = _store().open_request(*HONEST, 3600)
    _listed(capsys)
    _rewrite(request)

    assert main(["approve", request.id]) == 1
    err = capsys.readouterr().err
    assert "--fingerprint" in err and HOSTILE in err
    _unanswered(request)


def test_a_rewritten_request_is_refused_by_the_fingerprint_the_listing_gave(
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = _store().open_request(*HONEST, 3600)
    fingerprint = str(_listed(capsys)[request.id]["fingerprint"])
    _rewrite(request)

    assert main(["approve", request.id, "--fingerprint", fingerprint]) == 1
    err = capsys.readouterr().err
    assert "no longer asks what was read" in err and "bottle-engine approvals" in err
    _unanswered(request)


def test_the_fingerprint_names_the_bottle_that_asked(capsys: pytest.CaptureFixture[str]) -> None:
    """Ids are per bottle: another bottle's bundle puts the same id and texts in its own dir
    once the request the person read has left; the fingerprint read was the other bottle's."""
    honest = ApprovalStore(state.bottle_dir("honest"), "honest")
    request = honest.open_request(*HONEST, 3600)
    fingerprint = str(_listed(capsys)[request.id]["fingerprint"])
    honest.answer(request.id, False, None)
    honest.mark_delivered(request.id)
    _rewrite(request, action=HONEST[0])  # the same texts, in the hostile bottle

    assert main(["approve", request.id, "--fingerprint", fingerprint]) == 1
    assert "no longer asks what was read" in capsys.readouterr().err
    _unanswered(request)


def test_approve_on_a_terminal_answers_what_it_showed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal `approve` shows the request and asks; the bundle rewrites the file while
    the person reads. The yes covers what was shown only."""
    request = _store().open_request(*HONEST, 3600)
    monkeypatch.setattr("sys.stdin", _Terminal("y\n", on_read=lambda: _rewrite(request)))

    assert main(["approve", request.id]) == 1
    err = capsys.readouterr().err
    assert HONEST[0] in err.split("Approve", 1)[0], "the prompt did not show the request"
    assert "no longer asks what was read" in err
    _unanswered(request)


def test_approve_on_a_terminal_approves_on_yes_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    request = _store().open_request(*HONEST, 3600)
    monkeypatch.setattr("sys.stdin", _Terminal("\n"))
    assert main(["approve", request.id]) == 1
    assert "nothing answered" in capsys.readouterr().err
    _unanswered(request)

    monkeypatch.setattr("sys.stdin", _Terminal("yes\n"))
    assert main(["approve", request.id]) == 0
    answered = _store().get(request.id)
    assert answered is not None and answered.approved


def test_a_fingerprint_read_is_enough_for_a_script(capsys: pytest.CaptureFixture[str]) -> None:
    request = _store().open_request(*HONEST, 3600)
    fingerprint = str(_listed(capsys)[request.id]["fingerprint"])

    assert main(["approve", request.id, "--fingerprint", fingerprint, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "approved"


def test_deny_grants_nothing_and_answers_without_a_fingerprint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    request = _store().open_request(*HONEST, 3600)

    assert main(["deny", request.id]) == 0
    denied = _store().get(request.id)
    assert denied is not None and denied.status == "denied"
