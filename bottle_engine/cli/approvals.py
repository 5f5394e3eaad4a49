"""`bottle-engine approvals`, `approve`, `deny`: answer the agents' approval requests.

Two kinds: `action` (the agent asked through the supervise tool) and `egress` (the bundle's
proxy holds a request to a host no egress rule allows, with `[egress] ask = true`). An egress
answer stands for its host:port until the bottle stops, or with `--once` for the held request
only.

`approve` answers what the person read: the bottle's bundle can rewrite a request file under
the same id after it was listed. In a terminal it shows the request and asks y/N, then answers
with the fingerprint of what it showed; off a terminal it needs `--fingerprint` (from
`approvals --json`); the store refuses either once the request says anything else.

Every text here comes from a bottle (the agent wrote the action and reason): it is printed only
through `safe_markup`, one line per field, so escape sequences, forged rows, bidi overrides and
rich markup show as what they are. `--json` output is escaped by JSON itself (ASCII only).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime, timedelta

from rich.table import Table

from bottle_engine import approvals
from bottle_engine.cli.output import (
    Subparsers,
    add_command,
    add_json_option,
    confirm,
    console,
    err_console,
    print_json,
    safe_lines,
)
from bottle_engine.display import safe_markup
from bottle_engine.errors import BottleError

LIST_EXAMPLES = """\
examples:
  bottle-engine approvals                 requests waiting for an answer, in every bottle
  bottle-engine approvals my-bottle --all every request of one bottle, answered ones too
  bottle-engine approvals --json          the same as JSON, for scripts

Answered requests leave the list once the agent has the answer; every request and answer stays
in the bottle's approvals.jsonl (its state dir).
"""

ANSWER_EXAMPLES = """\
examples:
  bottle-engine approve 3f9a1c2e          shows the request, then asks y/N
  bottle-engine approve 5b0d44a1 --once   an egress ask: this request only, ask again next time
  bottle-engine approve 3f9a1c2e --fingerprint FP   a script: FP from `approvals --json`
  bottle-engine deny 3f9a1c2e --note "use the staging database instead"

`approve` answers what the person read, never what the request file says by then (the
bottle's bundle can write it): in a terminal it shows the request and asks, then answers the
request shown; elsewhere it needs --fingerprint, the `fingerprint` that `approvals --json`
gives of the request read, and answers nothing without it. Either way the answer is refused
if the request asks anything else by then. `deny` grants nothing, so it answers at once
(with --fingerprint, only the request read).
"""


def register(subparsers: Subparsers) -> None:
    listing = add_command(
        subparsers,
        "approvals",
        help="list the agents' approval requests",
        description="List approval requests (from the request_approval tool of supervised "
        "bottles). Pending ones by default.",
        run=run_list,
        epilog=LIST_EXAMPLES,
    )
    listing.add_argument("slug", nargs="?", metavar="SLUG", help="only this bottle")
    listing.add_argument(
        "--all", action="store_true", help="answered requests the agent has not picked up too"
    )
    add_json_option(listing, help="print JSON")
    for name, approved in (("approve", True), ("deny", False)):
        parser = add_command(
            subparsers,
            name,
            help=f"{name} an agent's approval request",
            description=f"{name.capitalize()} a pending approval request; the agent waiting "
            "on it gets the answer (and the note) at once.",
            run=run_answer,
            epilog=ANSWER_EXAMPLES,
        )
        parser.add_argument("request_id", metavar="ID", help="the id `approvals` shows")
        parser.add_argument(
            "--once",
            action="store_true",
            help="an egress ask: answer for the held request only (without it, the answer "
            "stands for that host:port until the bottle stops)",
        )
        parser.add_argument("--note", help="a note the agent receives with the answer")
        parser.add_argument(
            "--fingerprint",
            metavar="FP",
            help="the `fingerprint` `approvals --json` gives of the request read: answer only "
            "that (needed to approve off a terminal)",
        )
        parser.add_argument("--bottle", metavar="SLUG", help="the bottle (when ids collide)")
        add_json_option(parser, help="print the answered request")
        parser.set_defaults(approved=approved)


def run_list(args: argparse.Namespace) -> int:
    problems: list[BottleError] = []
    requests = approvals.list_requests(args.slug, pending_only=not args.all, problems=problems)
    for problem in problems:
        err_console.print(f"[bold yellow]warning:[/] {safe_lines(problem.message)}")
        if problem.fix:
            err_console.print(f"  [bold]fix:[/] {safe_lines(problem.fix)}")
    if args.json:
        print_json(
            [{**request.to_dict(), "fingerprint": request.fingerprint} for request in requests]
        )
        return 0
    if not requests:
        console.print("no approval requests" + ("" if args.all else " waiting for an answer"))
        return 0
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "BOTTLE", "KIND", "STATUS", "ASKED", "TIMES OUT"):
        table.add_column(column, no_wrap=True)
    for column in ("ACTION", "REASON"):
        table.add_column(column, overflow="fold")
    now = datetime.now(UTC)
    for request in requests:
        table.add_row(
            safe_markup(request.id, cell=True),
            safe_markup(request.slug, cell=True),
            safe_markup(request.kind, cell=True),
            safe_markup(request.status + (" once" if request.once else ""), cell=True),
            _span(now - datetime.fromisoformat(request.created_at)) + " ago",
            "in " + _span(datetime.fromisoformat(request.expires_at) - now)
            if request.pending
            else "-",
            safe_markup(request.action, cell=True),
            safe_markup(request.reason, cell=True),
        )
    console.print(table)
    return 0


def _who() -> str:
    """The account answering, for the audit logs (a uid where the name service knows none)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def run_answer(args: argparse.Namespace) -> int:
    fingerprint = args.fingerprint
    if args.approved and fingerprint is None:
        _, shown = approvals.find(args.request_id, args.bottle)
        _show(shown, once=args.once)
        if not sys.stdin.isatty():
            raise BottleError(
                f"approval request {shown.id} was not approved: off a terminal `approve` "
                "answers only the request --fingerprint names (the bottle's bundle can "
                "rewrite a request between its reading and the answer)",
                fix="if the request above (or in `bottle-engine approvals --json`) is the one "
                f"to approve: `bottle-engine approve {shown.id} --fingerprint "
                f"{shown.fingerprint}`",
            )
        if not confirm("Approve this request?"):
            raise BottleError(f"approval request {shown.id}: nothing answered")
        fingerprint = shown.fingerprint
    request = approvals.answer(
        args.request_id,
        args.approved,
        args.note,
        slug=args.bottle,
        once=args.once,
        by=f"cli ({_who()})",
        fingerprint=fingerprint,
    )
    if args.json:
        print_json(request.to_dict())
    else:
        console.print(
            f"{safe_markup(request.id)} {safe_markup(request.status)}: "
            f"{safe_markup(request.action)}"
        )
    return 0


def _show(request: approvals.ApprovalRequest, *, once: bool) -> None:
    """The request as `approve` is about to answer it, on stderr, one line per field."""
    err_console.print(
        f"approval request {safe_markup(request.id)} of bottle {safe_markup(request.slug)} "
        f"({safe_markup(request.kind)}, {safe_markup(request.status)}):"
    )
    err_console.print(f"  action:      {safe_markup(request.action)}")
    err_console.print(f"  reason:      {safe_markup(request.reason)}")
    if request.kind == "egress":
        scope = f"for {approvals.once_scope(request.method)}" if once else "until the bottle stops"
        where = safe_markup(f"{request.host}:{request.port}")
        err_console.print(f"  approving:   lets the bottle reach {where} {scope}")
    err_console.print(f"  fingerprint: {request.fingerprint}")
