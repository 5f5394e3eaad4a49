"""`bottle-engine plan`: what launching an agent would do. Pure: no Docker needed."""

from __future__ import annotations

import argparse

from bottle_engine.cli.output import Subparsers, add_command, add_json_option, console, print_json
from bottle_engine.display import safe_markup, safe_text
from bottle_engine.lifecycle import planner_for
from bottle_engine.manifest.schema import INTERCEPT_ALL

HELP = """\
Resolve the plan for launching AGENT: slug, backend, subnet, bundle IP, guest environment
(secrets appear only as placeholders), and the image inputs. Touches no daemon; the subnet
shown is the first candidate, before checking for networks that already use it.

examples:
  bottle-engine plan reviewer
  bottle-engine plan reviewer --json | jq .guest_env
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "plan",
        help="show what launching an agent would do",
        description=HELP,
        run=run,
        subject="agent",
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    # The same planner a launch makes (settings, cwd, protected paths); only the launch token
    # is fixed, so the placeholders shown are stable.
    planner = planner_for(args.file, args.agent, launch_token="plan")
    plan = planner(planner.base_slug)
    data = plan.to_json()
    if args.json:
        print_json(data)
        return 0
    for key in (
        "slug",
        "name",
        "agent",
        "bottle",
        "backend",
        "runtime",
        "subnet",
        "bundle_ip",
        "agent_ip",
    ):
        console.print(f"[bold]{key:>10}[/]  {safe_markup(data[key])}")
    # Values are the manifest's text (an agent may have written it): a command or entry holding
    # "[/x]" is text, not rich markup, and one holding an escape sequence shows it, not runs it.
    console.print(f"[bold]{'command':>10}[/]  {safe_markup(' '.join(data['command']))}")
    egress = ", ".join(data["egress_allow"]) or "(nothing)"
    console.print(f"[bold]{'egress':>10}[/]  {safe_markup(egress)}")
    every = data["egress_intercept"] == INTERCEPT_ALL
    opened = "every HTTPS tunnel" if every else "tunnels to a secret's hosts"
    console.print(f"[bold]{'opened':>10}[/]  {opened} (TLS opened, each request judged)")
    console.print(f"[bold]{'guest env':>10}[/]")
    for name, value in sorted(data["guest_env"].items()):
        console.print(f"            {safe_text(name)}={safe_text(value)}", markup=False)
    return 0
