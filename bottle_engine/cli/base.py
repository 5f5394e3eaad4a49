"""`bottle-engine base bootstrap`: make the Debian base image locally, without a registry."""

from __future__ import annotations

import argparse

from bottle_engine.artifacts.base import DEFAULT_BASE_TAG
from bottle_engine.cli.output import (
    Subparsers,
    add_action,
    add_command_group,
    add_quiet_and_json_options,
    console,
    print_json,
)
from bottle_engine.cli.progress import cli_progress
from bottle_engine.host import Host

HELP = f"""\
Bootstrap a Debian bookworm (minbase) base image with debootstrap and import it into Docker, for
machines that cannot pull the pinned debian:bookworm-slim. The root file system is normalized
(sorted, mtimes clamped to SOURCE_DATE_EPOCH or 0, no logs or caches) before the import. Needs
root and debootstrap (`apt-get install debootstrap`); about a minute.

Then build on it with BOTTLE_BASE_IMAGE={DEFAULT_BASE_TAG} (or `base_image` in bottle.toml).

examples:
  sudo bottle-engine base bootstrap
  bottle-engine base bootstrap --tag my/base:bookworm --force
"""


def register(subparsers: Subparsers) -> None:
    actions = add_command_group(
        subparsers,
        "base",
        help="bootstrap the Debian base image (no registry needed)",
        description=HELP,
    )
    bootstrap = add_action(
        actions, "bootstrap", help="debootstrap and import the base image", run=run_bootstrap
    )
    bootstrap.add_argument("--tag", default=DEFAULT_BASE_TAG, help=f"default {DEFAULT_BASE_TAG}")
    bootstrap.add_argument(
        "--force", action="store_true", help="bootstrap again even when Docker has the tag"
    )
    add_quiet_and_json_options(bootstrap)


def run_bootstrap(args: argparse.Namespace) -> int:
    host = Host()
    existed = host.image_id(args.tag) is not None
    with cli_progress(quiet=args.quiet or args.json) as progress:
        host.make_base_image(args.tag, force=args.force, progress=progress)
    image_id = host.image_id(args.tag)
    made = args.force or not existed
    if args.json:
        print_json({"tag": args.tag, "image_id": image_id, "bootstrapped": made})
    elif not args.quiet:
        state = "bootstrapped" if made else "already present (use --force to redo)"
        console.print(f"{args.tag} {state}")
    return 0
