"""Why a launch refuses a copy that holds a real value, worded once for both places it copies
to: into the bottle (the workspace copy, skills, the prompt: `guest.refuse_real_values`) and
into the agent image's build context (`context_values.ContextValues`). A refusal names the
files, the secret's label and the form, never the value, and ends with the place's way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bottle_engine.bundle.secret_forms import Needle
from bottle_engine.copied_archives import ArchiveHit
from bottle_engine.copied_history import HistoryHit, HistoryUnreadable
from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError


@dataclass(frozen=True)
class CopyPlace:
    """Where a copy goes, as a refusal says it."""

    what: str  # the copy as a whole: "what the launch copies into the bottle"
    root: str  # what the copy's names are relative to: "" (they start "/workspace"), a context
    phrase: str  # after a file's name: "that the launch would copy into the bottle"
    reaches_the_agent: str  # how a value there reaches the agent ("" for the bottle itself)
    way_out: str  # what the person can do instead of taking the value out: the last fix


def into_the_bottle(agent: str, cwd: str) -> CopyPlace:
    return CopyPlace(
        what="what the launch copies into the bottle",
        root="",
        phrase=f"that the launch would copy into the bottle (the copy of {safe_text(cwd)} for "
        "/workspace, a skill or the prompt)",
        reaches_the_agent="",
        way_out=f"set `copy_cwd = false` for agent {agent}",
    )


def into_the_image(context: str) -> CopyPlace:
    where = safe_text(context)
    return CopyPlace(
        what=f"the agent image's build context {where}",
        root=f"{where}/",
        phrase=f"in the agent image's build context {where}",
        reaches_the_agent=": a Dockerfile's COPY puts the context in the agent's image, and "
        "the image is reused by every bottle built from the same context",
        way_out=f"list it in {where}/.dockerignore",
    )


def values_in_files(place: CopyPlace, holding: Sequence[str], needle: Needle) -> BottleError:
    return BottleError(
        f"the files {safe_text(', '.join(holding))} {place.phrase} hold the real value of the "
        f"{needle.label}{place.reaches_the_agent}: the agent would read what it is only to "
        "hold a placeholder of",
        fix="move the value out of them (a secret's value stays outside the project or in its "
        "from_file, which no copy holds; a git upstream's: an ssh url with an `identity`), or "
        f"{place.way_out}",
    )


def value_in_archive(place: CopyPlace, hit: ArchiveHit) -> BottleError:
    return BottleError(
        f"the file {place.root}{hit.describe()} {place.phrase} holds the real value of the "
        f"{hit.needle.label}{place.reaches_the_agent}: the agent unpacks it (`tar xzf`, "
        "`unzip`) and would read what it is only to hold a placeholder of",
        fix=f"delete the archive or move it out of the project, or {place.way_out}",
    )


def value_in_history(place: CopyPlace, hit: HistoryHit, directory: str) -> BottleError:
    """`directory`: where the copy holds the objects, as the person finds it."""
    return BottleError(
        f"the git history at {safe_text(directory)} {place.phrase} holds the real value of the "
        f"{hit.needle.label}, in the {hit.type} {hit.oid}{place.reaches_the_agent}: committed "
        "once, it stays in the history after its file is changed or removed, and the agent "
        "reads it back with `git log -p`",
        fix="a committed value is to be taken as known: rotate it. To copy this history, "
        f"rewrite it without the value (`git log --all --find-object={hit.oid}` finds the "
        "commits; `git filter-repo --replace-text` rewrites them, then expire the reflog and "
        f"`git gc --prune=now`), or {place.way_out}",
    )


def history_unreadable(
    place: CopyPlace, unreadable: HistoryUnreadable, directory: str
) -> BottleError:
    return BottleError(
        f"the git objects at {safe_text(directory)} {place.phrase} cannot be read to search "
        f"them for real values: {safe_text(unreadable.detail)}",
        fix=f"repair the repository (`git fsck`), move it out of the project, or {place.way_out}",
    )
