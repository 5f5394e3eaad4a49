"""`bottle-engine validate`: check a manifest and print its problems."""

from __future__ import annotations

import argparse

from bottle_engine.cli.output import (
    Subparsers,
    add_command,
    add_manifest_option,
    console,
    print_json,
)
from bottle_engine.manifest import find_manifest, load_manifest_file

HELP = """\
Check bottle.toml against the schema and cross-references. Prints one line per problem:

  PATH:LINE:COL: error|warning: [CODE] message

exit codes: 0 no errors (warnings allowed), 1 errors found, 2 usage error.

examples:
  bottle-engine validate
  bottle-engine validate -f examples/hello/bottle.toml --format json
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "validate", help="check bottle.toml", description=HELP, run=run
    )
    add_manifest_option(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    loaded = load_manifest_file(find_manifest(args.file))
    if args.format == "json":
        print_json([problem.to_json() for problem in loaded.problems])
    else:
        for problem in loaded.problems:
            console.print(problem.to_text(), markup=False)
    return 1 if loaded.errors else 0
