"""`bottle-engine trust`: show how a manifest differs from what was last trusted, and trust it."""

from __future__ import annotations

import argparse

from bottle_engine.cli.output import (
    Subparsers,
    add_command,
    add_json_option,
    add_manifest_option,
    console,
    err_console,
    print_json,
)
from bottle_engine.display import safe_markup
from bottle_engine.manifest import load_manifest
from bottle_engine.trust_store import TrustReview, record, review

HELP = """\
A bottle.toml decides what leaves its bottles: allowed hosts, which host files become secrets
and where their values go, which identity pushes where. `launch` remembers, per manifest path,
what it last launched with, and refuses a changed manifest that widens any of that until you
trust it. This command shows the difference (widening lines marked +, narrowing -) and records
the manifest as trusted.

examples:
  bottle-engine trust                     review and trust ./bottle.toml (or a parent's)
  bottle-engine trust -f repo/bottle.toml --dry-run    only show the difference
  bottle-engine trust --json              the difference as JSON, then trust

exit codes: 0 trusted (or, with --dry-run, nothing needs trust), 1 with --dry-run when the
manifest needs trust, or on errors.
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "trust",
        help="review a changed manifest and trust it",
        description=HELP,
        run=run,
    )
    add_manifest_option(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="show the difference, record nothing"
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    reviewed = review(load_manifest(args.file))
    if not args.dry_run:
        record(reviewed)
    if args.json:
        print_json({**reviewed.to_json(), "recorded": not args.dry_run})
    else:
        print_review(reviewed)
        if not args.dry_run:
            console.print(f"trusted {safe_markup(reviewed.manifest)}")
    return 1 if args.dry_run and reviewed.needs_trust else 0


def print_review(reviewed: TrustReview) -> None:
    """The difference, on stderr: widening lines marked +, narrowing ones -."""
    if reviewed.unreadable_record:
        why = safe_markup(reviewed.unreadable_record)
        err_console.print(
            f"[yellow]the trust record could not be read ({why}); everything is shown as new[/]"
        )
    if reviewed.first_use:
        err_console.print(f"{safe_markup(reviewed.manifest)} has not been trusted before; it says:")
    elif not reviewed.changes:
        err_console.print(f"{safe_markup(reviewed.manifest)}: no change since it was last trusted")
    else:
        err_console.print(f"{safe_markup(reviewed.manifest)} changed since it was last trusted:")
    for change in reviewed.changes:
        mark = "[bold red]+[/]" if change.widening else "[green]-[/]"
        err_console.print(f"  {mark} {safe_markup(change.text)}")
    for line in reviewed.unreviewed:
        err_console.print(f"  [yellow]{safe_markup(line)}[/]")
