"""The git gate's branch policy, table-driven: (ref, kind of update, settings) -> decision."""

from __future__ import annotations

import subprocess

import pytest

from bottle_engine.bundle.config import MAX_REF_COMPONENTS, MAX_REF_NAME_BYTES, GitUpstreamConfig
from bottle_engine.bundle.gitgate.policy import (
    RefUpdate,
    decide,
    is_ci_definition,
    malformed_ref,
    touches_manifest,
)
from bottle_engine.git import ZERO_OID

OLD = "1" * 40
NEW = "2" * 40


def upstream(**settings: object) -> GitUpstreamConfig:
    base: dict[str, object] = {
        "name": "origin",
        "url": "git@example.invalid:team/repo.git",
        "push_branches": ("agent/*", "main"),
    }
    return GitUpstreamConfig(**{**base, **settings})  # type: ignore[arg-type]


CASES = [
    # (ref, old, new, is_ancestor, settings, allowed, rule, force)
    ("refs/heads/main", OLD, NEW, True, {}, True, "allowed", False),
    ("refs/heads/agent/fix-1", ZERO_OID, NEW, None, {}, True, "allowed", False),
    ("refs/heads/agent/deep/nested", OLD, NEW, True, {}, True, "allowed", False),
    # New refs are files and directories in the gate's repository: bounded in length and depth.
    ("refs/heads/agent/" + "x" * 238, ZERO_OID, NEW, None, {}, True, "allowed", False),
    ("refs/heads/agent/" + "x" * 239, ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/" + "é" * 120, ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/" + "/".join("b" * 13), ZERO_OID, NEW, None, {}, True, "allowed", False),
    ("refs/heads/agent/" + "/".join("b" * 14), ZERO_OID, NEW, None, {}, False, "ref-name", False),
    # An existing ref (a person's) may keep its name; only a new one costs the gate a file.
    ("refs/heads/agent/" + "/".join("b" * 14), OLD, NEW, True, {}, True, "allowed", False),
    ("refs/tags/" + "/".join("b" * 30), ZERO_OID, NEW, None, {}, False, "branches-only", False),
    # Names git would not make reach the hook (receive-pack refuses them only after it); the
    # forwarding `git push` read `agent/x:refs/heads/main` as a refspec to main.
    ("refs/heads/agent/x:refs/heads/main", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/x:refs/heads/main", OLD, NEW, True, {}, False, "ref-name", False),
    ("refs/heads/agent/a b", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/a..b", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/x.lock", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/HEAD@{1}", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/.hidden", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/x^{tree}", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/v1.2-rc@home", ZERO_OID, NEW, None, {}, True, "allowed", False),
    # New branches git would read as another ref, an option or the default branch; one a
    # person made keeps its name. (Refused before push_branches: a name it matches too.)
    ("refs/heads/refs/heads/main", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/HEAD", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/-x", ZERO_OID, NEW, None, {}, False, "ref-name", False),
    ("refs/heads/agent/HEAD", ZERO_OID, NEW, None, {}, True, "allowed", False),
    ("refs/heads/agent/-x", ZERO_OID, NEW, None, {}, True, "allowed", False),
    ("refs/heads/HEAD", OLD, NEW, True, {"push_branches": ("*",)}, True, "allowed", False),
    ("refs/heads/release", OLD, NEW, True, {}, False, "push_branches", False),
    ("refs/heads/Main", OLD, NEW, True, {}, False, "push_branches", False),
    ("refs/heads/mainline", ZERO_OID, NEW, None, {}, False, "push_branches", False),
    ("refs/tags/v1.0", ZERO_OID, NEW, None, {}, False, "branches-only", False),
    ("refs/notes/commits", OLD, NEW, True, {}, False, "branches-only", False),
    ("refs/heads/main", OLD, NEW, False, {}, False, "allow_force_push", False),
    (
        "refs/heads/main",
        OLD,
        NEW,
        False,
        {"allow_force_push": True},
        True,
        "allow_force_push",
        True,
    ),
    ("refs/heads/main", OLD, ZERO_OID, None, {}, False, "allow_delete", False),
    ("refs/heads/main", OLD, ZERO_OID, None, {"allow_delete": True}, True, "allow_delete", False),
    # Settings never widen the branch list.
    (
        "refs/heads/other",
        OLD,
        NEW,
        False,
        {"allow_force_push": True},
        False,
        "push_branches",
        False,
    ),
    (
        "refs/heads/other",
        OLD,
        ZERO_OID,
        None,
        {"allow_delete": True},
        False,
        "push_branches",
        False,
    ),
    # No push_branches at all: nothing may be pushed.
    ("refs/heads/main", OLD, NEW, True, {"push_branches": ()}, False, "push_branches", False),
    ("refs/heads/x", OLD, NEW, True, {"push_branches": ("*",)}, True, "allowed", False),
]


@pytest.mark.parametrize(
    ("ref", "old", "new", "is_ancestor", "settings", "allowed", "rule", "force"), CASES
)
def test_decision_table(
    ref: str,
    old: str,
    new: str,
    is_ancestor: bool | None,
    settings: dict[str, object],
    allowed: bool,
    rule: str,
    force: bool,
) -> None:
    decision = decide(RefUpdate(ref, old, new), is_ancestor, upstream(**settings))

    assert (decision.allowed, decision.rule, decision.force) == (allowed, rule, force)


def test_refusal_names_the_branch_the_setting_and_the_allowed_globs() -> None:
    decision = decide(RefUpdate("refs/heads/release", OLD, NEW), True, upstream())

    assert "'release'" in decision.message
    assert "push_branches" in decision.message
    assert "'agent/*', 'main'" in decision.message


def test_ref_name_refusal_names_both_bounds_shortly_and_safely() -> None:
    ref = "refs/heads/agent/\x1b]52;c;" + "a/" * 40 + "end"
    decision = decide(RefUpdate(ref, ZERO_OID, NEW), None, upstream())

    assert not decision.allowed
    assert f"at most {MAX_REF_NAME_BYTES} bytes" in decision.message
    assert f"at most {MAX_REF_COMPONENTS} parts" in decision.message
    assert "\x1b" not in decision.message  # the agent's name is shown escaped
    assert len(decision.message) < 400  # and cut


def test_force_push_refusal_names_the_setting_and_the_way_out() -> None:
    decision = decide(RefUpdate("refs/heads/main", OLD, NEW), False, upstream())

    assert "allow_force_push" in decision.message
    assert "rebase or merge" in decision.message


@pytest.mark.parametrize(
    ("path", "touches"),
    [
        ("bottle.toml", True),
        ("deep/down/bottle.toml", True),
        ("deep/BOTTLE.TOML", True),  # what a case-insensitive disk opens as bottle.toml
        ("bottle\u200c.toml", True),  # what HFS+, which ignores zero-width and bidi marks, opens
        ("deep/Bottle\u202e.toml\ufeff", True),
        ("Agents\u200d/reviewer.md", True),
        ("Dockerfile", True),
        ("dockerfile", True),
        ("agents/reviewer.md", True),
        ("agents", True),  # a link (or file) where the guarded file's directory is
        ("Agents", True),
        ("agent", False),
        ("sub/Dockerfile", False),
        ("bottle.toml.bak", False),
        ("src/app.py", False),
    ],
)
def test_manifest_paths_the_gate_guards(path: str, touches: bool) -> None:
    assert touches_manifest(path, ("Dockerfile", "agents/reviewer.md")) is touches


@pytest.mark.parametrize(
    ("path", "runs"),
    [
        (".github/workflows/ci.yml", True),
        (".github/workflows/deep/ci.yml", True),
        (".github/actions/setup/action.yml", True),
        (".GitHub/Workflows/ci.YML", True),  # as a case-insensitive disk (and some forges) opens it
        (".github\u200c/workflows/ci.yml", True),  # a mark HFS+ ignores
        (".github", True),  # a link where the workflows have their directory
        (".github/workflows", True),
        (".gitlab-ci.yml", True),
        ("debian/.gitlab-ci.yml", True),
        ("JENKINSFILE", True),
        (".circleci/config.yml", True),
        (".woodpecker.yml", True),
        ("cloudbuild.yaml", True),
        (".tekton/push.yaml", True),
        # Not read by any forge by default: a workflow's name elsewhere, a prefix of one.
        ("docs/.github/workflows/ci.yml", False),
        ("sub/.gitlab-ci.yml", False),
        (".github/CODEOWNERS", False),
        (".github/workflows-old/ci.yml", False),
        (".gitlab-ci.yml.bak", False),
        ("src/app.py", False),
    ],
)
def test_ci_definitions_the_gate_guards(path: str, runs: bool) -> None:
    assert is_ci_definition(path) is runs


# Names at the edges of git's ref-name rules (`git help check-ref-format`).
REF_NAMES = [
    *("refs/heads/agent/x", "refs/heads/agent/v1.2-rc@home", "refs/heads/agent/é"),
    *("refs/heads/agent/a@b", "refs/heads/agent/-x", "refs/heads/agent/x.lockx"),
    *("refs/heads/agent/{x}", "refs/heads/agent/a.lock.lock", "refs/heads/agent/a\u2028b"),
    *("refs/heads/agent/x:refs/heads/main", "refs/heads/agent/a b", "refs/heads/agent/a\tb"),
    *("refs/heads/agent/a..b", "refs/heads/agent/x.lock", "refs/heads/agent/x.lock/y"),
    *("refs/heads/agent/HEAD@{1}", "refs/heads/agent/.hidden", "refs/heads/agent/x^{tree}"),
    *("refs/heads/agent/a\x1cb", "refs/heads/agent/a\x7fb", "refs/heads/agent/a\rb"),
    *("refs/heads/agent/", "refs/heads/agent//x", "refs/heads/agent/x.", "refs/heads/agent/a~1"),
    *("refs/heads/agent/a?", "refs/heads/agent/a*", "refs/heads/agent/a[", "refs/heads/a\\b"),
    *("refs/heads/agent/.", "refs/heads/agent/..", "refs/heads/agent/a/.lock", "@"),
    *("/refs/heads/x", "refs/heads/x/", "refs/heads/agent/@"),
]


@pytest.mark.parametrize("ref", REF_NAMES)
def test_a_malformed_ref_is_one_git_itself_refuses(ref: str) -> None:
    """`malformed_ref` stands in for git's check_refname_format inside the hook: held to the
    real `git check-ref-format`, so the two cannot drift apart unseen."""
    git = subprocess.run(["git", "check-ref-format", ref], capture_output=True, check=False)
    assert (malformed_ref(ref) is None) == (git.returncode == 0)
