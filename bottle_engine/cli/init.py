"""`bottle-engine init`: write a commented starter bottle.toml and Dockerfile."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from bottle_engine.cli.output import Subparsers, add_command, console
from bottle_engine.errors import BottleError

HELP = """\
Write a starter bottle.toml (and a Dockerfile for the agent image, unless one exists) into
DIRECTORY (default: here), with a .dockerignore that keeps the build context to the Dockerfile:
the rest of the project (.git included) then neither slows builds nor changes the image's input
key. Existing files are never overwritten unless --force is given; a .dockerignore never is.

Claude Code signs in with an API key (--auth api-key, the default: ANTHROPIC_API_KEY) or a
subscription token (--auth subscription: CLAUDE_CODE_OAUTH_TOKEN, from `claude setup-token`);
either is a secret bound to api.anthropic.com: the agent sees only a placeholder.

examples:
  bottle-engine init
  bottle-engine init --auth subscription
  bottle-engine init my-project --force
"""

# --auth choice -> the secret table written into bottle.toml in place of its `# @auth@` line
AUTH_TEMPLATES = {
    "api-key": "auth-api-key.toml",
    "subscription": "auth-subscription.toml",
}
AUTH_MARKER = "# @auth@\n"

# file written -> its template in bottle_engine/templates/
TEMPLATES = {
    "bottle.toml": "bottle.toml",
    "Dockerfile": "Dockerfile",
    ".dockerignore": "dockerignore",
}


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "init",
        help="write a starter bottle.toml and Dockerfile",
        description=HELP,
        run=run,
    )
    parser.add_argument("directory", nargs="?", default=".", help="where to write (default: .)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument(
        "--auth",
        choices=sorted(AUTH_TEMPLATES),
        default="api-key",
        help="how Claude Code signs in: ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN "
        "(default: api-key)",
    )


def run(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise BottleError(f"{directory}: no such directory", fix="create it first")
    manifest = directory / "bottle.toml"
    if manifest.exists() and not args.force:
        raise BottleError(
            f"{manifest} already exists", fix="edit it, or pass --force to overwrite it"
        )
    for name, template_name in TEMPLATES.items():
        target = directory / name
        keep = name == ".dockerignore" or (not args.force and name != "bottle.toml")
        if target.exists() and keep:
            console.print(f"kept existing {target}", markup=False)
            continue
        template = resources.files("bottle_engine") / "templates" / template_name
        if not template.is_file():  # an installation without it: say so instead of crashing
            console.print(
                f"no starter {name} in this installation; write {target} yourself", markup=False
            )
            continue
        text = template.read_text(encoding="utf-8")
        if name == "bottle.toml":
            text = with_auth(text, args.auth)
        target.write_text(text, encoding="utf-8")
        console.print(f"wrote {target}", markup=False)
    console.print("next: `bottle-engine validate`, then `bottle-engine launch dev`")
    return 0


def with_auth(manifest: str, auth: str) -> str:
    """The starter manifest with the secret table for `auth` (a key of AUTH_TEMPLATES)."""
    fragment = resources.files("bottle_engine") / "templates" / AUTH_TEMPLATES[auth]
    return manifest.replace(AUTH_MARKER, fragment.read_text(encoding="utf-8"))
