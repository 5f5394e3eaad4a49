"""The git gate's repositories and what happens on a push or a fetch.

Each upstream gets a bare repository ``<repos_dir>/<name>.git`` served by ``git daemon``. Before
every clone, fetch or push (the daemon's access hook) the gate mirrors the upstream's branches
and tags into it. The pre-receive hook decides each pushed ref with `policy.decide`, refuses a
value that is not a commit, scans every object the push would send as stored bytes (`scan`),
refuses changes to the manifest, the files it reads and the CI definitions (`guards`, unless
the upstream allows them), and only then forwards the push to the upstream, before the gate's
own refs move, so the agent's push succeeds exactly when the upstream took it. What it forwards
is the scanned objects as the gate packs them, never the agent's pack (`forwarding`).
"""

from __future__ import annotations

import fcntl
import json
import shlex
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bottle_engine.bundle.audit import append_line, cap
from bottle_engine.bundle.config import GIT_GATE_LOG_NAME, BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate import store
from bottle_engine.bundle.gitgate.forwarding import (
    borrow_upstream_store,
    forwarding_objects,
    upstream_store,
)
from bottle_engine.bundle.gitgate.guards import guarded_changes, older_guarded, path_guards
from bottle_engine.bundle.gitgate.objects import (
    GIT_MODES,
    GITLINK_MODE,
    NewObject,
    branch_tips,
    infos,
    new_objects,
    tree_entries,
)
from bottle_engine.bundle.gitgate.policy import Decision, RefUpdate, decide
from bottle_engine.bundle.gitgate.scan import Finding, ScanLimits, Scanner, known_secrets
from bottle_engine.bundle.gitgate.served import (
    drop_incoming_objects,
    incoming_store,
    refuse_served_values,
)
from bottle_engine.bundle.secret_forms import ValueSearch
from bottle_engine.display import safe_text
from bottle_engine.errors import BottleError
from bottle_engine.git import (
    ZERO_OID,
    GitError,
    UnclearHostError,
    is_ancestor,
    is_local_url,
    is_ssh_url,
    object_infos,
    output_lines,
    read_objects,
    run_git,
    ssh_command,
    upstream_host,
)

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
        try:
            upstream_host(upstream.url)  # what the review named is where the gate connects
        except UnclearHostError as exc:
            raise BottleError(
                f"git upstream {upstream.name!r}: cannot tell which host {safe_text(upstream.url)} "
                f"reaches ({exc})",
                fix="write the url with one user and one host in bottle.toml",
            ) from exc
        upstream_env(upstream)


def prepare_repos(config: BundleConfig, config_path: Path, repos_dir: Path) -> Path:
    """Create the gate repositories and hooks; returns the daemon's access-hook script."""
    check_upstreams(config)
    repos_dir.mkdir(parents=True, exist_ok=True)
    hook_prefix = [sys.executable, "-m", HOOK_MODULE]
    for upstream in config.git:
        git_dir = repo_path(repos_dir, upstream.name)
        # Made afresh at every start, never reused: the repository lives in the state dir,
        # which outlives the bundle, and a bundle the agent's traffic took over could leave a
        # config there naming hooks of its own (`core.hooksPath`), commands
        # (`core.alternateRefsCommand`), replace refs or alternates that change what the scan
        # reads; the next start (`resume`) ran them. The mirror fetches the upstream again.
        _remove_repo(git_dir)
        _remove_repo(upstream_store(git_dir))
        _remove_repo(incoming_store(git_dir))
        run_git(["init", "--quiet", "--bare", str(git_dir)], doing="creating the gate repo")
        run_git(
            ["init", "--quiet", "--bare", str(upstream_store(git_dir))],
            doing="creating the gate's store of the upstream's objects",
        )
        run_git(
            ["init", "--quiet", "--bare", str(incoming_store(git_dir))],
            doing="creating the repository the gate fetches the upstream into",
        )
        borrow_upstream_store(git_dir)
        borrow_upstream_store(incoming_store(git_dir), upstream_store(git_dir))
        for key, value in (
            ("receive.denyNonFastForwards", "false"),  # the hook decides, naming the rule
            ("receive.denyDeletes", "false"),
            ("core.logAllRefUpdates", "false"),
            ("gc.auto", "0"),
            # Bounds the pack the agent sends; receive-pack stops reading past it.
            ("receive.maxInputSize", str(upstream.max_push_bytes)),
            # Keep every pushed pack as a pack: unpacked, a few bytes of delta become a loose
            # object of any size, and 99 of them filled the disk before the hook ever ran.
            ("receive.unpackLimit", "1"),
            # Malformed objects (a tree naming `.git` or `..`, bad modes) never enter the gate,
            # so they can neither reach the upstream nor a checkout a person makes later.
            ("receive.fsckObjects", "true"),
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
    _write_script(
        access_hook,
        [*hook_prefix, "access", "--config", str(config_path), "--repos-dir", str(repos_dir)],
        args=True,
    )
    return access_hook


def _remove_repo(git_dir: Path) -> None:
    if git_dir.parent.is_symlink():  # the upstream stores' directory, planted as a link
        git_dir.parent.unlink()
    if git_dir.is_symlink() or git_dir.is_file():
        git_dir.unlink()
    elif git_dir.exists():
        shutil.rmtree(git_dir)


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


def mirror(git_dir: Path, upstream: GitUpstreamConfig, served: ValueSearch) -> None:
    """Bring the gate's branches and tags to the upstream's current state: its objects into the
    incoming store, which nothing serves; once no new object holds a value of `served`
    (`served.refuse_served_values`), into the upstream store (`forwarding`), which the gate
    repository borrows; then its refs."""
    env = upstream_env(upstream)
    with repo_lock(git_dir):
        _fetch_refs(
            incoming_store(git_dir),
            upstream.url,
            f"fetching from git upstream {upstream.name!r} ({upstream.url})",
            env,
        )
        refuse_served_values(git_dir, upstream, served)
        # A local fetch sends what the incoming tips reach and the store lacks: the searched.
        _fetch_refs(
            upstream_store(git_dir),
            str(incoming_store(git_dir)),
            f"taking the searched objects of git upstream {upstream.name!r}",
        )
        drop_incoming_objects(git_dir)
        # The objects are there already (borrowed): this moves refs only.
        _fetch_refs(
            git_dir,
            str(upstream_store(git_dir)),
            f"taking the refs of git upstream {upstream.name!r}",
        )
        listing = run_git(
            ["ls-remote", "--symref", "--", upstream.url, "HEAD", "refs/heads/*"],
            doing=f"reading the symbolic refs of git upstream {upstream.name!r}",
            git_dir=git_dir,
            env=env,
        ).stdout
        aliases = symbolic_refs(listing)
        if target := aliases.pop("HEAD", None):
            run_git(["symbolic-ref", "HEAD", target], doing="setting HEAD", git_dir=git_dir)
        (git_dir / SYMBOLIC_REFS_NAME).write_text(json.dumps(aliases))


# The upstream's branches that are symbolic refs, as the last mirror saw them (name: target):
# the mirror's fetch takes them as plain branches, but the upstream writes a push to one
# through to its target. Only protocol v2 lists them (v0, an ssh server that does not accept
# GIT_PROTOCOL, names HEAD's alone), so an upstream speaking v0 hides them from the gate.
SYMBOLIC_REFS_NAME = "upstream-symbolic-refs.json"


def symbolic_refs(listing: str) -> dict[str, str]:
    """Name to target of each symbolic ref in `git ls-remote --symref` output."""
    aliases = {}
    for line in output_lines(listing):
        if line.startswith("ref: "):
            target, _, name = line[len("ref: ") :].partition("\t")
            aliases[name] = target
    return aliases


def upstream_symbolic_refs(git_dir: Path) -> dict[str, str]:
    """The upstream's symbolic branches the last mirror recorded (none before one)."""
    try:
        return dict(json.loads((git_dir / SYMBOLIC_REFS_NAME).read_text()))
    except FileNotFoundError:
        return {}


def _fetch_refs(git_dir: Path, source: str, doing: str, env: dict[str, str] | None = None) -> None:
    """Fetch `source`'s branches and tags into `git_dir`, dropping those it no longer has."""
    run_git(
        # `--`: the url is the manifest's text; "--upload-pack=CMD" where an option may stand
        # runs CMD in the bundle, which holds the secrets (every git call here).
        ["fetch", "--quiet", "--prune", "--no-write-fetch-head", "--", source, *MIRROR_REFSPECS],
        doing=doing,
        git_dir=git_dir,
        env=env,
    )


@dataclass(frozen=True)
class Verdict:
    """The outcome of one push: either refused (with the lines the agent sees) or accepted."""

    accepted: bool
    lines: tuple[str, ...]


def parse_updates(stdin_text: str) -> list[RefUpdate]:
    """receive-pack's updates, a line each (`output_lines`): split anywhere else, the hook
    would judge and forward a name the agent made up beside the one it pushed."""
    updates = []
    for line in output_lines(stdin_text):
        if line.strip():
            old, new, ref = line.split(maxsplit=2)
            updates.append(RefUpdate(ref=ref, old=old, new=new))
    return updates


@dataclass(frozen=True)
class Judgement:
    """A push judged: its refs' decisions, and either the new objects the gate scanned (the
    only ones it may forward) or the lines of its refusal."""

    decisions: list[tuple[RefUpdate, Decision]]
    scanned: list[str] = field(default_factory=list)
    refusal: tuple[str, ...] = ()


def judge_push(
    git_dir: Path, config: BundleConfig, upstream: GitUpstreamConfig, updates: list[RefUpdate]
) -> Judgement:
    """Policy, object types, secret scan and manifest guard for a push. Nothing is forwarded
    unless every pushed value passed all four."""
    lies = stale_old_values(git_dir, updates)
    if lies:
        return Judgement(
            [],
            refusal=(
                "push refused: it names old values that are not what the gate holds:",
                *lies[:MAX_REPORTED],
                *_more(len(lies)),
                "fetch (the gate mirrors the upstream), rebase or merge, and push again",
            ),
        )
    decisions = []
    aliases = upstream_symbolic_refs(git_dir)
    for update in updates:
        ancestor = None
        if update.kind == "update" and _is_commit(git_dir, update.new):
            ancestor = is_ancestor(git_dir, update.old, update.new)
        decision = decide(update, ancestor, upstream, aliases.get(update.ref))
        decisions.append((update, decision))
    refused = [d.message for _, d in decisions if not d.allowed]
    if refused:
        return Judgement(
            decisions,
            refusal=(
                "push refused by the branch policy:",
                *refused[:MAX_REPORTED],
                *_more(len(refused)),
            ),
        )
    pushed = [u for u, _ in decisions if u.kind != "delete"]
    not_commits = non_commit_values(git_dir, pushed)
    if not_commits:
        return Judgement(
            decisions,
            refusal=(
                "push refused: a branch can only point at a commit:",
                *not_commits,
                "push commits (e.g. `git push origin HEAD:refs/heads/BRANCH`)",
            ),
        )
    objects = new_objects(git_dir, [u.new for u in pushed])
    findings = scan_push(git_dir, config, upstream, pushed, objects)
    if findings:
        return Judgement(
            decisions,
            refusal=(
                "push refused: the pushed objects hold secrets or cannot be scanned:",
                *(f.describe() for f in findings[:MAX_REPORTED]),
                *_more(len(findings)),
                "remove them from every commit (e.g. `git rebase -i`, or `git commit --amend`) "
                "and push again; secrets reach services only through the bottle's proxy",
            ),
        )
    for guard in path_guards(upstream):
        changes = guarded_changes(git_dir, guard.touches, objects)
        changes += older_guarded(git_dir, guard.touches, pushed)
        if changes:
            return Judgement(
                decisions,
                refusal=(guard.what, *changes[:MAX_REPORTED], *_more(len(changes)), guard.way_on),
            )
    return Judgement(decisions, scanned=[o.oid for o in objects])


MAX_REPORTED = 50  # refusal lines per reason; the rest are counted
# git-gate.jsonl rotates at this size into .1 and .2 (`audit.append_line`): at most 24 MiB.
GIT_GATE_LOG_MAX_BYTES = 8 * 1024 * 1024


def _more(count: int) -> tuple[str, ...]:
    return (f"... and {count - MAX_REPORTED} more",) if count > MAX_REPORTED else ()


def stale_old_values(git_dir: Path, updates: list[RefUpdate]) -> list[str]:
    """A line per pushed branch whose old value is not the gate's (the upstream's, as the access
    hook just mirrored it; none: the zero id).

    The old value is the client's word, and git checks it only after the hook: naming an
    ancestor of the pushed commit as the old value of a branch that does not exist made a
    creation look like a fast-forward, which skipped the rules for new refs (name bounds, the
    ref charge, the manifest guard's look at a new branch's every manifest file) and was
    forwarded: the upstream created the branch."""
    tips = branch_tips(git_dir)
    lines = []
    for update in updates:
        if update.branch is None:
            continue  # refused by the branch policy whatever its values
        held = tips.get(update.ref, ZERO_OID)
        if update.old != held:
            shown = "no such branch" if held == ZERO_OID else held[:12]
            lines.append(
                f"{safe_text(update.ref, 80)}: the push says it was at {update.old[:12]}; "
                f"the gate holds {shown}"
            )
    return lines


def _is_commit(git_dir: Path, oid: str) -> bool:
    return object_infos(git_dir, [oid])[0].type == "commit"


def non_commit_values(git_dir: Path, updates: list[RefUpdate]) -> list[str]:
    """A line per pushed ref whose new value is not a commit (a blob, a tree, an annotated tag).

    Checked before anything is forwarded: a forwarding push of such a value would make the
    upstream store it before refusing the ref update."""
    found = []
    for update, info in zip(updates, object_infos(git_dir, [u.new for u in updates]), strict=True):
        if info.type != "commit":
            found.append(
                f"{safe_text(update.ref)}: the pushed value {update.new[:12]} is a {info.type} "
                "object, not a commit"
            )
    return found


def scan_push(  # noqa: C901 - one pass over every object the push stores, kept whole to audit
    git_dir: Path,
    config: BundleConfig,
    upstream: GitUpstreamConfig,
    updates: list[RefUpdate],
    objects: list[NewObject],
) -> list[Finding]:
    """Findings in everything the push would send upstream: ref names, every name in a new
    tree, every new blob as bytes, and every new commit and tag object whole (message, author,
    committer)."""
    limits = ScanLimits(upstream.max_blob_bytes, upstream.max_scan_bytes)
    scanner = Scanner(known_secrets(config.secrets), limits)
    findings: list[Finding] = []
    for update in updates:
        findings += scanner.name("", "the name of a pushed ref", update.ref)
    types = infos(git_dir, [o.oid for o in objects])
    trees = [o for o in objects if types[o.oid].type == "tree"]
    tree_bytes = sum(types[o.oid].size for o in trees)
    if tree_bytes > limits.max_scan_bytes:
        findings.append(
            Finding(
                "",
                "the push",
                None,
                f"refused unscanned: {tree_bytes} bytes of new trees, over the bound of "
                f"{limits.max_scan_bytes} bytes per push",
            )
        )
        return findings
    names, secret_names = _scan_names(git_dir, scanner, trees)
    findings += names
    if scanner.exhausted:
        return findings
    to_read = []
    budget = scanner.scanned
    for obj in objects:
        info = types[obj.oid]
        if info.type not in ("blob", "commit", "tag"):
            continue
        if info.type == "blob" and info.size > limits.max_blob_bytes:
            findings.append(
                Finding(
                    obj.commit,
                    _shown_path(obj, secret_names),
                    None,
                    f"refused unscanned: {info.size} bytes, over the bound of "
                    f"{limits.max_blob_bytes} bytes per file",
                )
            )
            continue
        budget += info.size
        to_read.append(obj)
    if budget > limits.max_scan_bytes:
        findings.append(
            Finding(
                "",
                "the push",
                None,
                f"refused unscanned: {budget} bytes of new objects, over the bound of "
                f"{limits.max_scan_bytes} bytes per push",
            )
        )
        return findings
    by_oid = {obj.oid: obj for obj in to_read}
    for info, content in read_objects(git_dir, list(by_oid)):
        obj = by_oid[info.oid]
        if info.type == "blob":
            findings += scanner.blob(obj.commit, _shown_path(obj, secret_names), content)
        else:
            what = "the commit message and headers" if info.type == "commit" else "a tag object"
            findings += scanner.message(obj.commit, what, content)
        if scanner.exhausted:
            break
    return findings


BAD_MODE = "refused: not a mode git writes (100644, 100755, 120000, 40000 or 160000)"


def _scan_names(
    git_dir: Path, scanner: Scanner, trees: list[NewObject]
) -> tuple[list[Finding], set[str]]:
    """Findings in every name the push's new trees hold, and the paths that hold a secret.

    Read from the trees themselves, entry by entry: a name in a new tree goes upstream whatever
    object it names (a blob seen at another path, one the upstream has, a gitlink), and may
    hold a newline. A gitlink's commit id is read too: its 20 bytes are the pusher's choice; so
    is each mode's spelling, which must be one git writes (`GIT_MODES`)."""
    by_oid = {tree.oid: tree for tree in trees}
    findings: list[Finding] = []
    secret_names: set[str] = set()
    for info, content in read_objects(git_dir, list(by_oid)):
        tree = by_oid[info.oid]
        prefix = f"{tree.path}/" if tree.path else ""
        for entry in tree_entries(content):
            path = prefix + entry.name.decode("utf-8", "replace")
            found = scanner.name(tree.commit, "a file or directory name", path)
            if entry.mode == GITLINK_MODE:
                found += scanner.name(tree.commit, "a submodule's commit id", entry.oid)
            if entry.mode not in GIT_MODES:
                findings.append(Finding(tree.commit, "a tree entry's mode", None, BAD_MODE))
            if found:
                secret_names.add(path)
                findings += found
            if scanner.exhausted:
                return findings, secret_names
    return findings, secret_names


def _shown_path(obj: NewObject, secret_names: set[str]) -> str:
    """The path to show for `obj`; never one whose name holds a secret."""
    return "(a path whose name holds a secret)" if obj.path in secret_names else obj.path


def forward(
    git_dir: Path,
    upstream: GitUpstreamConfig,
    decisions: list[tuple[RefUpdate, Decision]],
    scanned: list[str],
) -> None:
    """Push the accepted updates to the upstream, all or nothing, sending the `scanned` objects
    as the gate packs them (`forwarding`); raises `GitError` if refused."""
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
        # Peeled: `git push` first matches a source against the gate repository's refs by
        # name, and a branch named as this id (`refs/heads/<id>`) sent its own commit instead;
        # `<id>^{commit}` is no ref's name, so it reads as the object the gate judged.
        refspecs.append(f"{update.new}^{{commit}}:{update.ref}")
    with repo_lock(git_dir), forwarding_objects(git_dir, scanned) as objects:
        run_git(
            [*args, "--", upstream.url, *refspecs],
            doing=f"forwarding the push to git upstream {upstream.name!r}",
            git_dir=git_dir,
            env={**upstream_env(upstream), **objects},
        )


def pre_receive(
    git_dir: Path,
    config: BundleConfig,
    upstream: GitUpstreamConfig,
    stdin_text: str,
    refs_total: int = 0,
) -> Verdict:
    """The whole pre-receive decision: the number of refs, the store budget (the pack and the
    new refs), policy, scan, then forwarding upstream. `refs_total` counts the input's lines
    where `stdin_text` holds only the first (`hook.read_push_input`)."""
    updates = parse_updates(stdin_text)
    refs = max(len(updates), refs_total)
    if refs > upstream.max_push_refs:
        return Verdict(
            False,
            (
                f"push refused: it updates {refs} refs; the gate takes at most "
                f"{upstream.max_push_refs} refs per push to {upstream.name!r} (max_push_refs)",
                "push fewer branches at a time (e.g. `git push origin BRANCH`)",
            ),
        )
    incoming = store.incoming_bytes() + store.ref_bytes(
        [u.ref for u in updates if u.kind == "create"]
    )
    refusal = reserve_store(git_dir, config, upstream, incoming)
    if refusal is not None:
        return refusal
    try:
        verdict = judge_and_forward(git_dir, config, upstream, updates)
    except BaseException:
        # The hook fails, so git drops the push: so does the ledger. Left counted, each such
        # push (a git error, the CPU bound: see hook.py) shrank the budget until the next start.
        store.release(git_dir, incoming)
        raise
    if not verdict.accepted:
        store.release(git_dir, incoming)
    return verdict


def reserve_store(
    git_dir: Path, config: BundleConfig, upstream: GitUpstreamConfig, incoming: int
) -> Verdict | None:
    """Count the push's `incoming` bytes against the upstream's store budget (None), or a
    refusal naming the budget and the way out."""
    stored = store.reserve(git_dir, incoming, upstream.max_stored_bytes)
    if stored is None:
        return None
    slug = config.slug or "SLUG"
    return Verdict(
        False,
        (
            f"push refused: the gate keeps at most {upstream.max_stored_bytes} bytes of "
            f"accepted pushes to {upstream.name!r} (max_stored_bytes) between two starts of "
            f"the bottle; it keeps {stored} and this push adds {incoming}",
            "everything accepted is already upstream: stop and resume the bottle "
            f"(`bottle-engine stop {slug}`, then `bottle-engine resume {slug}`) and the gate "
            "starts again from the upstream, with its whole budget",
        ),
    )


def judge_and_forward(
    git_dir: Path, config: BundleConfig, upstream: GitUpstreamConfig, updates: list[RefUpdate]
) -> Verdict:
    """Policy and scan (`judge_push`), then forwarding upstream."""
    judgement = judge_push(git_dir, config, upstream, updates)
    if judgement.refusal:
        return Verdict(False, judgement.refusal)
    try:
        forward(git_dir, upstream, judgement.decisions, judgement.scanned)
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
    config: BundleConfig,
    upstream: GitUpstreamConfig,
    stdin_text: str,
    verdict: Verdict,
    refs_total: int = 0,
) -> None:
    """Append the push and its verdict to the bottle's git gate audit log."""
    updates = parse_updates(stdin_text)
    # The agent chooses the refs (as many as it likes, names of any length) and so much of
    # the detail: each entry is bounded, and the log rotates (`GIT_GATE_LOG_MAX_BYTES`).
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "upstream": upstream.name,
        "refs": [
            {key: cap(value) for key, value in asdict(update).items()}
            for update in updates[:MAX_REPORTED]
        ],
        "refs_total": max(len(updates), refs_total),
        "accepted": verdict.accepted,
        "detail": [
            *(cap(line) for line in verdict.lines[:MAX_REPORTED]),
            *_more(len(verdict.lines)),
        ],
    }
    _append_audit(config, entry)


def audit_access(
    config: BundleConfig, upstream: GitUpstreamConfig, service: str, refused: bool, detail: str
) -> None:
    """Append what befell a clone, fetch or push before it began (the access hook's
    refusal, a failed mirror) to the audit log: `git daemon` drops the hook's stderr."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "upstream": upstream.name,
        "service": service,
        "accepted": not refused,
        "detail": [cap(detail)],
    }
    _append_audit(config, entry)


def _append_audit(config: BundleConfig, entry: dict[str, object]) -> None:
    log = Path(config.state_dir) / GIT_GATE_LOG_NAME
    log.parent.mkdir(parents=True, exist_ok=True)
    append_line(log, json.dumps(entry, sort_keys=True), GIT_GATE_LOG_MAX_BYTES)


def find_upstream(config: BundleConfig, name: str) -> GitUpstreamConfig:
    for upstream in config.git:
        if upstream.name == name:
            return upstream
    known = ", ".join(u.name for u in config.git) or "none"
    raise BottleError(f"no git upstream named {name!r} in this bottle (known: {known})")
