"""`bottle-engine pool status|fill|drain`: warm gateways, so that a launch starts only its agent."""

from __future__ import annotations

import argparse

from rich.table import Table

from bottle_engine import lifecycle
from bottle_engine.cli.output import (
    Subparsers,
    add_action,
    add_command_group,
    add_json_option,
    add_manifest_option,
    add_quiet_and_json_options,
    console,
    print_json,
)
from bottle_engine.cli.progress import cli_progress
from bottle_engine.display import safe_markup

HELP = """\
A warm pool member is a bottle's gateway started ahead of time: its bundle container (egress
proxy, git gate, approvals: loaded, serving nothing) and its two networks. A launch whose bottle
matches a free member (same bundle image, runtime, size, egress network) takes it, hands it the
bottle's configuration and starts only the agent; otherwise it launches cold. A member serves
one bottle and never returns to the pool; `stop --rm` removes it with its bottle.

examples:
  bottle-engine pool fill 2 dev            two warm gateways for agent 'dev' of ./bottle.toml
  bottle-engine pool status --json
  bottle-engine pool drain                 remove every member no bottle uses
"""


def register(subparsers: Subparsers) -> None:
    actions = add_command_group(
        subparsers,
        "pool",
        help="warm gateways for fast launches",
        description=HELP,
    )
    status = add_action(actions, "status", help="list the members and their state", run=run_status)
    add_json_option(status)
    fill = add_action(
        actions, "fill", help="start N more warm gateways for AGENT's bottle", run=run_fill
    )
    add_manifest_option(fill)
    fill.add_argument("count", metavar="N", type=int)
    fill.add_argument("agent", metavar="AGENT")
    fill.add_argument(
        "--up-to",
        action="store_true",
        help="make only as many as it takes for N free members of this kind (none when enough)",
    )
    add_quiet_and_json_options(fill)
    drain = add_action(actions, "drain", help="remove every member no bottle uses", run=run_drain)
    add_json_option(drain)


def run_status(args: argparse.Namespace) -> int:
    members = lifecycle.pool_members()
    if args.json:
        print_json(
            [
                {
                    "id": member.id,
                    "state": where,
                    "subnet": member.subnet,
                    "key": member.key.digest,
                    "bundle_image": member.key.bundle_image,
                    "runtime": member.key.runtime or None,
                    "memory_bytes": member.key.memory_bytes,
                }
                for where, member in members
            ]
        )
        return 0
    if not members:
        console.print("the pool is empty (`bottle-engine pool fill N AGENT`)")
        return 0
    table = Table("ID", "STATE", "SUBNET", "FOR")
    for where, member in members:
        table.add_row(
            member.id, where, member.subnet, safe_markup(member.key.describe(), cell=True)
        )
    console.print(table)
    return 0


def run_fill(args: argparse.Namespace) -> int:
    with cli_progress(quiet=args.quiet or args.json) as progress:
        made = lifecycle.pool_fill(
            args.file, args.agent, args.count, progress=progress, up_to=args.up_to
        )
    if args.json:
        print_json([{"id": member.id, "subnet": member.subnet} for member in made])
    elif not args.quiet:
        console.print(f"{len(made)} warm gateway(s) ready: {' '.join(m.id for m in made)}")
    return 0


def run_drain(args: argparse.Namespace) -> int:
    drained = lifecycle.pool_drain()
    if args.json:
        print_json(drained)
    else:
        console.print(f"removed {len(drained)} member(s)")
    return 0
