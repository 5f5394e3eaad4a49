"""`bottle-engine pack`: build (or reuse) an agent's image and pack it as a `.smolmachine`."""

from __future__ import annotations

import argparse

from bottle_engine import lifecycle
from bottle_engine.cli.output import Subparsers, add_command, add_json_option, console, print_json
from bottle_engine.cli.progress import cli_progress

HELP = """\
Pack AGENT's image for the smolmachines (microVM) backend, as `launch` would, and stop there.
The images are built only when their inputs changed, and the pack is cached by the image's
artifact digest: a second run does no work. With a smolvm that takes local archives the image
goes in directly; older releases (or --via-registry) pull it from a throw-away registry on
127.0.0.1 (image: BOTTLE_REGISTRY_IMAGE, default registry:2.8.3 pinned by digest). A cached
pack is reused whichever way it was made.

environment:
  BOTTLE_SMOLVM            the smolvm binary (default: smolvm on PATH)
  BOTTLE_REGISTRY_IMAGE    the registry:2 image for the registry hop

examples:
  bottle-engine pack dev
  bottle-engine pack dev --via-registry --json | jq -r .sidecar
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "pack",
        help="pack an agent's image as a .smolmachine (microVM backend)",
        description=HELP,
        run=run,
        subject="agent",
    )
    parser.add_argument(
        "--via-registry",
        action="store_true",
        help="pack through the ephemeral registry even when smolvm takes local archives",
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    with cli_progress(quiet=args.json) as progress:
        pack = lifecycle.pack(args.file, args.agent, progress, via_registry=args.via_registry)
    if args.json:
        print_json(pack.to_json())
    else:
        how = "cached" if pack.cache_hit else f"packed ({pack.method})"
        console.print(f"{how}: {pack.artifact_digest[:19]} -> {pack.sidecar}", highlight=False)
    return 0
