"""`bottle-engine cache`: list, prune and remove stored artifacts."""

from __future__ import annotations

import argparse
import time

from bottle_engine.artifacts.store import ArtifactStore, StoreEntry
from bottle_engine.cli.output import console, formatter, print_json
from bottle_engine.errors import UsageError

HELP = """\
The artifact store: normalized images (OCI layouts) by artifact digest, and an index from input
key to digest, under the cache dir (BOTTLE_CACHE_DIR overrides it). Removing entries never
touches images already loaded into Docker.

examples:
  bottle-engine cache ls
  bottle-engine cache gc --keep 2        # keep the 2 most recently used per image name
  bottle-engine cache rm 3f2a9c          # by a prefix of an input key or artifact digest
"""
DEFAULT_KEEP = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list, prune and remove stored artifacts",
        description=HELP,
        formatter_class=formatter(),
    )
    actions = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    listing = actions.add_parser("ls", help="list stored artifacts, most recently used first")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_ls)
    gc = actions.add_parser(
        "gc", help="keep the N most recently used artifacts per name; drop the rest and leftovers"
    )
    gc.add_argument(
        "--keep", type=int, default=DEFAULT_KEEP, metavar="N", help=f"default {DEFAULT_KEEP}"
    )
    gc.add_argument("--json", action="store_true", help="machine-readable output")
    gc.set_defaults(run=run_gc)
    remove = actions.add_parser("rm", help="remove entries by input key or artifact digest")
    remove.add_argument("key", metavar="KEY_OR_DIGEST", help="an input key or digest (or a prefix)")
    remove.add_argument("--json", action="store_true", help="machine-readable output")
    remove.set_defaults(run=run_rm)


def _as_json(entry: StoreEntry) -> dict[str, object]:
    return {
        "name": entry.name,
        "input_key": entry.input_key,
        "digest": entry.digest,
        "size": entry.size,
        "created": entry.created,
        "last_used": entry.last_used,
        "complete": entry.complete,
    }


def _print_entries(entries: list[StoreEntry], as_json: bool, empty: str) -> None:
    if as_json:
        print_json([_as_json(entry) for entry in entries])
        return
    if not entries:
        console.print(empty)
        return
    console.print(f"{'NAME':<10} {'DIGEST':<19} {'INPUT KEY':<19} {'SIZE':>9}  LAST USED")
    for entry in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        flag = "" if entry.complete else "  (incomplete)"
        console.print(
            f"{entry.name:<10} {entry.digest[:19]:<19} {entry.input_key[:19]:<19} "
            f"{entry.size / 1e6:>7.1f}MB  {used}{flag}",
            highlight=False,
        )


def run_ls(args: argparse.Namespace) -> int:
    _print_entries(ArtifactStore().entries(), args.json, "the artifact store is empty")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    if args.keep < 0:
        raise UsageError(f"--keep {args.keep}: must be 0 or more", fix="e.g. --keep 2")
    removed = ArtifactStore().gc(args.keep)
    _print_entries(removed, args.json, "nothing to remove")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    _print_entries(ArtifactStore().remove(args.key), args.json, "nothing removed")
    return 0
