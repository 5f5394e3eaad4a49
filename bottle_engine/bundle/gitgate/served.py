"""What the gate serves the agent holds no real value: the upstream's history, searched.

The gate mirrors the upstream's branches and tags before every clone, fetch and push, and
serves them to the agent. An upstream whose history holds one of the bottle's real values (a
token committed once and taken out in the next commit; an annotated tag's notes) handed it to
the agent, whose `git log -p` shows it. So every object the mirror fetched is searched before
the gate's refs move to reach it: the refs not moved, nothing of it is served (`git daemon`
serves only what the gate's refs reach, and the access hook refuses the repository while the
hit stands). Each mirror searches only what the last clean one did not reach (the tips it
searched are kept beside the store), so the cost of the whole history is paid at the first
access after a start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
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

SEARCHED_TIPS_NAME = (
    "searched-tips"  # in the upstream store: the tips the last clean search reached
)
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


def refuse_served_values(store: Path, upstream: GitUpstreamConfig, search: ValueSearch) -> None:
    """Raise `ServedValue` when an object the store's refs reach, and the last clean search did
    not, holds a value of `search`; on none, record the tips as searched."""
    tips = _tips(store)
    searched = _searched_tips(store)
    if tips and search.needles and set(tips) - searched:
        hit = _first_hit(store, _new_objects(store, tips, searched), search)
        if hit is not None:
            raise ServedValue(
                f"git upstream {upstream.name!r} holds the real {hit.needle.label} in its "
                f"history ({hit.info.type} {hit.info.oid}): the gate serves none of this "
                "upstream to the agent while it does",
                fix="take the value as known and rotate it (the bottle is then resumed with the "
                "new one); or rewrite the upstream's history without it",
            )
    (store / SEARCHED_TIPS_NAME).write_text("".join(f"{tip}\n" for tip in tips))


def _tips(store: Path) -> list[str]:
    listing = run_git(
        ["for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags"],
        doing="listing the upstream's tips",
        git_dir=store,
    ).stdout
    return sorted(set(output_lines(listing)))


def _searched_tips(store: Path) -> set[str]:
    try:
        return set(output_lines((store / SEARCHED_TIPS_NAME).read_text()))
    except FileNotFoundError:
        return set()


def _new_objects(store: Path, tips: list[str], searched: set[str]) -> list[str]:
    """Every object `tips` reach that `searched` do not (names left out: a path may hold a
    newline, and a line of its own would read as another object)."""
    listing = run_git(
        ["rev-list", "--objects", "--no-object-names", "--ignore-missing", "--stdin"],
        doing="listing the upstream's new objects",
        git_dir=store,
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
