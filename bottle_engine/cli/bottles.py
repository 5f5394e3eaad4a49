"""Bottle lifecycle commands: launch, attach, ls, stop, resume, logs, gc."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from rich.table import Table

from bottle_engine import lifecycle
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.audit import read_kept_audit
from bottle_engine.cli.output import (
    Subparsers,
    add_command,
    add_json_option,
    add_quiet_and_json_options,
    confirm,
    console,
    err_console,
    print_json,
)
from bottle_engine.cli.progress import cli_progress, paused
from bottle_engine.cli.trust import print_review
from bottle_engine.display import safe_lines, safe_markup
from bottle_engine.terminal import write_replay
from bottle_engine.trust_store import TrustReview

LAUNCH_HELP = """\
Launch AGENT in a new bottle: build or reuse its images (cached by input key), start the
bundle (egress proxy, git gate, approvals) and then the sandbox, and attach to it.

examples:
  bottle-engine launch dev                 launch and attach
  bottle-engine launch dev --detach        launch, print the slug, return
  bottle-engine -f examples/hello/bottle.toml launch hello   (or: launch -f ... hello)
  bottle-engine launch dev --trust         trust a changed manifest without asking (scripts)

A manifest that changed since its last launch in a way that widens what its bottles may do
(new hosts, secrets, git upstreams, host files read) stops the launch before anything is built:
in a terminal you are asked; otherwise the launch fails with the difference (exit 1). The first
launch of a manifest path records it. See `bottle-engine trust --help`.
"""


def register(subparsers: Subparsers) -> None:
    launch = add_command(
        subparsers,
        "launch",
        help="launch an agent in a new bottle",
        description=LAUNCH_HELP,
        run=run_launch,
        subject="agent",
    )
    launch.add_argument("-d", "--detach", action="store_true", help="do not attach")
    add_quiet_and_json_options(launch, json_help="print the bottle record as JSON")
    launch.add_argument(
        "--trust",
        action="store_true",
        help="trust the manifest as it is now, even if it widens what was trusted before",
    )

    add_command(
        subparsers,
        "attach",
        help="connect this terminal to a running bottle",
        description="Attach to SLUG's agent (interactive when stdin is a terminal). "
        "Exits with the agent's exit code.\n\nexample:\n  bottle-engine attach dev-1a2b3c",
        run=run_attach,
        subject="bottle",
    )

    exec_ = add_command(
        subparsers,
        "exec",
        help="run a command in a bottle as its agent",
        description="Run CMD in SLUG's sandbox as the agent user, in the workspace, with the "
        "agent's environment (its way out is the bundle, as for the agent). With a TTY when "
        "stdin is a terminal. Exits with CMD's exit code.\n\nexamples:\n"
        "  bottle-engine exec dev-1a2b3c -- bash\n"
        "  bottle-engine exec dev-1a2b3c -- git -C /workspace status",
        run=run_exec,
        subject="bottle",
    )
    exec_.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER)

    ls = add_command(
        subparsers,
        "ls",
        help="list bottles",
        description="List bottles and their status.\n\n"
        "examples:\n  bottle-engine ls\n  bottle-engine ls --json | jq '.[].slug'",
        run=run_ls,
    )
    add_json_option(ls)

    stop = add_command(
        subparsers,
        "stop",
        help="stop a bottle (and with --rm remove it)",
        description="Stop SLUG's agent and bundle. With --rm also remove its containers, "
        "networks and state (audit log included).\n\n"
        "example:\n  bottle-engine stop dev-1a2b3c --rm",
        run=run_stop,
        subject="bottle",
    )
    stop.add_argument("--rm", action="store_true", help="remove everything the bottle made")

    add_command(
        subparsers,
        "resume",
        help="start a stopped bottle again",
        description="Start SLUG's bundle, then its agent.\n\nexample:\n"
        "  bottle-engine resume dev-1a2b3c && bottle-engine attach dev-1a2b3c",
        run=run_resume,
        subject="bottle",
    )

    logs = add_command(
        subparsers,
        "logs",
        help="show a bottle's output or its egress audit log",
        description="Show the agent's output, the bundle's (--bundle) or the egress audit log "
        "(--egress: one JSON line per proxy decision).\n\nexamples:\n"
        "  bottle-engine logs dev-1a2b3c --egress -f",
        run=run_logs,
        subject="bottle",
    )
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--egress", action="store_true", help="the proxy's audit log")
    which.add_argument("--bundle", action="store_true", help="the bundle container's output")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    add_command(
        subparsers,
        "gc",
        help="remove orphaned containers and networks",
        description="Remove containers and networks labelled as bot-bottle's that no bottle "
        "record accounts for (left by a crash or a killed CLI). Launches and pool fills under "
        "way have no record yet: gc waits for them to finish.\n\nexample:\n"
        "  bottle-engine gc",
        run=run_gc,
    )


def run_launch(args: argparse.Namespace) -> int:
    with cli_progress(quiet=args.quiet or args.json) as progress:

        def confirm(review: TrustReview) -> bool:
            with paused(progress):
                return ask_to_trust(review)

        def first_use(review: TrustReview) -> None:
            if not (args.quiet or args.json):
                with paused(progress):
                    print_review(review)

        terminal = not args.detach and sys.stdin.isatty() and sys.stdout.isatty()
        record = lifecycle.launch(
            args.file,
            args.agent,
            progress=progress,
            terminal=terminal,
            trust=args.trust,
            confirm=confirm if sys.stdin.isatty() else None,
            on_first_use=first_use,
        )
    if args.json:
        print_json(record.to_json())
    elif args.detach or not sys.stdin.isatty():
        console.print(record.slug)
    if args.detach:
        return 0
    return lifecycle.attach(record.slug)


def ask_to_trust(review: TrustReview) -> bool:
    """In a terminal: show the difference and ask y/N (anything but yes declines)."""
    print_review(review)
    return confirm("Trust this manifest and launch?")


def run_attach(args: argparse.Namespace) -> int:
    return lifecycle.attach(args.slug)


def run_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    return lifecycle.exec_in(args.slug, command, tty=sys.stdin.isatty())


def run_ls(args: argparse.Namespace) -> int:
    bottles = lifecycle.list_bottles()
    if args.json:
        print_json([record.to_json() for record in bottles])
        return 0
    if not bottles:
        err_console.print("no bottles; start one with `bottle-engine launch AGENT`")
        return 0
    table = Table(box=None)
    for column in ("SLUG", "AGENT", "BACKEND", "STATUS", "STARTED", "BUNDLE IP"):
        table.add_column(column)
    for record in bottles:
        # Agent names come from a bottle.toml the agent may have written to: shown as text.
        table.add_row(
            *(
                safe_markup(value, cell=True)
                for value in (
                    record.slug,
                    record.agent,
                    record.backend,
                    record.status.text,
                    record.started_at,
                    record.bundle_ip,
                )
            )
        )
    console.print(table)
    for record in bottles:
        if record.fix:
            console.print(
                f"{safe_markup(record.slug)}: {safe_markup(record.status.text)}; "
                f"run `{safe_markup(record.fix)}`"
            )
    return 0


def run_stop(args: argparse.Namespace) -> int:
    lifecycle.stop(args.slug, remove=args.rm)
    return 0


def run_resume(args: argparse.Namespace) -> int:
    with cli_progress(quiet=False) as progress:
        lifecycle.resume(args.slug, progress)
    return 0


def run_logs(args: argparse.Namespace) -> int:
    record = lifecycle.find(args.slug)
    if args.egress:
        for line in _egress_lines(BottleDir.of(record.slug), follow=args.follow):
            sys.stdout.write(line)
            sys.stdout.flush()
        return 0
    chunks = lifecycle.logs(record.slug, bundle=args.bundle, follow=args.follow)
    if args.bundle:  # the bundle's own output names what the agent asked for: made safe
        for line in safe_lines(chunks):
            sys.stdout.write(line)
            sys.stdout.flush()
        return 0
    write_replay(chunks)  # the agent's own terminal stream, made safe as `attach` makes it
    return 0


def _egress_lines(bottle_dir: BottleDir, *, follow: bool) -> Iterator[str]:
    """The egress audit log from its oldest rotation on; then, with `follow`, what comes.

    The files are the bundle's (it writes the dir), so they are read with `read_kept_audit` (no
    symlink, FIFO or unbounded line) and each entry is printed as the JSON line we write, which
    escapes every control character: no byte of the bundle's reaches the terminal raw."""
    for entry in read_kept_audit(bottle_dir.egress_log, follow=follow):
        yield entry.to_json() + "\n"


def run_gc(args: argparse.Namespace) -> int:
    removed = lifecycle.gc(
        waiting=lambda: console.print("waiting for the launches under way to finish")
    )
    for name in removed:
        console.print(f"removed {safe_markup(name)}")
    if not removed:
        console.print("nothing to remove")
    return 0
