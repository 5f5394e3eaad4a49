"""Shared CLI helpers: rich consoles, JSON output, a command's parser and the arguments many
commands share (`-f`, AGENT, SLUG, `--json`, `--quiet`), so each is worded the same everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TypeAlias

from rich.console import Console

from bottle_engine.display import safe_markup

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# What `add_subparsers()` returns: commands (and a command group's actions) are added to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def safe_lines(text: str) -> str:
    """`safe_markup` line by line: for our own multi-line messages that quote untrusted text
    (its escapes, bidi and markup are shown as text; the message's line breaks stay)."""
    return "\n".join(safe_markup(line) for line in text.split("\n"))


def print_json(value: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def add_manifest_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--file",
        metavar="PATH",
        help="the manifest to use (default: bottle.toml in this directory or a parent)",
    )


def add_slug_argument(parser: argparse.ArgumentParser) -> None:
    """The SLUG of the existing bottle a command works on (attach, stop, logs, probe, ...)."""
    parser.add_argument(
        "slug", metavar="SLUG", help="the bottle's slug, as `bottle-engine ls` lists it"
    )


def add_json_option(parser: argparse.ArgumentParser, help: str = "machine-readable output") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def add_command(
    subparsers: Subparsers,
    name: str,
    *,
    help: str,
    description: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A command's parser; its description printed as written (examples keep their layout)."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_agent_command(
    subparsers: Subparsers, name: str, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A command on one agent of a manifest (build, pack, plan, launch): `-f` and AGENT."""
    parser = add_command(subparsers, name, help=help, description=description)
    add_manifest_option(parser)
    parser.add_argument("agent", metavar="AGENT", help="an agent name from [agents.NAME]")
    return parser


def add_command_group(
    subparsers: Subparsers, name: str, *, help: str, description: str
) -> Subparsers:
    """A command made of actions (`cache ls`, `pool fill`): the subparsers to add them to.
    An action is required; the chosen one is in the namespace as `<name>_command`."""
    parser = add_command(subparsers, name, help=help, description=description)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)
