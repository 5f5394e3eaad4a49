"""The git gate's branch policy: a pure decision per pushed ref.

`decide` sees only the ref update, whether it is a fast-forward, and the upstream's settings
from bottle.toml; the hook gathers those facts and acts on the answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from bottle_engine.bundle.config import (
    MANIFEST_NAME,
    MAX_REF_COMPONENTS,
    MAX_REF_NAME_BYTES,
    GitUpstreamConfig,
)
from bottle_engine.display import safe_text
from bottle_engine.git import ZERO_OID

BRANCH_PREFIX = "refs/heads/"

Rule = Literal[
    "branches-only",
    "ref-name",
    "symbolic-ref",
    "push_branches",
    "allow_delete",
    "allow_force_push",
    "allowed",
]
Kind = Literal["create", "update", "force", "delete"]


@dataclass(frozen=True)
class RefUpdate:
    """One line of a pre-receive hook's input: ``<old> <new> <ref>``."""

    ref: str
    old: str
    new: str

    @property
    def kind(self) -> Kind:
        if self.new == ZERO_OID:
            return "delete"
        if self.old == ZERO_OID:
            return "create"
        return "update"

    @property
    def branch(self) -> str | None:
        return self.ref[len(BRANCH_PREFIX) :] if self.ref.startswith(BRANCH_PREFIX) else None


@dataclass(frozen=True)
class Decision:
    """Whether a ref update may go upstream; `rule` names the setting that decided it."""

    allowed: bool
    rule: Rule
    message: str
    force: bool = False  # forward with a forced (non-fast-forward) update


def decide(
    update: RefUpdate,
    is_ancestor: bool | None,
    upstream: GitUpstreamConfig,
    alias_of: str | None = None,
) -> Decision:
    """Decide one pushed ref. `is_ancestor` tells whether old is an ancestor of new (None when
    the update creates or deletes the ref, where the question does not arise); `alias_of` is
    the ref the upstream's `update.ref` is a symbolic ref to, if it is one."""
    branch = update.branch
    if branch is None:
        return Decision(
            False,
            "branches-only",
            f"{safe_text(update.ref, 80)}: only branches (refs/heads/...) can be pushed "
            "through the git gate",
        )
    if alias_of is not None:
        # The upstream writes a push to it through to the target, which the rules below
        # never judged.
        return Decision(
            False,
            "symbolic-ref",
            f"branch {safe_text(branch, 80)!r} is a symbolic ref to {safe_text(alias_of, 80)} "
            f"on git upstream {upstream.name!r}: a push to it moves that ref; push to a "
            "branch of its own",
        )
    if update.kind == "create" and (
        problem := ref_name_problem(update.ref) or misleading_branch(branch)
    ):
        return Decision(False, "ref-name", problem)
    if problem := malformed_ref(update.ref):
        return Decision(False, "ref-name", problem)
    if not any(fnmatchcase(branch, pattern) for pattern in upstream.push_branches):
        allowed = ", ".join(repr(p) for p in upstream.push_branches) or "none"
        return Decision(
            False,
            "push_branches",
            f"branch {branch!r} is not in push_branches of git upstream {upstream.name!r} "
            f"(allowed: {allowed}); push to a matching branch, or add it to push_branches "
            "in bottle.toml",
        )
    if update.kind == "delete":
        if upstream.allow_delete:
            return Decision(True, "allow_delete", f"branch {branch!r} deleted (allow_delete)")
        return Decision(
            False,
            "allow_delete",
            f"deleting branch {branch!r} is refused: allow_delete is off for git upstream "
            f"{upstream.name!r}",
        )
    if update.kind == "create" or is_ancestor:
        return Decision(True, "allowed", f"branch {branch!r} may be pushed")
    if upstream.allow_force_push:
        return Decision(
            True, "allow_force_push", f"branch {branch!r} force-pushed (allow_force_push)", True
        )
    return Decision(
        False,
        "allow_force_push",
        f"force-push to branch {branch!r} is refused (it is not a fast-forward of "
        f"{update.old[:12]}): allow_force_push is off for git upstream {upstream.name!r}; "
        "fetch, rebase or merge onto the current branch and push again",
    )


# What git's check_refname_format refuses in a ref name: control characters, space, and
# ~ ^ : ? * [ \ anywhere; ".." and "@{" anywhere; a part that is empty, starts with '.' or ends
# with ".lock"; a name ending with '.' (tests/unit/test_gitgate_policy.py holds it to git's own).
_REF_FORBIDDEN = re.compile(
    r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^/|(?:^|/)\.|\.lock(?:/|$)|[/.]$"
)


def malformed_ref(ref: str) -> str | None:
    """Why `ref` is no name git would make, or None.

    receive-pack refuses such a name ("funny refname") only after the pre-receive hook, which
    forwards first: a pushed `refs/heads/agent/x:refs/heads/main` passed push_branches' `agent/*`
    and became the refspec `NEW:refs/heads/agent/x:refs/heads/main`, which `git push` splits at
    its last ':' into the source `NEW:refs/heads/agent/x` (the object at that path of NEW's
    tree: a gitlink names any commit, one the scan never read) and the destination main."""
    if ref == "@" or _REF_FORBIDDEN.search(ref):
        return (
            f"{safe_text(ref, 80)}: not a well-formed ref name (git refuses control characters, "
            "spaces, ~ ^ : ? * [ \\, '..', '@{', '//' and parts that start with '.' or end "
            "with '.lock'): push to a plain branch name"
        )
    return None


def ref_name_problem(ref: str) -> str | None:
    """Why the gate refuses to create a ref named `ref`, or None. Each new ref is a file in the
    gate's repository on the host, and each '/' in its name a directory: git bounds neither the
    length nor the depth (refs/heads/a/a/a/... made a directory per part)."""
    size = len(ref.encode("utf-8", "surrogateescape"))
    parts = ref.count("/") + 1
    if size <= MAX_REF_NAME_BYTES and parts <= MAX_REF_COMPONENTS:
        return None
    return (
        f"{safe_text(ref, 80)}: a new ref name of {size} bytes and {parts} parts; the git gate "
        f"takes names of at most {MAX_REF_NAME_BYTES} bytes and at most {MAX_REF_COMPONENTS} "
        "parts between '/': push to a shorter branch name"
    )


def misleading_branch(branch: str) -> str | None:
    """Why a new branch named `branch` would read as something else upstream, or None.

    Names git refs accept but git's branch names refuse (`git check-ref-format --branch`),
    or that git's name lookup takes for another ref:
    - "HEAD": every fresh clone fetches it as `origin/HEAD`, the name git and tools read as
      the upstream's default branch, which then held the agent's commit;
    - a leading '-': an option to the git commands a person's scripts run on branch names;
    - a leading "refs/": git reads a pushed destination `refs/heads/main` by its abbreviation
      rules against the remote's refs, so it matches `refs/heads/refs/heads/main` too: with
      both upstream, every push to main (the gate's forwards, a person's `git push origin
      main`) failed as matching more than one ref; with only that one, a push creating main
      updated it instead."""
    if branch != "HEAD" and not branch.startswith(("-", "refs/")):
        return None
    return (
        f"branch {safe_text(branch, 80)!r}: git takes a branch name that is HEAD or starts "
        "with '-' or 'refs/' for something else: push to another name"
    )


# The characters HFS+ (macOS's "Mac OS Extended") leaves out when it compares names, as git's
# is_hfs_dotgit lists them: "bottle\u200c.toml" is bottle.toml on such a volume.
_HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")


def _folded(path: str) -> str:
    return unicodedata.normalize("NFC", _HFS_IGNORED.sub("", path)).casefold()


def _guarded(folded: str, guarded: str) -> bool:
    """Whether a change at `folded` changes what is read at `guarded`: the path itself, or a
    file or link standing where `guarded` has a directory (a link there leads the path to the
    agent's own file). Both folded."""
    return folded == guarded or guarded.startswith(folded + "/")


def touches_manifest(path: str, protected: Iterable[str]) -> bool:
    """Whether a change to `path` (repository-relative) changes what a launch reads: a
    bottle.toml at any depth, one of the paths the engine protects, or a file or link standing
    where one of those paths has a directory. Compared as a case-insensitive or normalising
    file system (macOS) opens them: case-folded, NFC-normalised and without the characters HFS+
    ignores."""
    folded = _folded(path)
    if folded.rsplit("/", 1)[-1] == MANIFEST_NAME:
        return True
    return any(_guarded(folded, guarded) for guarded in map(_folded, protected))


# Where forges read, by default, what to run on a push (repository-relative, already folded).
# A forge runs these from the pushed commit, with the CI's secrets and open network.
CI_FILES = (
    ".gitlab-ci.yml",  # GitLab CI (the default of "CI/CD configuration file")
    ".gitlab-ci.yaml",  # GitLab CI, as set by many projects ("Custom CI config path")
    "debian/.gitlab-ci.yml",  # GitLab: the default path on Debian's instance (Salsa)
    "bitbucket-pipelines.yml",  # Bitbucket Pipelines
    "azure-pipelines.yml",  # Azure Pipelines
    "azure-pipelines.yaml",  # Azure Pipelines
    ".travis.yml",  # Travis CI
    "jenkinsfile",  # Jenkins multibranch pipelines
    ".drone.yml",  # Drone
    ".drone.yaml",  # Drone
    ".woodpecker.yml",  # Woodpecker, one pipeline
    ".woodpecker.yaml",  # Woodpecker, one pipeline
    "appveyor.yml",  # AppVeyor
    ".appveyor.yml",  # AppVeyor
    ".cirrus.yml",  # Cirrus CI
    ".cirrus.star",  # Cirrus CI, Starlark
    "cloudbuild.yaml",  # Google Cloud Build
    "cloudbuild.yml",  # Google Cloud Build
    "cloudbuild.json",  # Google Cloud Build
    "buildspec.yml",  # AWS CodeBuild
    "buildspec.yaml",  # AWS CodeBuild
)
CI_DIRECTORIES = (
    ".github/workflows",  # GitHub Actions; Gitea and Forgejo read it without their own
    ".github/actions",  # GitHub: local actions a workflow runs (uses: ./.github/actions/x)
    ".gitea/workflows",  # Gitea Actions; Forgejo reads it too
    ".gitea/actions",  # Gitea: local actions
    ".forgejo/workflows",  # Forgejo Actions
    ".forgejo/actions",  # Forgejo: local actions
    ".gitlab/ci",  # GitLab: files .gitlab-ci.yml conventionally includes
    ".circleci",  # CircleCI (config.yml, and the orbs and scripts beside it)
    ".azure-pipelines",  # Azure Pipelines
    ".woodpecker",  # Woodpecker, a pipeline per file
    ".buildkite",  # Buildkite (pipeline.yml, hooks)
    ".semaphore",  # Semaphore
    ".tekton",  # Tekton Pipelines as Code
)


def is_ci_definition(path: str) -> bool:
    """Whether a change to `path` (repository-relative) changes what a forge runs on push: a
    file of `CI_FILES`, anything under `CI_DIRECTORIES`, or a file or link standing where
    either has a directory. Compared folded, as `touches_manifest` compares."""
    folded = _folded(path)
    return any(_guarded(folded, guarded) for guarded in (*CI_FILES, *CI_DIRECTORIES)) or any(
        folded.startswith(directory + "/") for directory in CI_DIRECTORIES
    )
