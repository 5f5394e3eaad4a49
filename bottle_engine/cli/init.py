"""`bottle-engine init`: write a commented starter bottle.toml and Dockerfile."""

from __future__ import annotations

import argparse
import os
import stat
from importlib import resources
from pathlib import Path

from bottle_engine.cli.output import Subparsers, add_command, console
from bottle_engine.errors import BottleError

HELP = """\
Write a starter bottle.toml (and a Dockerfile for the agent image, unless one exists) into
DIRECTORY (default: here), with a .dockerignore that keeps the build context to the Dockerfile:
the rest of the project (.git included) then neither slows builds nor changes the image's input
key. Existing files are never overwritten unless --force is given; a .dockerignore never is.
A link (or anything but a regular file) where it writes is refused, and nothing is written:
the directory may be a repository someone else wrote.

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
    for name in TEMPLATES:
        _refuse_a_link_or_special_file(directory / name)
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
        _write_regular(target, text)
        console.print(f"wrote {target}", markup=False)
    console.print("next: `bottle-engine validate`, then `bottle-engine launch dev`")
    return 0


def _refuse_a_link_or_special_file(target: Path) -> None:
    """`init` runs in a repository someone else may have written: a link there named as a file
    it writes, pointing outside (dangling, so `exists()` says no), made it create the file the
    link named, as root in the quick start (`~/.bash_profile`, a cron file). Nothing is written
    while one is there."""
    if target.is_symlink():
        raise BottleError(
            f"{target} is a link: `init` writes no file through one, and wrote nothing",
            fix=f"remove the link (`rm {target}`) and run `bottle-engine init` again",
        )
    if target.exists() and not target.is_file():
        raise BottleError(
            f"{target} is not a regular file: `init` wrote nothing",
            fix=f"move {target} away and run `bottle-engine init` again",
        )


def _write_regular(target: Path, text: str) -> None:
    """`text` into `target`, never through a link put there since it was checked, nor into a
    FIFO (opening one to write waits for a reader)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(target, flags, 0o666)
    except OSError as exc:
        raise BottleError(
            f"cannot write {target}: {exc.strerror}",
            fix=f"check {target} (a link or FIFO is refused) and run `bottle-engine init` again",
        ) from exc
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise BottleError(f"{target} is not a regular file: not written")
        out.write(text)


def with_auth(manifest: str, auth: str) -> str:
    """The starter manifest with the secret table for `auth` (a key of AUTH_TEMPLATES)."""
    fragment = resources.files("bottle_engine") / "templates" / AUTH_TEMPLATES[auth]
    return manifest.replace(AUTH_MARKER, fragment.read_text(encoding="utf-8"))
