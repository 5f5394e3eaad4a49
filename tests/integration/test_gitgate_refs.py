"""Invariant 6, disk and inodes: what a push's refs cost the gate. The store budget counts the
pack a push sends; a ref costs no pack at all (a thousand new branches at one commit send no
object) but each one the gate accepts becomes a file in its repository in the bottle's state
dir, a host directory, and each '/' in its name a directory, one inode and one block each. The
real gate on loopback, a real git client, a file:// upstream.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bottle_engine.bundle.config import (
    DEFAULT_MAX_PUSH_REFS,
    MAX_REF_COMPONENTS,
    MAX_REF_NAME_BYTES,
)
from bottle_engine.bundle.gitgate.store import REF_BLOCK_BYTES
from bottle_engine.git import ZERO_OID
from tests.gate_attacks import AWS_KEY
from tests.integration.test_gitgate_attacks import Gate, raw_push, start_gate
from tests.integration.test_gitgate_local import commit_file, git

KIB = 1024


def gate_repo(gate: Gate) -> Path:
    return gate.upstream.parent / "gate" / "origin.git"


def gate_ref_inodes(gate: Gate) -> int:
    """Files and directories under the gate repository's refs: what its refs hold on the host."""
    return sum(1 for _ in (gate_repo(gate) / "refs").rglob("*"))


def upstream_refs(gate: Gate) -> list[str]:
    listing = git(gate.upstream, "for-each-ref", "--format=%(refname)", "refs/heads/agent")
    return listing.stdout.split()


def make_refs(gate: Gate, names: list[str]) -> None:
    """Local branches `names` in the agent's clone, all at HEAD (one ref transaction)."""
    commands = "".join(f"create refs/heads/{name} HEAD\n" for name in names)
    result = gate.sh(f"git update-ref --stdin <<'EOF'\n{commands}EOF\n")
    assert result.returncode == 0, result.stderr


def pack_between(repo: Path, base: str, head: str) -> bytes:
    """The pack a client sends to move a branch from `base` to `head` (what `base` lacks)."""
    return subprocess.run(
        ["git", "pack-objects", "--stdout", "--revs"],
        cwd=repo,
        input=f"{head}\n^{base}\n".encode(),
        capture_output=True,
        check=True,
    ).stdout


def test_one_push_of_more_refs_than_the_bound_is_refused_whole(tmp_path: Path) -> None:
    """A push of 1.5x the bound of new branches at one already-pushed commit: no pack at all,
    so the store budget never saw it; before the bound every one became a ref file in the gate
    and a branch upstream."""
    for gate in start_gate(tmp_path):
        commit_file(gate.agent, "src/app.py", "print('hi')\n")
        assert gate.push_ok("HEAD:refs/heads/agent/base")
        before = gate_ref_inodes(gate)
        refs = DEFAULT_MAX_PUSH_REFS * 3 // 2
        make_refs(gate, [f"agent/many/{i}" for i in range(refs)])

        result = git(gate.agent, "push", "origin", "refs/heads/agent/many/*", check=False)

        assert result.returncode != 0, f"{refs} refs accepted in one push"
        assert f"{refs} refs" in result.stderr, result.stderr
        assert f"at most {DEFAULT_MAX_PUSH_REFS} refs per push" in result.stderr
        assert "max_push_refs" in result.stderr
        assert upstream_refs(gate) == ["refs/heads/agent/base"]
        assert gate_ref_inodes(gate) == before

        # The way out the refusal names works: fewer refs per push.
        batch = [f"refs/heads/agent/many/{i}" for i in range(10)]
        assert git(gate.agent, "push", "origin", *batch, check=False).returncode == 0


def test_a_deep_ref_name_is_refused_before_it_becomes_directories(tmp_path: Path) -> None:
    """refs/heads/agent/a/a/a/...: each '/' is a directory in the gate repository (and
    upstream). Under the name bound a name still makes over a hundred; a thousand such refs
    per push, at one commit, made over a hundred thousand inodes on the host."""
    for gate in start_gate(tmp_path):
        before = gate_ref_inodes(gate)
        deep = "agent/" + "/".join(["a"] * ((MAX_REF_NAME_BYTES - 20) // 2))
        make_refs(gate, [deep])

        result = git(gate.agent, "push", "origin", f"refs/heads/{deep}", check=False)

        assert result.returncode != 0, "a ref 100+ directories deep was accepted"
        assert f"at most {MAX_REF_COMPONENTS} parts" in result.stderr, result.stderr
        assert upstream_refs(gate) == []
        assert gate_ref_inodes(gate) == before


def test_a_long_ref_name_is_refused_naming_the_bound(tmp_path: Path) -> None:
    """Names of any length were taken (git has no bound but its 64 KiB protocol line): a
    name of two long parts went upstream and into the gate; one past NAME_MAX in a single part
    went upstream wherever the upstream is not a files-backed git, before the gate's own ref
    update failed. Refused first now, naming the bound."""
    for gate in start_gate(tmp_path):
        for name in ("agent/" + "x" * 200 + "/" + "y" * 100, "agent/" + "z" * 300):
            result = git(gate.agent, "push", "origin", f"HEAD:refs/heads/{name}", check=False)

            assert result.returncode != 0, f"a ref name of {len(name)} bytes was accepted"
            assert f"at most {MAX_REF_NAME_BYTES} bytes" in result.stderr, result.stderr
        assert upstream_refs(gate) == []


def test_pushing_new_refs_one_push_after_another_stops_at_the_store_budget(
    tmp_path: Path,
) -> None:
    """Pushes within the per-push bound, each of new names at one commit: no pack, so the
    quarantine the budget counted was empty and the gate's ref files grew without bound."""
    per_push = 32
    pushes = 12
    budget = 4 * per_push * 2 * REF_BLOCK_BYTES  # four pushes' worth of two-part names
    for gate in start_gate(tmp_path, max_stored_bytes=budget):
        commit_file(gate.agent, "src/app.py", "print('hi')\n")
        refused = []
        for push in range(pushes):
            names = [f"agent/p{push}-{i}" for i in range(per_push)]
            make_refs(gate, names)
            result = git(
                gate.agent, "push", "origin", *(f"refs/heads/{n}" for n in names), check=False
            )
            if result.returncode != 0:
                refused.append((push, result.stderr))

        assert refused, f"{pushes * per_push} new refs accepted against a {budget} byte budget"
        first, said = refused[0]
        assert first > 0, said
        assert f"at most {budget} bytes of accepted pushes to 'origin'" in said, said
        kept = len(upstream_refs(gate))
        assert kept * 2 * REF_BLOCK_BYTES <= budget, f"{kept} refs kept"


def test_a_push_that_lies_about_the_old_value_is_refused_before_forwarding(
    tmp_path: Path,
) -> None:
    """The command's old value is the client's word. Naming an ancestor of the pushed commit as
    the old value of a ref that does not exist made a creation look like a fast-forward: the
    name bounds and the ref charge (creations only) were skipped, the gate forwarded it and the
    upstream created the ref (git's own check of the old value comes after the hook), and the
    next mirror brought it into the gate, uncounted."""
    for gate in start_gate(tmp_path):
        base = git(gate.agent, "rev-parse", "HEAD").stdout.strip()
        head = commit_file(gate.agent, "src/app.py", "print('hi')\n")
        pack = pack_between(gate.agent, base, head)
        deep = "refs/heads/agent/" + "/".join(["d"] * 60)

        answer = raw_push(gate.port, f"{base} {head} {deep}", pack)

        assert gate.ref(deep) is None, "the upstream created a ref the gate never judged"
        assert b"pre-receive hook declined" in answer, answer
        # Without side-band the hook's words go to the daemon's log, not this client.
        audit = (tmp_path / "state" / "git-gate.jsonl").read_text()
        assert "are not what the gate holds" in audit, audit

        # A client that tells the truth is judged as creating the ref, and refused as such.
        answer = raw_push(gate.port, f"{ZERO_OID} {head} {deep}", pack)
        assert b"pre-receive hook declined" in answer, answer
        assert gate.ref(deep) is None
        assert (
            f"at most {MAX_REF_COMPONENTS} parts"
            in (tmp_path / "state" / "git-gate.jsonl").read_text()
        )


def test_a_branch_name_holding_a_line_separator_cannot_lend_a_tip_to_a_lie(
    tmp_path: Path,
) -> None:
    """The gate's own branches, read back from `for-each-ref` a line each, were split with
    `splitlines`, which also splits at U+2028 (and U+0085, U+2029), characters git allows in a
    ref name: a branch named `agent/b<U+2028>refs/heads/agent/new` made the gate hold a branch
    agent/new at its tip, and a push naming that tip as agent/new's old value passed as a
    fast-forward, skipping the rules for new branches, and was forwarded."""
    for gate in start_gate(tmp_path):
        lender = "refs/heads/agent/b\u2028refs/heads/agent/new"
        tip = commit_file(gate.agent, "src/app.py", "print('hi')\n")
        assert gate.push_ok(f"HEAD:{lender}")
        head = commit_file(gate.agent, "src/app.py", "print('hello')\n")

        answer = raw_push(
            gate.port, f"{tip} {head} refs/heads/agent/new", pack_between(gate.agent, tip, head)
        )

        assert gate.ref("refs/heads/agent/new") is None, "forwarded as a fast-forward"
        assert b"pre-receive hook declined" in answer, answer
        audit = (tmp_path / "state" / "git-gate.jsonl").read_text()
        assert "are not what the gate holds" in audit, audit


def test_a_lie_about_the_old_value_cannot_bring_back_an_older_manifest(tmp_path: Path) -> None:
    """The manifest guard checks every manifest file of a new branch against what upstream
    branches hold now. Claimed as an update from the older commit, a new branch at a child of
    it showed no manifest change and took the looser manifest upstream."""
    for gate in start_gate(tmp_path):
        seed = tmp_path / "seed"
        loose = commit_file(seed, "bottle.toml", "[egress]\nallow = ['*']\n", "loose")
        commit_file(seed, "bottle.toml", "[egress]\nallow = []\n", "tight")
        git(seed, "push", "-q", "origin", "HEAD:main")
        git(gate.agent, "fetch", "-q", "origin")
        git(gate.agent, "checkout", "-q", "-b", "work", loose)
        head = commit_file(gate.agent, "src/app.py", "print('hi')\n")
        pack = pack_between(gate.agent, loose, head)

        answer = raw_push(gate.port, f"{loose} {head} refs/heads/agent/loose", pack)

        assert gate.ref("refs/heads/agent/loose") is None, "an older manifest went upstream"
        assert b"pre-receive hook declined" in answer, answer


def _object(repo: Path, kind: str, data: bytes) -> str:
    return (
        subprocess.run(
            ["git", "hash-object", "-w", "-t", kind, "--stdin"],
            cwd=repo,
            input=data,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )


def _tree(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """A tree of (mode, name, oid) entries, written as git's mktree reads them."""
    lines = "".join(
        f"{mode} {'commit' if mode == '160000' else 'tree' if mode == '40000' else 'blob'} "
        f"{oid}\t{name}\n"
        for mode, name, oid in entries
    )
    return (
        subprocess.run(
            ["git", "mktree"], cwd=repo, input=lines.encode(), capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )


def test_a_ref_name_holding_a_refspec_cannot_choose_what_is_forwarded(tmp_path: Path) -> None:
    """receive-pack refuses a ref name git would not make ("funny refname") only after the
    pre-receive hook has run: the hook saw `refs/heads/agent/x:refs/heads/main`, which
    push_branches' `agent/*` matches, and forwarded `NEW:refs/heads/agent/x:refs/heads/main`.
    `git push` splits a refspec at its last ':': the source became `NEW:refs/heads/agent/x`,
    the object at that path in NEW's tree, here a gitlink to a commit the scan never read (no
    pushed commit reaches it), and the destination main, a branch the agent may not push."""
    for gate in start_gate(tmp_path, max_push_bytes=512 * KIB):
        agent = gate.agent
        main = git(agent, "rev-parse", "origin/main").stdout.strip()
        main_tree = git(agent, "rev-parse", "origin/main^{tree}").stdout.strip()
        leak = _object(agent, "blob", f"aws_access_key_id = '{AWS_KEY}'\n".encode())
        hidden_tree = _tree(agent, [("100644", "leak.txt", leak)])
        hidden = git(agent, "commit-tree", "-p", main, "-m", "hidden", hidden_tree).stdout.strip()
        agent_dir = _tree(agent, [("160000", "x", hidden)])
        heads = _tree(agent, [("40000", "agent", agent_dir)])
        refs = _tree(agent, [("40000", "heads", heads)])
        entries = git(agent, "ls-tree", main_tree).stdout.splitlines()
        root_entries = [
            (meta.split()[0], name, meta.split()[2])
            for meta, name in (line.split("\t", 1) for line in entries)
        ]
        root = _tree(agent, [*root_entries, ("40000", "refs", refs)])
        new = git(agent, "commit-tree", "-p", main, "-m", "clean", root).stdout.strip()
        oids = [new, root, refs, heads, agent_dir, hidden, hidden_tree, leak]
        pack = subprocess.run(
            ["git", "pack-objects", "--stdout"],
            cwd=agent,
            input="\n".join(oids).encode() + b"\n",
            capture_output=True,
            check=True,
        ).stdout
        before = gate.objects()

        answer = raw_push(gate.port, f"{ZERO_OID} {new} refs/heads/agent/x:refs/heads/main", pack)

        assert b"pre-receive hook declined" in answer, answer
        assert gate.ref("refs/heads/main") == main
        assert hidden not in gate.objects()
        assert leak not in gate.objects()
        assert gate.objects() == before


def test_a_branch_named_as_a_commit_id_does_not_change_what_is_forwarded(
    tmp_path: Path,
) -> None:
    """The forward's refspec named the judged commit by its id, and `git push` matches a
    refspec's source against the gate repository's refs before it reads it as an object id:
    a branch named as the id of a commit the agent is about to push (`refs/heads/<id>`, under
    push_branches "*") made the forward send that branch's commit instead, to a branch judged
    for another."""
    for gate in start_gate(tmp_path, push_branches=("*",)):
        decoy = commit_file(gate.agent, "decoy.txt", "decoy\n")
        judged = commit_file(gate.agent, "src/app.py", "print('judged')\n")
        # The decoy is already upstream (judged then); the branch names the commit to come.
        assert gate.push_ok(f"{decoy}:refs/heads/{judged}")

        result = git(gate.agent, "push", "origin", f"{judged}:refs/heads/feature", check=False)

        assert result.returncode == 0, result.stderr
        assert gate.ref("refs/heads/feature") == judged


@pytest.mark.parametrize("name", ["refs/heads/main", "refs/tags/v1", "HEAD", "-x"])
def test_a_branch_git_reads_as_another_name_is_refused(tmp_path: Path, name: str) -> None:
    """A branch "HEAD" became `origin/HEAD` (read as the default branch) in every fresh clone
    of the upstream, one named "-x" an option to a person's git commands. And git resolves a
    pushed destination `refs/heads/main` against the remote's refs with the abbreviation
    rules, so a branch named "refs/heads/main" (the ref refs/heads/refs/heads/main) matches
    it too: with both upstream, every later push to main (the gate's forwards, a person's
    `git push origin main`) failed with "dst refspec refs/heads/main matches more than one",
    and with only it a push that creates main updated it instead."""
    for gate in start_gate(tmp_path, push_branches=("*",)):
        main = gate.ref("refs/heads/main")

        result = git(gate.agent, "push", "origin", f"HEAD:refs/heads/{name}", check=False)

        assert result.returncode != 0, f"branch {name!r} was created"
        assert "for something else" in result.stderr, result.stderr
        assert gate.ref(f"refs/heads/{name}") is None
        commit_file(gate.agent, "src/app.py", "print('hi')\n")
        assert git(gate.agent, "push", "origin", "HEAD:refs/heads/main").returncode == 0
        assert gate.ref("refs/heads/main") != main


def test_a_push_to_a_symbolic_ref_upstream_never_moves_its_target(tmp_path: Path) -> None:
    """An upstream branch may be a symbolic ref (`git symbolic-ref refs/heads/agent/base
    refs/heads/main`, a person's alias of the base for the agent to read): receive-pack writes
    a push to it through to the target, so a push to `agent/base`, judged under push_branches
    "agent/*", moved main, which the agent may not push to."""
    for gate in start_gate(tmp_path):
        main = gate.ref("refs/heads/main")
        git(gate.upstream, "symbolic-ref", "refs/heads/agent/base", "refs/heads/main")
        git(gate.agent, "fetch", "-q", "origin")
        commit_file(gate.agent, "src/app.py", "print('hi')\n")

        result = git(gate.agent, "push", "origin", "HEAD:refs/heads/agent/base", check=False)

        assert result.returncode != 0, "a push to a symbolic ref moved its target"
        assert "symbolic ref to refs/heads/main" in result.stderr, result.stderr
        assert gate.ref("refs/heads/main") == main
        # A branch of its own still takes the same commit.
        assert gate.push_ok("HEAD:refs/heads/agent/work")
