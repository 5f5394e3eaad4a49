"""Shared CLI helpers: rich consoles, JSON output, a command's parser and the common `-f`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from bottle_engine.display import safe_markup

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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


def add_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
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
