"""The paths a push may not change unless its upstream opts out: the bottle's manifest and the
files it reads (they decide what leaves the bottle), and the CI definitions a forge runs on push
with the CI's secrets and open network (poisoned pipeline execution). Which paths count is
`policy`'s (`touches_manifest`, `is_ci_definition`); here, finding them in a push: in each new
commit's changes, and in a branch that takes a guarded file whole from older history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bottle_engine.bundle.config import GitUpstreamConfig
from bottle_engine.bundle.gitgate.objects import (
    NewObject,
    branch_tips,
    changed_paths,
    paths_between,
    tree_values,
)
from bottle_engine.bundle.gitgate.policy import RefUpdate, is_ci_definition, touches_manifest
from bottle_engine.display import safe_text


@dataclass(frozen=True)
class PathGuard:
    """Paths a push may not change unless the upstream opts out, and what a refusal says."""

    touches: Callable[[str], bool]  # whether a change to a repository-relative path counts
    what: str  # the refusal's first line: what the push changes and why that matters
    way_on: str  # its last: how to go on


def path_guards(upstream: GitUpstreamConfig) -> list[PathGuard]:
    """The guards `upstream` keeps on: the manifest's (a manifest decides what leaves a
    bottle) and the CI definitions' (a forge runs them on push with the CI's secrets and open
    network, before any person reviews the branch: poisoned pipeline execution)."""
    name = upstream.name
    guards = []
    if not upstream.allow_manifest_changes:
        protected = upstream.protected_paths
        guards.append(
            PathGuard(
                lambda path: touches_manifest(path, protected),
                "push refused: it changes the bottle's manifest or a file the manifest "
                "reads, which decide what leaves the bottle:",
                "leave these files as they are (a person changes them outside the bottle; "
                "a branch's own may only become what an upstream branch holds now), "
                f"or set allow_manifest_changes = true for git upstream {name!r} in bottle.toml",
            )
        )
    if not upstream.allow_ci_changes:
        guards.append(
            PathGuard(
                is_ci_definition,
                "push refused: it changes a CI definition, which the forge runs on push with "
                "the CI's secrets and network:",
                "leave these files as they are (a person changes CI definitions outside the "
                "bottle; a branch's own may only become what an upstream branch holds now), "
                f"or set allow_ci_changes = true for git upstream {name!r} in bottle.toml "
                "(the forge then runs what the agent writes, with the CI's secrets)",
            )
        )
    return guards


def guarded_changes(
    git_dir: Path, touches: Callable[[str], bool], objects: list[NewObject]
) -> list[str]:
    """A line per new commit and path that `touches` counts (a guarded path changed)."""
    lines = []
    for commit in [o.oid for o in objects if o.commit == o.oid]:
        for path in changed_paths(git_dir, commit):
            if touches(path):
                lines.append(f"commit {commit[:12]}: {safe_text(path, 300)}")
    return lines


def older_guarded(
    git_dir: Path, touches: Callable[[str], bool], updates: list[RefUpdate]
) -> list[str]:
    """A line per pushed ref and guarded path whose content at the new tip differs from the
    old tip and from every other branch of the upstream now (for a new branch: every such
    path of its tip).

    Needed beside `guarded_changes`, which finds content no parent had: a merge, or a new
    branch, can take a file whole from an older upstream commit (a manifest or workflow from
    before a person tightened it) and so change nothing there while the branch's file goes
    back."""
    tips = branch_tips(git_dir)
    lines = []
    for update in updates:
        old = None if update.kind == "create" else update.old
        paths = [path for path in paths_between(git_dir, old, update.new) if touches(path)]
        others = [tip for ref, tip in tips.items() if ref != update.ref]
        if not paths:
            continue
        values = tree_values(
            git_dir, [(commit, path) for path in paths for commit in [update.new, *others]]
        )
        width = 1 + len(others)
        for index, path in enumerate(paths):
            new_value, *held = values[index * width : (index + 1) * width]
            if new_value not in held:
                lines.append(
                    f"{safe_text(update.ref)}: {safe_text(path, 300)} is not what any "
                    "upstream branch holds now"
                )
    return lines
