"""`bottle-engine cache`: list, prune and remove stored artifacts; push and pull them to and
from the shared cache (BOTTLE_ARTIFACT_REGISTRY)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from bottle_engine.artifacts.remote import RemoteCache
from bottle_engine.artifacts.store import ArtifactStore, StoreEntry
from bottle_engine.cli.output import (
    Subparsers,
    add_action,
    add_command_group,
    add_json_option,
    console,
    print_json,
)
from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError, UsageError
from bottle_engine.settings import ENV_ARTIFACT_REGISTRY, EngineSettings

HELP = """\
The artifact store: normalized images (OCI layouts) by artifact digest, and an index from input
key to digest, under the cache dir (BOTTLE_CACHE_DIR overrides it). Removing entries never
touches images already loaded into Docker.

examples:
  bottle-engine cache ls
  bottle-engine cache gc --keep 2        # keep the 2 most recently used per image name
  bottle-engine cache rm 3f2a9c          # by a prefix of an input key or artifact digest

shared cache (an OCI registry; credentials from the Docker config):
  export BOTTLE_ARTIFACT_REGISTRY=registry.example.com/team/bot-bottle
  bottle-engine cache push 3f2a9c        # push stored entries, tagged by input key
  bottle-engine cache pull sha256:3f2a…  # fetch and verify one input key into the store
  bottle-engine cache ls --remote
"""
DEFAULT_KEEP = 3
Row = TypeVar("Row")


def register(subparsers: Subparsers) -> None:
    actions = add_command_group(
        subparsers,
        "cache",
        help="list, prune and remove stored artifacts",
        description=HELP,
    )
    listing = add_action(
        actions, "ls", help="list stored artifacts, most recently used first", run=run_ls
    )
    add_json_option(listing)
    listing.add_argument(
        "--remote", action="store_true", help=f"list the shared cache (${ENV_ARTIFACT_REGISTRY})"
    )
    gc = add_action(
        actions,
        "gc",
        help="keep the N most recently used artifacts per name; drop the rest and leftovers",
        run=run_gc,
    )
    gc.add_argument(
        "--keep", type=int, default=DEFAULT_KEEP, metavar="N", help=f"default {DEFAULT_KEEP}"
    )
    add_json_option(gc)
    remove = add_action(
        actions, "rm", help="remove entries by input key or artifact digest", run=run_rm
    )
    remove.add_argument("key", metavar="KEY_OR_DIGEST", help="an input key or digest (or a prefix)")
    add_json_option(remove)
    push = add_action(actions, "push", help="push stored entries to the shared cache", run=run_push)
    push.add_argument("key", metavar="KEY_OR_DIGEST", help="an input key or digest (or a prefix)")
    add_json_option(push)
    pull = add_action(
        actions,
        "pull",
        help="fetch an input key's artifact from the shared cache into the store",
        run=run_pull,
    )
    pull.add_argument("key", metavar="INPUT_KEY", help="the full input key (sha256:…)")
    add_json_option(pull)


def _as_json(entry: StoreEntry) -> dict[str, object]:
    return {
        "name": entry.name,
        "input_key": entry.input_key,
        "digest": entry.digest,
        "origin": entry.origin,
        "size": entry.size,
        "created": entry.created,
        "last_used": entry.last_used,
        "complete": entry.complete,
    }


def _print_listing(
    rows: Sequence[Row],
    *,
    as_json: bool,
    to_json: Callable[[Row], object],
    empty: str,
    header: str,
    line: Callable[[Row], str],
) -> None:
    """A listing of the store or the shared cache: a JSON list, the `empty` sentence, or a
    header and one line a row (printed as text: names may come from a shared registry)."""
    if as_json:
        print_json([to_json(row) for row in rows])
        return
    if not rows:
        console.print(empty)
        return
    console.print(header, markup=False)
    for row in rows:
        console.print(line(row), markup=False)


def _store_line(entry: StoreEntry) -> str:
    used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
    flag = "" if entry.complete else "  (incomplete)"
    return (
        f"{entry.name:<10} {entry.digest[:19]:<19} {entry.input_key[:19]:<19} "
        f"{entry.size / 1e6:>7.1f}MB  {used}{flag}"
    )


def _print_entries(entries: list[StoreEntry], as_json: bool, empty: str) -> None:
    _print_listing(
        entries,
        as_json=as_json,
        to_json=_as_json,
        empty=empty,
        header=f"{'NAME':<10} {'DIGEST':<19} {'INPUT KEY':<19} {'SIZE':>9}  LAST USED",
        line=_store_line,
    )


def run_ls(args: argparse.Namespace) -> int:
    if args.remote:
        shared = _shared_cache()
        _print_listing(
            shared.entries(),
            as_json=args.json,
            to_json=vars,
            empty=f"the shared cache {shared.location} is empty",
            header=f"{'NAME':<10} {'DIGEST':<19} INPUT KEY",
            line=lambda entry: f"{entry.name:<10} {entry.digest[:19]:<19} {entry.input_key}",
        )
        return 0
    _print_entries(ArtifactStore().entries(), args.json, "the artifact store is empty")
    return 0


def run_push(args: argparse.Namespace) -> int:
    shared = _shared_cache()
    store = ArtifactStore()
    pushed = []
    for entry in store.matching(args.key):
        artifact = store.lookup(entry.input_key)
        if artifact is None:
            raise BottleError(
                f"the stored entry {entry.input_key} is incomplete",
                fix=f"`bottle-engine cache rm {entry.input_key}` and build again",
            )
        outcome = shared.push(artifact, entry.name)
        pushed.append({**_as_json(entry), "outcome": outcome})
    if args.json:
        print_json(pushed)
    for item in [] if args.json else pushed:
        console.print(
            f"{item['name']:<10} {str(item['digest'])[:19]}  {safe_text(item['outcome'])}"
        )
    return 0


def run_pull(args: argparse.Namespace) -> int:
    shared = _shared_cache()
    key = args.key if args.key.startswith("sha256:") else f"sha256:{args.key}"
    artifact = shared.pull(key, ArtifactStore())
    if artifact is None:
        raise BottleError(
            f"the shared cache {shared.location} has no artifact for input key {key}",
            fix="list what it has with `bottle-engine cache ls --remote`",
        )
    if args.json:
        print_json({"input_key": key, "digest": artifact.digest, "name": artifact.name})
    else:
        console.print(f"{artifact.name:<10} {artifact.digest}  pulled and verified")
    return 0


def _shared_cache() -> RemoteCache:
    shared = RemoteCache.from_settings(EngineSettings.from_env())
    if shared is None:
        raise UsageError(
            f"no shared cache is configured (${ENV_ARTIFACT_REGISTRY} is unset)",
            fix=f"export {ENV_ARTIFACT_REGISTRY}=HOST[:PORT]/REPOSITORY",
        )
    return shared


def run_gc(args: argparse.Namespace) -> int:
    if args.keep < 0:
        raise UsageError(f"--keep {args.keep}: must be 0 or more", fix="e.g. --keep 2")
    removed = ArtifactStore().gc(args.keep)
    _print_entries(removed, args.json, "nothing to remove")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    _print_entries(ArtifactStore().remove(args.key), args.json, "nothing removed")
    return 0
