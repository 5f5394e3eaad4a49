"""An ask no person can read: the agent makes the proxy write approval requests the store skips.

A plain-HTTP request's method is any HTTP token, of any length the 64 KiB request head allows.
The proxy asked about `<40,000 letters> http://unlisted.example/`: the store wrote a request
file larger than it reads (`MAX_REQUEST_FILE_BYTES`), so no listing showed it, no sweep counted
or pruned it, and the held request failed once it could not be read back. Each ask left one more
such file behind (about 120 KiB, one per rate token): past `MAX_OPEN_REQUEST_FILES` the host
reads none of the bottle's requests, and the person's listing and editor stopped showing its
real asks and told the person the bundle had been taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from bottle_engine.approvals import (
    MAX_OPEN_REQUEST_FILES,
    ApprovalLimits,
    ApprovalRefused,
    ApprovalStore,
)
from bottle_engine.bundle.audit import AuditEntry
from bottle_engine.bundle.egress_ask import EgressAsker
from bottle_engine.bundle.egress_policy import MALFORMED_REQUEST_LINE, check_request_line
from bottle_engine.errors import BottleError

HUGE_METHOD = "A" * 40_000  # an HTTP token, within the proxy's 64 KiB request head


def _store(tmp_path: Path) -> ApprovalStore:
    # No rate: the flood below is what an agent gets to in a few hours at the default rate.
    limits = ApprovalLimits(burst=10_000, refill_seconds=0.001)
    return ApprovalStore(tmp_path, "dev-1", limits)


def _unreadable(approvals: ApprovalStore) -> list[str]:
    """Request files in the store that it cannot read back (nobody is ever shown them)."""
    names = [path.stem for path in approvals.directory.glob("[0-9a-f]*.json")]
    return [name for name in names if approvals.get(name) is None]


def test_a_request_line_with_a_method_longer_than_any_is_refused_before_anyone_is_asked() -> None:
    refused = check_request_line(HUGE_METHOD.encode(), b"/")
    assert refused is not None and refused.rule == MALFORMED_REQUEST_LINE
    assert check_request_line(b"PROPFIND", b"/") is None


def test_an_ask_about_a_huge_method_leaves_no_request_nobody_can_read(tmp_path: Path) -> None:
    approvals = _store(tmp_path)
    log: list[AuditEntry] = []
    asker = EgressAsker(approvals, 0.2, log.append, poll_seconds=0.01)

    with contextlib.suppress(BottleError):
        answer = asyncio.run(asker.ask("huge.example", 80, HUGE_METHOD, "/"))
        assert not answer.allowed
    assert _unreadable(approvals) == []


def test_asks_nobody_can_read_do_not_blank_the_persons_listing(tmp_path: Path) -> None:
    approvals = _store(tmp_path)
    for index in range(MAX_OPEN_REQUEST_FILES + 1):
        with contextlib.suppress(ApprovalRefused):
            approvals.open_egress_request(f"h{index}.example", 80, HUGE_METHOD, "/", 600)
    honest = approvals.open_egress_request("docs.example", 443, "CONNECT", None, 600)

    assert [request.id for request in approvals.all()] == [honest.id]
