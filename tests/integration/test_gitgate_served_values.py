"""Invariant 3 through the gate's other direction: what the agent fetches. The gate mirrors the
upstream's branches and tags before every clone and fetch and serves them to the agent; an
upstream whose history holds one of the bottle's real values (a token committed once and taken
out in the next commit, years ago) handed it to the agent, whose `git log -p` shows it. The
real gate on loopback, a real git client, a file:// upstream.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle_engine.bundle.config import GIT_GATE_LOG_NAME, GitUpstreamConfig
from bottle_engine.bundle.gitgate import served
from bottle_engine.bundle.gitgate.gate import mirror, prepare_repos, repo_path
from bottle_engine.bundle.gitgate.served import served_values
from bottle_engine.git import ObjectInfo
from tests.bundle_helpers import secret_in_file
from tests.integration.test_gitgate_attacks import SECRET_VALUE, start_gate
from tests.integration.test_gitgate_local import commit_file, git, seed_upstream
from tests.integration.test_gitgate_support import loopback_gate_config


def upstream_commits_and_removes(gate_upstream: Path, work: Path, text: str) -> None:
    """Someone with access to the upstream commits `text` in a file and removes it again."""
    git(work.parent, "clone", "-q", str(gate_upstream), str(work))
    commit_file(work, "deploy/settings.env", text, "deploy settings")
    git(work, "rm", "-q", "deploy/settings.env")
    git(work, "commit", "-q", "-m", "take the settings out again")
    git(work, "push", "-q", "origin", "HEAD:main")


def audit_log(tmp_path: Path) -> str:
    return (tmp_path / "state" / GIT_GATE_LOG_NAME).read_text()


def agent_reads(agent: Path, text: str) -> bool:
    """Whether the agent's repository shows `text` anywhere in its history."""
    history = git(agent, "log", "-p", "--all", check=False).stdout
    return text in history


def test_an_upstream_history_holding_a_real_value_is_not_served(tmp_path: Path) -> None:
    for gate in start_gate(tmp_path):
        upstream_commits_and_removes(gate.upstream, tmp_path / "person", f"TOKEN={SECRET_VALUE}\n")

        fetched = git(gate.agent, "fetch", "origin", check=False)

        assert not agent_reads(gate.agent, SECRET_VALUE), "the agent read the real value"
        assert fetched.returncode != 0
        assert "TEST_TOKEN" in fetched.stderr and SECRET_VALUE not in fetched.stderr
        # The person finds why in the gate's audit log (the daemon drops the hook's stderr).
        refusals = [json.loads(line) for line in audit_log(tmp_path).splitlines()]
        assert any("TEST_TOKEN" in " ".join(entry["detail"]) for entry in refusals)
        assert SECRET_VALUE not in audit_log(tmp_path)


def test_an_encoded_real_value_in_an_upstream_tag_is_not_served(tmp_path: Path) -> None:
    """Any stored form, in any object a ref reaches: here base64 in an annotated tag's message."""
    encoded = base64.b64encode(f"token: {SECRET_VALUE}".encode()).decode()
    for gate in start_gate(tmp_path):
        person = tmp_path / "person"
        git(tmp_path, "clone", "-q", str(gate.upstream), str(person))
        git(
            person,
            "-c",
            "user.name=p",
            "-c",
            "user.email=p@p.invalid",
            "tag",
            "-a",
            "v1",
            "-m",
            f"release notes {encoded}",
        )
        git(person, "push", "-q", "origin", "v1")

        fetched = git(gate.agent, "fetch", "--tags", "origin", check=False)

        assert fetched.returncode != 0
        assert encoded not in git(gate.agent, "for-each-ref", "--format=%(contents)").stdout


def test_a_clean_upstream_is_served_and_pushed_to_as_before(tmp_path: Path) -> None:
    """The search refuses values only: new upstream work arrives, the agent's push goes out."""
    for gate in start_gate(tmp_path):
        upstream_commits_and_removes(gate.upstream, tmp_path / "person", "TOKEN=placeholder\n")

        assert git(gate.agent, "fetch", "origin", check=False).returncode == 0
        assert agent_reads(gate.agent, "TOKEN=placeholder")
        commit_file(gate.agent, "src/app.py", "print('hi')\n")
        assert gate.push_ok("HEAD:refs/heads/agent/work")


def test_a_short_value_refuses_the_upstream_only_as_a_whole_word(tmp_path: Path) -> None:
    """Four characters occur inside the words of any history of some size: as at launch, a
    value that short is found standing alone only."""
    for gate in start_gate(tmp_path, secret_value="q7x2"):
        upstream_commits_and_removes(gate.upstream, tmp_path / "person", "aq7x2b q7x2z\n")
        assert git(gate.agent, "fetch", "origin", check=False).returncode == 0

        upstream_commits_and_removes(gate.upstream, tmp_path / "again", "PIN=q7x2\n")
        assert git(gate.agent, "fetch", "origin", check=False).returncode != 0


def test_a_refused_object_is_not_served_by_its_id_once_the_upstream_drops_it(
    tmp_path: Path,
) -> None:
    """Protocol v2's `want` takes any object the repository holds, advertised or not, and the
    gate's repository borrows the store the mirror fetches into. The refusal names the object;
    once the person rewrites the upstream without it (as the refusal says to), the agent asked
    for it by that id and read the value."""
    for gate in start_gate(tmp_path):
        person = tmp_path / "person"
        git(tmp_path, "clone", "-q", str(gate.upstream), str(person))
        clean = git(person, "rev-parse", "HEAD").stdout.strip()
        commit_file(person, "deploy/settings.env", f"TOKEN={SECRET_VALUE}\n", "deploy settings")
        git(person, "push", "-q", "origin", "HEAD:main")
        refused = git(gate.agent, "fetch", "origin", check=False)
        assert refused.returncode != 0
        named = re.findall(r"\b[0-9a-f]{40}\b", refused.stderr)
        git(person, "reset", "-q", "--hard", clean)
        commit_file(person, "src/app.py", "print('hi')\n", "clean work")
        git(person, "push", "-q", "--force", "origin", "HEAD:main")
        assert git(gate.agent, "fetch", "origin", check=False).returncode == 0

        for oid in named:
            git(gate.agent, "-c", "protocol.version=2", "fetch", "origin", oid, check=False)
            shown = git(gate.agent, "cat-file", "-p", oid, check=False).stdout
            assert SECRET_VALUE not in shown, "the agent fetched the refused object by its id"
        assert named, refused.stderr


def test_a_real_value_in_an_upstream_ref_name_is_not_served(tmp_path: Path) -> None:
    """A ref's name is served as much as its objects are: every clone and `git ls-remote`
    lists it. An upstream branch named after a token, its commit clean."""
    for gate in start_gate(tmp_path):
        person = tmp_path / "person"
        git(tmp_path, "clone", "-q", str(gate.upstream), str(person))
        git(person, "push", "-q", "origin", f"HEAD:refs/heads/ci/{SECRET_VALUE}")

        listed = git(gate.agent, "ls-remote", "origin", check=False)
        fetched = git(gate.agent, "fetch", "origin", check=False)

        assert SECRET_VALUE not in listed.stdout + listed.stderr
        assert fetched.returncode != 0
        assert SECRET_VALUE not in git(gate.agent, "for-each-ref").stdout


def _pkt(text: str) -> bytes:
    return f"{len(text) + 4:04x}{text}".encode()


def _pkts(sock: socket.socket) -> Iterator[bytes]:
    """The payloads of the pkt-lines the gate sends (b"" for a flush or delimiter)."""
    stream = sock.makefile("rb")
    while size := stream.read(4):
        length = int(size, 16)
        yield stream.read(length - 4) if length > 4 else b""


def _fetch_over(sock: socket.socket, oid: str, into: Path) -> subprocess.CompletedProcess[str]:
    """Protocol v2 `fetch` of `oid` on an open connection; what comes is indexed `into` a repo.
    upload-pack dies at a `want` of an object it will not send, before it reads the request's
    end: the rest of the request, as much as the answer, may meet a reset connection."""
    pack = b""
    packfile = False
    with contextlib.suppress(ConnectionError):
        sock.sendall(_pkt("command=fetch\n") + b"0001" + _pkt(f"want {oid}\n") + _pkt("done\n"))
        sock.sendall(b"0000")
        for payload in _pkts(sock):
            if payload == b"packfile\n":
                packfile = True
            elif packfile and payload[:1] == b"\x01":
                pack += payload[1:]
            elif packfile and not payload:
                break
    git(into.parent, "init", "-q", "--bare", str(into))
    return subprocess.run(
        ["git", "index-pack", "--stdin"], cwd=into, input=pack, capture_output=True, check=False
    )


def test_a_connection_open_before_the_value_came_cannot_fetch_it_by_its_id(
    tmp_path: Path,
) -> None:
    """The same without the upstream's help: a connection the agent opened while the upstream
    was clean (one access hook, then upload-pack for as long as the agent likes) asked for the
    object another access's refusal named, fetched into the store by that access's mirror."""
    for gate in start_gate(tmp_path):
        with socket.create_connection(("127.0.0.1", gate.port), timeout=60) as held:
            held.sendall(_pkt("git-upload-pack /origin\0host=127.0.0.1\0\0version=2\0"))
            for payload in _pkts(held):  # the capability advertisement, to its flush
                if not payload:
                    break
            upstream_commits_and_removes(gate.upstream, tmp_path / "person", f"T={SECRET_VALUE}\n")
            refused = git(gate.agent, "fetch", "origin", check=False)
            assert refused.returncode != 0
            (named,) = re.findall(r"blob ([0-9a-f]{40})", refused.stderr)

            _fetch_over(held, named, tmp_path / "got.git")

        shown = git(tmp_path / "got.git", "cat-file", "-p", named, check=False).stdout
        assert SECRET_VALUE not in shown, "the agent fetched the refused object by its id"


def test_a_refused_upstream_is_not_searched_again_at_every_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search of a refused upstream never moves the store, so each access searched again
    everything it had not reached: the whole history, after a start. Any `git ls-remote` of the
    agent's, in a loop, kept the bundle searching (a large upstream, a CPU-second and more
    each). Once refused, the same refs are refused without a search; new ones are searched."""
    upstream = seed_upstream(tmp_path)
    secret = secret_in_file(tmp_path / "value", "TEST_TOKEN", "bbph_" + "7" * 32, (), SECRET_VALUE)
    config = loopback_gate_config(
        tmp_path,
        "refused",
        GitUpstreamConfig("origin", f"file://{upstream}", ("agent/*",)),
        (secret,),
    )
    (origin,) = config.git
    git_dir = repo_path(tmp_path / "gate", "origin")
    prepare_repos(config, tmp_path / "bundle.json", tmp_path / "gate")
    upstream_commits_and_removes(upstream, tmp_path / "person", f"TOKEN={SECRET_VALUE}\n")
    read: list[str] = []
    real_read = served.read_objects

    def counting(store: Path, oids: list[str]) -> Iterator[tuple[ObjectInfo, bytes]]:
        read.extend(oids)
        return real_read(store, oids)

    monkeypatch.setattr(served, "read_objects", counting)
    refusals = []
    for _access in range(3):
        with pytest.raises(served.ServedValue) as refused:
            mirror(git_dir, origin, served_values(config, origin))
        refusals.append(str(refused.value))
    assert read, "the first access searched nothing"
    assert len(read) == len(set(read)), "an access searched the refused history again"
    assert refusals[1:] == refusals[:-1] and "TEST_TOKEN" in refusals[0]

    # The person rewrites the upstream without the value: the next access searches it.
    person = tmp_path / "person"
    git(person, "reset", "-q", "--hard", "HEAD~2")
    commit_file(person, "src/app.py", "print('hi')\n", "clean work")
    git(person, "push", "-q", "--force", "origin", "HEAD:main")
    mirror(git_dir, origin, served_values(config, origin))
    assert git(git_dir, "rev-parse", "main").stdout == git(person, "rev-parse", "HEAD").stdout
