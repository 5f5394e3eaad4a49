"""`bottle-engine`: argument parsing and printing only; the work lives in the engine modules.

Each command is a module in this package with a `register(subparsers)` function that adds its
parser with `output.add_command` (or `add_command_group` and `add_action`), naming the function
to run: it takes the parsed arguments and returns an exit code.
Exit codes: 0 success, 1 failure (errors in the manifest, a failed build, ...), 2 usage error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bottle_engine import __version__
from bottle_engine.cli.output import err_console, safe_lines
from bottle_engine.errors import BottleError
from bottle_engine.exec_path import keep_absolute_entries

# The order here is the order in `--help`.
COMMAND_MODULES = (
    "init",
    "validate",
    "schema",
    "plan",
    "build",
    "cache",
    "base",
    "bottles",
    "pool",
    "trust",
    "probe",
    "doctor",
    "gvisor",
    "pack",
    "approvals",
)

DESCRIPTION = """\
Run AI coding agents in bottles: sandboxes whose only way out is a per-bottle gateway
(egress allowlist proxy with credential substitution, git push gate, human approval).

examples:
  bottle-engine init                      write a starter bottle.toml and Dockerfile
  bottle-engine validate                  check ./bottle.toml (or a parent's)
  bottle-engine plan reviewer --json      show what launching agent 'reviewer' would do
  bottle-engine launch reviewer           build (or reuse) images, start the bottle, attach
  bottle-engine ls                        list bottles; then attach / stop / resume / logs SLUG
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bottle-engine",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bottle-engine {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks for errors (for bug reports)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"bottle_engine.cli.{name.replace('-', '_')}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Run where it was started, often a repository an agent wrote (the editor's terminal opens
    # in the workspace): nothing is looked up there.
    keep_absolute_entries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except BottleError as exc:
        if args.debug:
            raise
        # Messages quote user input (which may look like markup, or hold escape sequences from a
        # bottle.toml the agent wrote): printed as plain text, their own line breaks kept.
        err_console.print(f"[bold red]error:[/] {safe_lines(exc.message)}", highlight=False)
        if exc.fix:
            err_console.print(f"  [bold]fix:[/] {safe_lines(exc.fix)}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted (whatever this command had started was undone)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
