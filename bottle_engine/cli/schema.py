"""`bottle-engine schema`: the manifest's JSON Schema, for taplo / Even Better TOML."""

from __future__ import annotations

import argparse

from bottle_engine.cli.output import Subparsers, add_command, print_json
from bottle_engine.manifest.schema import markdown_reference, to_json_schema

HELP = """\
Print the JSON Schema of bottle.toml. Point your TOML tooling at it, e.g. with taplo:

  bottle-engine schema > bottle.schema.json
  # .taplo.toml:  [[rule]] include = ["**/bottle.toml"]  schema.path = "bottle.schema.json"

--markdown prints the manifest reference table instead (the README's table is this output).
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "schema",
        help="print the manifest's JSON Schema",
        description=HELP,
        run=run,
    )
    parser.add_argument("--markdown", action="store_true", help="print the reference table")


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_reference(), end="")
    else:
        print_json(to_json_schema())
    return 0
