"""The git gate's repositories and what happens on a push or a fetch.

Each upstream gets a bare repository ``<repos_dir>/<name>.git`` served by ``git daemon``. Before
every clone, fetch or push (the daemon's access hook) the gate mirrors the upstream's branches
and tags into it; the pre-receive hook decides each pushed ref with `policy.decide`, scans the
new commits, and forwards the accepted push to the upstream before the gate's own refs move,
so the agent's push succeeds exactly when the upstream took it.
"""

from __future__ import annotations

import fcntl
import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate.policy import Decision, RefUpdate, decide
from bottle_engine.bundle.gitgate.scan import Finding, known_secrets, scan_commit_diff
from bottle_engine.errors import BottleError
from bottle_engine.git import (
    GitError,
    is_ancestor,
    is_local_url,
    is_ssh_url,
    run_git,
    ssh_command,
)

AUDIT_LOG = "git-gate.jsonl"  # in the bottle's state dir: one line per push and its verdict
MIRROR_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
HOOK_MODULE = "bottle_engine.bundle.gitgate.hook"


def repo_path(repos_dir: Path, name: str) -> Path:
    return repos_dir / f"{name}.git"


def upstream_env(upstream: GitUpstreamConfig) -> dict[str, str]:
    """Environment for git commands that talk to `upstream`: its own key and pinned host key."""
    env = {"GIT_TERMINAL_PROMPT": "0"}
    if is_ssh_url(upstream.url):
        if not upstream.known_hosts_file:
            raise BottleError(
                f"git upstream {upstream.name!r} ({upstream.url}) is reached over ssh but has "
                "no known host key",
                fix="set known_host_key for this upstream in bottle.toml",
            )
        env["GIT_SSH_COMMAND"] = ssh_command(upstream.identity_file, upstream.known_hosts_file)
    return env


def check_upstreams(config: BundleConfig) -> None:
    """Refuse to start on a configuration the gate could not honour safely."""
    names = [u.name for u in config.git]
    for upstream in config.git:
        if not upstream.name or "/" in upstream.name or upstream.name.startswith("."):
            raise BottleError(
                f"git upstream name {upstream.name!r} cannot be used as a repository name",
                fix="use letters, digits, '-' and '_' for git upstream names in bottle.toml",
            )
        if names.count(upstream.name) > 1:
            raise BottleError(f"git upstream {upstream.name!r} is configured twice")
        upstream_env(upstream)


def prepare_repos(config: BundleConfig, config_path: Path, repos_dir: Path) -> Path:
    """Create the gate repositories and hooks; returns the daemon's access-hook script."""
    check_upstreams(config)
    repos_dir.mkdir(parents=True, exist_ok=True)
    hook_prefix = [sys.executable, "-m", HOOK_MODULE]
    for upstream in config.git:
        git_dir = repo_path(repos_dir, upstream.name)
        if not (git_dir / "HEAD").exists():
            run_git(["init", "--quiet", "--bare", str(git_dir)], doing="creating the gate repo")
        for key, value in (
            ("receive.denyNonFastForwards", "false"),  # the hook decides, naming the rule
            ("receive.denyDeletes", "false"),
            ("core.logAllRefUpdates", "false"),
            ("gc.auto", "0"),
        ):
            run_git(["config", key, value], doing="configuring the gate repo", git_dir=git_dir)
        _write_script(
            git_dir / "hooks" / "pre-receive",
            [
                *hook_prefix,
                "pre-receive",
                "--config",
                str(config_path),
                "--upstream",
                upstream.name,
            ],
        )
    access_hook = repos_dir / "access-hook"
    _write_script(access_hook, [*hook_prefix, "access", "--config", str(config_path)], args=True)
    return access_hook


def _write_script(path: Path, command: Sequence[str], *, args: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tail = ' "$@"' if args else ""
    path.write_text(f"#!/bin/sh\nexec {shlex.join(command)}{tail}\n")
    path.chmod(0o755)


@contextmanager
def repo_lock(git_dir: Path) -> Iterator[None]:
    """Serialise mirroring and forwarding on one gate repository."""
    with (git_dir / "gate.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mirror(git_dir: Path, upstream: GitUpstreamConfig) -> None:
    """Bring the gate's branches and tags to the upstream's current state."""
    env = upstream_env(upstream)
    with repo_lock(git_dir):
        run_git(
            [
                "fetch",
                "--quiet",
                "--prune",
                "--no-write-fetch-head",
                upstream.url,
                *MIRROR_REFSPECS,
            ],
            doing=f"fetching from git upstream {upstream.name!r} ({upstream.url})",
            git_dir=git_dir,
            env=env,
        )
        head = run_git(
            ["ls-remote", "--symref", upstream.url, "HEAD"],
            doing=f"reading the default branch of git upstream {upstream.name!r}",
            git_dir=git_dir,
            env=env,
        ).stdout
        for line in head.splitlines():
            if line.startswith("ref: ") and line.endswith("\tHEAD"):
                target = line[len("ref: ") : -len("\tHEAD")]
                run_git(["symbolic-ref", "HEAD", target], doing="setting HEAD", git_dir=git_dir)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one push: either refused (with the lines the agent sees) or accepted."""

    accepted: bool
    lines: tuple[str, ...]


def parse_updates(stdin_text: str) -> list[RefUpdate]:
    updates = []
    for line in stdin_text.splitlines():
        if line.strip():
            old, new, ref = line.split(maxsplit=2)
            updates.append(RefUpdate(ref=ref, old=old, new=new))
    return updates


def judge_push(
    git_dir: Path, config: BundleConfig, upstream: GitUpstreamConfig, updates: list[RefUpdate]
) -> tuple[list[tuple[RefUpdate, Decision]], Verdict | None]:
    """Policy and secret scan for a push; returns the decisions and a refusal if any."""
    decisions = []
    for update in updates:
        ancestor = is_ancestor(git_dir, update.old, update.new) if update.kind == "update" else None
        decisions.append((update, decide(update, ancestor, upstream)))
    refused = [d.message for _, d in decisions if not d.allowed]
    if refused:
        return decisions, Verdict(False, ("push refused by the branch policy:", *refused))
    findings = scan_push(git_dir, config, [u for u, _ in decisions if u.kind != "delete"])
    if findings:
        return decisions, Verdict(
            False,
            (
                "push refused: the pushed commits add secrets:",
                *(f.describe() for f in findings),
                "remove them from every commit (e.g. `git rebase -i`, or `git commit --amend`) "
                "and push again; secrets reach services only through the bottle's proxy",
            ),
        )
    return decisions, None


def scan_push(git_dir: Path, config: BundleConfig, updates: list[RefUpdate]) -> list[Finding]:
    """Findings in every commit the push brings that the gate (the upstream mirror) lacks."""
    if not updates:
        return []
    commits = run_git(
        ["rev-list", "--reverse", "--topo-order", *(u.new for u in updates), "--not", "--all"],
        doing="listing the pushed commits",
        git_dir=git_dir,
    ).stdout.split()
    secrets = known_secrets(config.secrets)
    findings: list[Finding] = []
    for commit in commits:
        diff = run_git(
            [
                "diff-tree",
                "-p",
                "-U0",
                "--root",
                "-m",
                "--first-parent",  # a merge is judged by what it adds to the branch it lands on
                "--no-renames",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--no-commit-id",
                commit,
            ],
            doing=f"reading commit {commit[:12]}",
            git_dir=git_dir,
        ).stdout
        findings.extend(scan_commit_diff(commit, diff, secrets))
    return findings


def forward(
    git_dir: Path, upstream: GitUpstreamConfig, decisions: list[tuple[RefUpdate, Decision]]
) -> None:
    """Push the accepted updates to the upstream, all or nothing; raises `GitError` if refused."""
    args = ["push", "--atomic", "--no-verify", "--porcelain"]
    if is_local_url(upstream.url):
        # A local upstream's receive-pack would inherit our hook's quarantine and refuse to
        # update refs; over ssh the remote side starts with a clean environment anyway.
        args.append("--receive-pack=env -u GIT_QUARANTINE_PATH git-receive-pack")
    refspecs = []
    for update, decision in decisions:
        if update.kind == "delete":
            refspecs.append(f":{update.ref}")
            continue
        if decision.force:
            # Forced only over the commit the gate saw, never over work pushed meanwhile.
            args.append(f"--force-with-lease={update.ref}:{update.old}")
        refspecs.append(f"{update.new}:{update.ref}")
    with repo_lock(git_dir):
        run_git(
            [*args, upstream.url, *refspecs],
            doing=f"forwarding the push to git upstream {upstream.name!r}",
            git_dir=git_dir,
            env=upstream_env(upstream),
        )


def pre_receive(
    git_dir: Path, config: BundleConfig, upstream: GitUpstreamConfig, stdin_text: str
) -> Verdict:
    """The whole pre-receive decision: policy, scan, then forwarding upstream."""
    updates = parse_updates(stdin_text)
    decisions, refusal = judge_push(git_dir, config, upstream, updates)
    if refusal is not None:
        return refusal
    try:
        forward(git_dir, upstream, decisions)
    except GitError as exc:
        return Verdict(
            False,
            (
                f"the upstream {upstream.name!r} refused the push:",
                *(line for line in (exc.stderr or exc.message).splitlines() if line.strip()),
                "fetch (the gate mirrors the upstream), rebase or merge, and push again",
            ),
        )
    return Verdict(True, tuple(f"{u.ref}: forwarded to {upstream.name!r}" for u in updates))


def audit_push(
    config: BundleConfig, upstream: GitUpstreamConfig, stdin_text: str, verdict: Verdict
) -> None:
    """Append the push and its verdict to the bottle's git gate audit log."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "upstream": upstream.name,
        "refs": [asdict(update) for update in parse_updates(stdin_text)],
        "accepted": verdict.accepted,
        "detail": list(verdict.lines),
    }
    log = Path(config.state_dir) / AUDIT_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")


def find_upstream(config: BundleConfig, name: str) -> GitUpstreamConfig:
    for upstream in config.git:
        if upstream.name == name:
            return upstream
    known = ", ".join(u.name for u in config.git) or "none"
    raise BottleError(f"no git upstream named {name!r} in this bottle (known: {known})")
