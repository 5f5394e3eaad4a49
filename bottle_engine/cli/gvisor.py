"""`bottle-engine gvisor install`: a gVisor that passes the self-test, registered with Docker."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from bottle_engine.artifacts.base import resolve_base_image
from bottle_engine.cli.output import (
    Subparsers,
    add_command,
    add_command_group,
    add_json_option,
    console,
    err_console,
    print_json,
)
from bottle_engine.errors import BottleError
from bottle_engine.gvisor import DAEMON_JSON, PINNED, RUNTIME_ARGS, air_gap_help
from bottle_engine.host import Host

_PIN = next(iter(PINNED.values()))
HELP = f"""\
Make `runtime = "auto"` run bottles under gVisor: keep the registered runsc or the
distribution's when it passes the engine's self-test (basic tools of the base image run, and the
sandbox sees no network but its own loopback); otherwise install the pinned runsc
{_PIN.version} from Debian {_PIN.suite} (SHA-256 checked) under {_PIN.binary.parent}, beside
the system's. It is registered in {DAEMON_JSON} as the `runsc` runtime with
{" ".join(RUNTIME_ARGS)}, and dockerd is reloaded (SIGHUP: running containers are untouched).
Needs root and the base image (`bottle-engine base bootstrap`). scripts/setup runs this.

Air-gapped: {air_gap_help(_PIN)}.

examples:
  sudo bottle-engine gvisor install
  sudo bottle-engine gvisor install --deb ./{_PIN.deb_name}
"""


def register(subparsers: Subparsers) -> None:
    actions = add_command_group(
        subparsers,
        "gvisor",
        help="install and register gVisor (runsc) for the docker backend",
        description=HELP,
    )
    install = add_command(
        actions,
        "install",
        help="install (if needed) and register a working runsc",
        description=HELP,
        run=run_install,
    )
    install.add_argument(
        "--deb", type=Path, metavar="FILE", help=f"use this {_PIN.deb_name} instead of apt"
    )
    add_json_option(install)


def run_install(args: argparse.Namespace) -> int:
    host = Host()
    image = resolve_base_image(None)
    if host.image_id(image) is None:
        raise BottleError(
            f"the self-test needs the base image {image}, which Docker does not have",
            fix="`sudo bottle-engine base bootstrap` first (scripts/setup does both)",
        )

    def say(text: str) -> None:
        if not args.json:
            err_console.print(text, markup=False)

    report = host.install_gvisor(image, deb=args.deb, say=say)
    if args.json:
        print_json({**asdict(report), "binary": str(report.binary)})
    else:
        console.print(
            f"gVisor: {report.binary} ({report.source}) is Docker's runsc runtime and passes "
            "the self-test; runtime 'auto' uses it",
            markup=False,
        )
    return 0
