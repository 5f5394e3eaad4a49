"""What the gate serves the agent holds no real value: the upstream's history, searched.

The gate mirrors the upstream's branches and tags before every clone, fetch and push, and
serves them to the agent. An upstream whose history holds one of the bottle's real values (a
token committed once and taken out in the next commit; an annotated tag's notes) handed it to
the agent, whose `git log -p` shows it. So every object the mirror fetched is searched before
anything the agent can reach holds it: the access hook refuses the repository while the hit
stands.

The mirror fetches into a repository of its own (`incoming_store`), which nothing serves, and only
a clean search takes its objects into the upstream store the gate's repository borrows. Fetched
into that store and searched there, a refused object was served all the same: protocol v2's
`want` takes any object the repository holds, advertised or not (`uploadpack.allow*SHA1InWant`
bind protocol v0 only), the refusal names the object, and once the upstream dropped it (or to a
connection opened before) the agent fetched it by that id. So the store holds searched objects
only, and its refs are the tips the last clean search reached: each mirror searches only what they
do not, so the cost of the whole history is paid at the first access after a start.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate.forwarding import upstream_store
from bottle_engine.bundle.secret_forms import Needle, ValueSearch
from bottle_engine.errors import BottleError
from bottle_engine.git import (
    ObjectInfo,
    object_infos,
    output_lines,
    read_objects,
    run_git,
    stream_object,
    url_credential,
)

INCOMING_STORES = "incoming"  # in forwarding.UPSTREAM_STORES, beside the upstream stores
# Objects up to this size are read whole (in runs); a larger one is read a piece at a time,
# within the bundle's memory bound.
WHOLE_OBJECT_BYTES = 16 * 1024 * 1024


class ServedValue(BottleError):
    """The upstream's history holds a real value: the gate serves none of it."""


@dataclass(frozen=True)
class Hit:
    info: ObjectInfo
    needle: Needle


def served_values(config: BundleConfig, upstream: GitUpstreamConfig) -> ValueSearch:
    """The bottle's real values that the gate must never serve: its secrets' values (as mounted
    here), the upstream's `identity` key and the credential in its url. Placeholders are not
    among them: the agent holds those already."""
    values = []
    for secret in config.secrets:
        try:
            value = Path(secret.value_file).read_text().strip()
        except OSError:
            continue  # not mounted here: nothing of it to give away
        values.append((value, f"value of the bottle's secret {secret.name!r}"))
    if (credential := url_credential(upstream.url)) is not None:
        values.append((credential, f"credential in git upstream {upstream.name!r}'s url"))
    if upstream.identity_file:
        try:
            key = Path(upstream.identity_file).read_text(errors="replace").strip()
        except OSError:
            key = ""
        values.append((key, f"key of git upstream {upstream.name!r}'s identity"))
    return ValueSearch(values, short_words=True)  # a short value as a whole word, as at launch


def incoming_store(git_dir: Path) -> Path:
    """The bare repository the mirror fetches the upstream into for the gate repository
    `git_dir`: it borrows the upstream store, and no service reads it."""
    return upstream_store(git_dir).parent / INCOMING_STORES / git_dir.name


def refuse_served_values(git_dir: Path, upstream: GitUpstreamConfig, search: ValueSearch) -> None:
    """Raise `ServedValue` when an object the incoming store's refs reach, and the upstream
    store's do not, holds a value of `search`."""
    incoming = incoming_store(git_dir)
    tips = _tips(incoming)
    if not (tips and search.needles):
        return
    refs = _refs(incoming, "%(objectname) %(refname)")
    known = _refused_before(incoming, refs)
    if known is not None:
        raise known
    try:
        # A ref's name is served as its objects are (every listing of the refs shows it).
        named = next(search.finds((name, name.encode()) for name in _names(incoming)), None)
        if named is not None:
            _refuse(upstream, named[1], "the name of one of its branches or tags")
        searched = _tips(upstream_store(git_dir))
        hit = _first_hit(incoming, _new_objects(incoming, tips, searched), search)
        if hit is not None:
            _refuse(upstream, hit.needle, f"its history ({hit.info.type} {hit.info.oid})")
    except ServedValue as refusal:
        _remember_refusal(incoming, refs, refusal)
        raise


# The refusal of the last search and the refs it searched (in the incoming store): a refused
# search moves no ref of the upstream store, so the next access searched again all it had, the
# whole history after a start, for as long as the refs stood (an agent's `git ls-remote` in a
# loop kept the bundle searching). The same refs are refused again unsearched. Made afresh with
# the store at each start, when the values searched for may have changed.
REFUSED_NAME = "refused-search.json"


def _refused_before(incoming: Path, refs: list[str]) -> ServedValue | None:
    try:
        known = json.loads((incoming / REFUSED_NAME).read_text())
    except FileNotFoundError:
        return None
    if known["refs"] != refs:
        return None
    return ServedValue(known["message"], fix=known["fix"])


def _remember_refusal(incoming: Path, refs: list[str], refusal: ServedValue) -> None:
    record = {"refs": refs, "message": refusal.message, "fix": refusal.fix}
    (incoming / REFUSED_NAME).write_text(json.dumps(record))


def _refuse(upstream: GitUpstreamConfig, needle: Needle, where: str) -> NoReturn:
    raise ServedValue(
        f"git upstream {upstream.name!r} holds the real {needle.label} in {where}: the gate "
        "serves none of this upstream to the agent while it does",
        fix="take the value as known and rotate it (the bottle is then resumed with the new "
        "one); or rewrite the upstream's history (and rename its refs) without it",
    )


def _tips(git_dir: Path) -> list[str]:
    return sorted(set(_refs(git_dir, "%(objectname)")))


def _names(git_dir: Path) -> list[str]:
    return _refs(git_dir, "%(refname)")


def _refs(git_dir: Path, format: str) -> list[str]:
    """`format` of each of the branches and tags of `git_dir`, a line each."""
    listing = run_git(
        ["for-each-ref", f"--format={format}", "refs/heads", "refs/tags"],
        doing="listing the upstream's refs",
        git_dir=git_dir,
    ).stdout
    return output_lines(listing)


def _new_objects(git_dir: Path, tips: list[str], searched: list[str]) -> list[str]:
    """Every object `tips` reach that `searched` do not (names left out: a path may hold a
    newline, and a line of its own would read as another object)."""
    listing = run_git(
        ["rev-list", "--objects", "--no-object-names", "--stdin"],
        doing="listing the upstream's new objects",
        git_dir=git_dir,
        input_text="".join(f"{tip}\n" for tip in tips) + "".join(f"^{oid}\n" for oid in searched),
    ).stdout
    return output_lines(listing)


def _first_hit(store: Path, oids: list[str], search: ValueSearch) -> Hit | None:
    infos = object_infos(store, oids)
    whole = [info.oid for info in infos if info.size <= WHOLE_OBJECT_BYTES]
    found = next(search.finds(read_objects(store, whole)), None)
    if found is not None:
        return Hit(*found)
    for info in infos:
        if info.size > WHOLE_OBJECT_BYTES:
            needle = search.first_in_stream(stream_object(store, info))
            if needle is not None:
                return Hit(info, needle)
    return None


def drop_incoming_objects(git_dir: Path) -> None:
    """Free what the incoming store keeps of its own once the upstream store took the searched
    objects: its refs then reach only objects the upstream store holds (which it borrows)."""
    objects = incoming_store(git_dir) / "objects"
    for entry in objects.iterdir():
        if entry.name != "info":
            shutil.rmtree(entry)
    (objects / "pack").mkdir()
