"""Shared CLI helpers: rich consoles, JSON output, a command's parser and the arguments many
commands share (`-f`, AGENT, SLUG, `--json`, `--quiet`), so each is worded the same everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

from rich.console import Console

from bottle_engine.display import safe_markup

# No emoji codes: rich turns `:name:` in any string it prints into an emoji (`:one:` into "1"
# and two invisible characters), and what a person reads must be what the agent sent.
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

# What `add_subparsers()` returns: commands (and a command group's actions) are added to it.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def safe_lines(text: str) -> str:
    """`safe_markup` line by line: for our own multi-line messages that quote untrusted text
    (its escapes, bidi and markup are shown as text; the message's line breaks stay)."""
    return "\n".join(safe_markup(line) for line in text.split("\n"))


def confirm(question: str) -> bool:
    """Ask `question` y/N on the terminal (stderr); anything but yes, or no input, declines."""
    err_console.print(f"{question} \\[y/N] ", end="")
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


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
    """The SLUG of the existing bottle a command works on."""
    parser.add_argument(
        "slug", metavar="SLUG", help="the bottle's slug, as `bottle-engine ls` lists it"
    )


def add_json_option(parser: argparse.ArgumentParser, help: str = "machine-readable output") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_quiet_and_json_options(
    parser: argparse.ArgumentParser, json_help: str = "machine-readable output"
) -> None:
    """`-q` and `--json` of a command that shows progress (build, launch, pool fill, ...);
    with `--json` it shows none either: stdout is the JSON."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_json_option(parser, help=json_help)


# What a command runs: the parsed arguments in, the CLI's exit code out.
Runner: TypeAlias = Callable[[argparse.Namespace], int]


def _command_parser(
    subparsers: Subparsers, name: str, *, help: str, description: str, epilog: str | None
) -> argparse.ArgumentParser:
    """A command's parser; its description printed as written (examples keep their layout)."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# What a command works on, given before its own options: an agent of a manifest (`-f` and
# AGENT: build, pack, plan, launch) or an existing bottle (SLUG: attach, stop, logs, probe, ...).
Subject: TypeAlias = Literal["agent", "bottle"]


def add_command(
    subparsers: Subparsers,
    name: str,
    *,
    help: str,
    description: str,
    run: Runner,
    subject: Subject | None = None,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A command that runs `run` (`main` calls it with the parsed arguments). Options a command
    shares with others (`--json`, `-q`) are added by the caller after its own, as its help
    lists them."""
    parser = _command_parser(subparsers, name, help=help, description=description, epilog=epilog)
    if subject == "agent":
        add_manifest_option(parser)
        parser.add_argument("agent", metavar="AGENT", help="an agent name from [agents.NAME]")
    elif subject == "bottle":
        add_slug_argument(parser)
    parser.set_defaults(run=run)
    return parser


def add_command_group(
    subparsers: Subparsers, name: str, *, help: str, description: str
) -> Subparsers:
    """A command made of actions (`cache ls`, `pool fill`): the subparsers to add them to with
    `add_action`. An action is required; the chosen one is in the namespace as `<name>_command`."""
    parser = _command_parser(subparsers, name, help=help, description=description, epilog=None)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def add_action(
    actions: Subparsers, name: str, *, help: str, run: Runner
) -> argparse.ArgumentParser:
    """One action of a command group, running `run`; its help is its one line in the group's."""
    parser = actions.add_parser(name, help=help)
    parser.set_defaults(run=run)
    return parser
