"""`bottle-engine doctor`: check this machine's set-up."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from bottle_engine.cli.output import Subparsers, add_command, add_json_option, console, print_json
from bottle_engine.doctor import run_checks

HELP = """\
Check what bottles need: a reachable Docker daemon (required), gVisor registered, the base
image present, debootstrap, smolvm and a usable /dev/kvm (for the smolmachines backend), and
writable cache/state dirs. Exit 1 when a required check fails.

example:
  bottle-engine doctor --json
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "doctor",
        help="check this machine's set-up",
        description=HELP,
        run=run,
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    checks = run_checks()
    if args.json:
        print_json([asdict(check) for check in checks])
    else:
        for check in checks:
            mark = (
                "[green]ok[/]  "
                if check.ok
                else ("[red]FAIL[/]" if check.required else "[yellow]warn[/]")
            )
            console.print(f"{mark} {check.name:<12} {check.detail}")
            if not check.ok and check.fix:
                console.print(f"      fix: {check.fix}", markup=False)
    return 1 if any(c.required and not c.ok for c in checks) else 0
