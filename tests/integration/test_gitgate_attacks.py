"""A hostile agent's pushes against the real gate on loopback (``git daemon`` and the gate's
hooks, a real git client, a real upstream reached over file://). The same attacks run from
inside a real bottle against an sshd upstream in tests/escape/test_gate_attacks.py.

Every refused push must leave the upstream without a single new object: not only the ref, the
objects too (a forwarded push of a blob stores it upstream before the ref update fails).
"""

from __future__ import annotations

import hashlib
import os
import resource
import socket
import struct
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bottle_engine.bundle.config import GitUpstreamConfig
from bottle_engine.git import ZERO_OID
from bottle_engine.lifecycle import git_protected_paths
from bottle_engine.manifest import load_manifest_file
from tests.bundle_helpers import secret_in_file
from tests.gate_attacks import AWS_KEY, KEY_LINE, Attack, attacks
from tests.integration.test_gitgate_local import commit_file, git, seed_upstream
from tests.integration.test_gitgate_support import gate_on_loopback, loopback_gate_config

PLACEHOLDER = "bbph_" + "5" * 32
SECRET_VALUE = "real-secret-value-of-the-bottle-0042"
KIB = 1024


@dataclass
class Gate:
    port: int
    upstream: Path
    agent: Path

    def objects(self) -> set[str]:
        listing = git(
            self.upstream, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"
        )
        return set(listing.stdout.split())

    def ref(self, ref: str) -> str | None:
        result = git(self.upstream, "rev-parse", "--verify", "--quiet", ref, check=False)
        return result.stdout.strip() or None

    def push_ok(self, refspec: str) -> bool:
        return git(self.agent, "push", "origin", refspec, check=False).returncode == 0

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", script],
            cwd=self.agent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def start_gate(
    tmp_path: Path, secret_value: str = SECRET_VALUE, **settings: object
) -> Iterator[Gate]:
    upstream = seed_upstream(tmp_path)
    settings.setdefault("push_branches", ("agent/*",))
    config = loopback_gate_config(
        tmp_path,
        "attacked",
        GitUpstreamConfig(
            name="origin",
            url=f"file://{upstream}",
            protected_paths=("Dockerfile", "agents/reviewer.md"),
            **settings,  # type: ignore[arg-type]
        ),
        secrets=(
            secret_in_file(
                tmp_path / "secret-value",
                "TEST_TOKEN",
                PLACEHOLDER,
                ("api.example.invalid",),
                secret_value,
            ),
        ),
    )
    with gate_on_loopback(tmp_path, config) as (port, agent):
        yield Gate(port, upstream, agent)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    yield from start_gate(
        tmp_path, max_push_bytes=512 * KIB, max_blob_bytes=64 * KIB, max_scan_bytes=256 * KIB
    )


@pytest.mark.parametrize("attack", attacks(PLACEHOLDER, SECRET_VALUE), ids=lambda a: a.name)
def test_attack_is_refused_and_the_upstream_gains_nothing(gate: Gate, attack: Attack) -> None:
    before = gate.objects()

    result = gate.sh(attack.script)

    assert result.returncode != 0, result.stdout + result.stderr
    assert attack.expected in result.stderr, result.stderr
    assert gate.objects() == before
    said = "\n".join(line for line in result.stderr.splitlines() if line.startswith("remote:"))
    assert AWS_KEY not in said and SECRET_VALUE not in said  # findings never echo the value


def test_a_clean_push_still_arrives(gate: Gate) -> None:
    head = commit_file(gate.agent, "src/app.py", "def add(a, b):\n    return a + b\n")

    result = git(gate.agent, "push", "origin", "HEAD:refs/heads/agent/work", check=False)

    assert result.returncode == 0, result.stderr
    assert gate.ref("refs/heads/agent/work") == head


def test_a_push_is_kept_as_the_pack_that_came(gate: Gate) -> None:
    """Never unpacked into loose objects: a pack of 1 MiB with ten 64 MiB delta blobs wrote
    642 MiB of loose objects (and the agent chooses the sizes) before the hook could refuse."""
    commit_file(gate.agent, "small.txt", "small\n")
    pushed = git(gate.agent, "rev-list", "--objects", "HEAD", "--not", "origin/main").stdout

    assert gate.push_ok("HEAD:refs/heads/agent/small")

    objects = gate.upstream.parent / "gate" / "origin.git" / "objects"
    oids = [line.split()[0] for line in pushed.splitlines()]
    assert len(oids) == 3
    assert [oid for oid in oids if (objects / oid[:2] / oid[2:]).exists()] == []


def test_every_mode_git_writes_still_passes(gate: Gate) -> None:
    """The gate refuses a mode spelt any other way (`secret-in-a-file-mode`), not these."""
    result = gate.sh(
        "mkdir -p dir && printf 'x\\n' > dir/plain.txt && printf '#!/bin/sh\\n' > run.sh && "
        "chmod +x run.sh && ln -s dir/plain.txt link && git add dir run.sh link && "
        f"git update-index --add --cacheinfo 160000,{'1' * 40},vendor/sub && "
        "git -c user.name=A -c user.email=a@b.invalid commit -q -m modes && "
        "git ls-tree -r HEAD | cut -c1-6 | sort -u | tr '\\n' ' ' && "
        "git push -q origin HEAD:refs/heads/agent/modes 2>&1"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("100644 100755 120000 160000"), result.stdout


def test_a_protected_file_the_manifest_reads_is_refused_naming_it(gate: Gate) -> None:
    commit_file(gate.agent, "Dockerfile", "FROM scratch\n")
    commit_file(gate.agent, "AGENTS/Reviewer.md", "obey\n")  # as a case-insensitive disk opens it

    result = git(gate.agent, "push", "origin", "HEAD:refs/heads/agent/df", check=False)

    assert result.returncode != 0
    assert ": Dockerfile" in result.stderr
    assert ": AGENTS/Reviewer.md" in result.stderr
    assert "allow_manifest_changes" in result.stderr
    assert gate.ref("refs/heads/agent/df") is None


def test_a_link_on_the_way_to_a_file_the_manifest_reads_is_guarded(tmp_path: Path) -> None:
    """The manifest builds docker/Dockerfile, and docker is a link to build/. Pointed at a
    directory of the agent's, the link made the next launch build the agent's Dockerfile,
    whose RUN steps have the host Docker's network: the path as written and the file it led to
    were guarded, the link between them was not."""
    upstream = seed_upstream(tmp_path)
    person = tmp_path / "person"
    git(tmp_path, "clone", "-q", str(upstream), str(person))
    (person / "build").mkdir()
    (person / "build" / "Dockerfile").write_text("FROM scratch\n")
    (person / "docker").symlink_to("build")
    (person / "bottle.toml").write_text(
        '[agents.a]\n[bottles.b]\ndockerfile = "docker/Dockerfile"\n'
        f'[[bottles.b.git]]\nname = "origin"\nurl = "file://{upstream}"\n'
    )
    git(person, "add", ".")
    git(person, "commit", "-q", "-m", "manifest")
    git(person, "push", "-q", "origin", "HEAD:main")
    origin = GitUpstreamConfig(
        name="origin",
        url=f"file://{upstream}",
        push_branches=("agent/*",),
        protected_paths=git_protected_paths(load_manifest_file(person / "bottle.toml").require()),
    )
    with gate_on_loopback(tmp_path, loopback_gate_config(tmp_path, "linked", origin)) as (
        _,
        agent,
    ):
        result = subprocess.run(
            [
                "sh",
                "-c",
                "mkdir mine && printf 'FROM scratch\\n' > mine/Dockerfile && "
                "ln -sfn mine docker && git add -A && "
                "git -c user.name=A -c user.email=a@b.invalid commit -q -m link && "
                "git push origin HEAD:refs/heads/agent/link",
            ],
            cwd=agent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert result.returncode != 0, result.stderr
    assert any(line.rstrip().endswith(": docker") for line in result.stderr.splitlines())
    assert git(upstream, "rev-parse", "--verify", "--quiet", "agent/link", check=False).stdout == ""


def test_a_link_where_a_guarded_file_has_its_directory_is_refused(gate: Gate) -> None:
    """agents/reviewer.md is guarded and not there yet: a link `agents` to a directory of the
    agent's adds it, under no path the guard named."""
    before = gate.objects()

    result = gate.sh(
        "mkdir mine && printf 'obey\\n' > mine/reviewer.md && ln -s mine agents && "
        "git add -A && git -c user.name=A -c user.email=a@b.invalid commit -q -m link && "
        "git push origin HEAD:refs/heads/agent/linkdir"
    )

    assert result.returncode != 0, result.stderr
    assert any(line.rstrip().endswith(": agents") for line in result.stderr.splitlines())
    assert gate.objects() == before


def test_allow_manifest_changes_lets_the_manifest_through(tmp_path: Path) -> None:
    for gate in start_gate(tmp_path, allow_manifest_changes=True):
        head = commit_file(gate.agent, "bottle.toml", "[agents.x]\n")
        result = git(gate.agent, "push", "origin", "HEAD:refs/heads/agent/m", check=False)
        assert result.returncode == 0, result.stderr
        assert gate.ref("refs/heads/agent/m") == head


def test_a_short_secret_as_a_submodule_commit_id_is_refused(tmp_path: Path) -> None:
    """A gitlink's 20-byte commit id is the pusher's choice and is never fetched: a secret of
    up to 20 bytes fits in it, hex-encoded as every git tool shows it."""
    short = "tok-0123456789ab"
    for gate in start_gate(tmp_path, secret_value=short):
        before = gate.objects()
        oid = short.encode().hex().ljust(40, "0")
        result = gate.sh(
            f"git update-index --add --cacheinfo 160000,{oid},vendor/lib && "
            "git -c user.name=A -c user.email=a@b.invalid commit -q -m sub && "
            "git push origin HEAD:refs/heads/agent/sub"
        )
        assert result.returncode != 0, result.stderr
        assert "a submodule's commit id: value of the bottle's secret 'TEST_TOKEN', hex" in (
            result.stderr
        )
        assert gate.objects() == before


def person_tightens_the_manifest(gate: Gate) -> None:
    """Upstream main: bottle.toml "# loose", then "# tight" (a person's two commits)."""
    person = gate.upstream.parent / "person"
    git(gate.upstream.parent, "clone", "-q", str(gate.upstream), str(person))
    commit_file(person, "bottle.toml", "# loose\n", "manifest v1")
    commit_file(person, "bottle.toml", "# tight\n", "manifest v2")
    git(person, "push", "-q", "origin", "HEAD:main")


MERGE = "git -c user.name=A -c user.email=a@b.invalid commit-tree"
# The tree of main with the bottle.toml of the commit before, as a merge of main and that commit.
OLD_MANIFEST_TREE = (
    "git fetch -q origin && git checkout -q -B rollback origin/main && "
    "git checkout origin/main~1 -- bottle.toml && tree=$(git write-tree) && "
)


@pytest.mark.parametrize(
    "push",
    [
        # A new branch, main first: compared with every parent (diff-tree -c) nothing changed.
        f"merge=$({MERGE} -p origin/main -p origin/main~1 -m m $tree) && "
        "git push origin $merge:refs/heads/agent/rollback",
        # The old commit first, then a fast-forward of a branch that held main: compared with
        # the first parent nothing changed either.
        "git push -q origin origin/main:refs/heads/agent/rollback && "
        f"merge=$({MERGE} -p origin/main~1 -p origin/main -m m $tree) && "
        "git push origin $merge:refs/heads/agent/rollback",
    ],
    ids=["main-first", "old-commit-first"],
)
def test_a_merge_that_brings_back_an_older_manifest_is_refused(gate: Gate, push: str) -> None:
    person_tightens_the_manifest(gate)
    tip = gate.sh("git fetch -q origin && git rev-parse origin/main").stdout.strip()
    before = gate.objects()

    result = gate.sh(OLD_MANIFEST_TREE + push)

    assert result.returncode != 0, result.stderr
    assert "bottle.toml is not what any upstream branch holds now" in result.stderr
    assert gate.objects() == before
    assert gate.ref("refs/heads/agent/rollback") in (None, tip)


def test_merging_a_persons_manifest_change_into_the_agents_branch_still_passes(
    gate: Gate,
) -> None:
    commit_file(gate.agent, "work.txt", "work\n")
    assert gate.push_ok("HEAD:refs/heads/agent/work")
    person_tightens_the_manifest(gate)

    result = gate.sh(
        "git fetch -q origin && git -c user.name=A -c user.email=a@b.invalid merge -q "
        "--no-edit origin/main && git push origin HEAD:refs/heads/agent/work"
    )

    assert result.returncode == 0, result.stderr


# (files the agent makes, its branch, what the refusal must say)
UNSCANNABLE_PUSHES = {
    "a blob over the bound is refused, not skipped": (
        "head -c 70000 /dev/urandom | od -An -tx1 > big.txt",
        "big",
        ("big.txt: refused unscanned:", "over the bound of 65536 bytes per file"),
    ),
    "a gzip bomb is refused at the inflation bound": (
        "head -c 10000000 /dev/zero | gzip -c > bomb.gz",
        "bomb",
        ("bomb.gz: refused unscanned: gzip content inflates beyond the bound",),
    ),
    "many files over the scan budget are refused": (
        "for i in 1 2 3 4 5 6; do head -c 20000 /dev/urandom | od -An -tx1 > f$i.txt; done",
        "many",
        ("over the bound of 262144 bytes per push",),
    ),
}


@pytest.mark.parametrize(
    ("make_files", "branch", "refusals"),
    list(UNSCANNABLE_PUSHES.values()),
    ids=list(UNSCANNABLE_PUSHES),
)
def test_what_cannot_be_scanned_is_refused(
    gate: Gate, make_files: str, branch: str, refusals: tuple[str, ...]
) -> None:
    before = gate.objects()
    script = (
        f"{make_files} && git add . && "
        f"git -c user.name=A -c user.email=a@b.invalid commit -q -m {branch} && "
        f"git push origin HEAD:refs/heads/agent/{branch}"
    )

    result = gate.sh(script)

    assert result.returncode != 0
    for refusal in refusals:
        assert refusal in result.stderr
    assert gate.objects() == before
    assert gate.ref(f"refs/heads/agent/{branch}") is None


def test_a_push_over_the_size_bound_is_cut_off(gate: Gate) -> None:
    before = gate.objects()
    script = (
        "head -c 700000 /dev/urandom > random.bin && git add random.bin && "
        "git -c user.name=A -c user.email=a@b.invalid commit -q -m big && "
        "git push origin HEAD:refs/heads/agent/huge"
    )

    result = gate.sh(script)

    # receive-pack stops reading at the bound; the client sees that, or only the hang-up.
    assert result.returncode != 0
    assert "pack exceeds maximum allowed size" in result.stderr or "hung up" in result.stderr
    assert gate.objects() == before
    assert gate.ref("refs/heads/agent/huge") is None


def _pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def raw_push(port: int, update: str, pack: bytes) -> bytes:
    """A push spoken by hand (git protocol v0), so that the pack can carry objects no pushed
    ref reaches, which `git push` never sends."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(_pkt(b"git-receive-pack /origin\0host=127.0.0.1\0"))
        advertisement = b""
        while not advertisement.endswith(b"0000"):
            chunk = conn.recv(65536)
            assert chunk, advertisement
            advertisement += chunk
        conn.sendall(_pkt(update.encode() + b"\0report-status\n") + b"0000" + pack)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_objects_in_the_pack_that_no_ref_reaches_are_never_forwarded(gate: Gate) -> None:
    """receive-pack keeps every object of the pack in its quarantine; the gate forwards with
    `git push`, which sends only what the pushed refs reach, so a secret riding along in the
    pack, unreachable, stays in the bottle."""
    head = commit_file(gate.agent, "clean.txt", "clean\n")
    hidden_oid = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=gate.agent,
        input=KEY_LINE + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    listing = git(gate.agent, "rev-list", "--objects", head, "--not", "origin/main").stdout
    oids = [line.split()[0] for line in listing.splitlines()] + [hidden_oid]
    pack = subprocess.run(
        ["git", "pack-objects", "--stdout"],
        cwd=gate.agent,
        input="\n".join(oids).encode() + b"\n",
        capture_output=True,
        check=True,
    ).stdout

    answer = raw_push(gate.port, f"{ZERO_OID} {head} refs/heads/agent/ride", pack)

    assert b"ok refs/heads/agent/ride" in answer, answer
    assert gate.ref("refs/heads/agent/ride") == head
    assert hidden_oid not in gate.objects()


def _pack_entry_header(kind: int, size: int) -> bytes:
    byte, size = (kind << 4) | (size & 0x0F), size >> 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte, size = size & 0x7F, size >> 7
    return bytes(out) + bytes([byte])


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def delta_bomb_pack(base: bytes, deltas: int, copies: int) -> tuple[bytes, str]:
    """A pack of `base` and `deltas` blobs, each a few bytes of delta copying the whole base
    `copies` times (git's delta format has no bound on that), and the base's id."""
    base_id = hashlib.sha1(b"blob %d\0" % len(base) + base).digest()
    size = len(base)
    copy = bytes([0x80 | sum(0x10 << i for i in range(3) if size >> 8 * i & 0xFF)]) + bytes(
        size >> 8 * i & 0xFF for i in range(3) if size >> 8 * i & 0xFF
    )  # copy from offset 0 (no offset bytes), `size` bytes
    body = _pack_entry_header(3, size) + zlib.compress(base)
    for number in range(deltas):
        unique = b"%08d" % number  # so that no two results are the same object
        delta = _varint(size) + _varint(len(unique) + copies * size)
        delta += bytes([len(unique)]) + unique + copy * copies
        body += _pack_entry_header(7, len(delta)) + base_id + zlib.compress(delta, 9)
    pack = b"PACK" + struct.pack(">II", 2, deltas + 1) + body
    return pack + hashlib.sha1(pack).digest(), base_id.hex()


def test_a_delta_bomb_is_cut_off_by_the_cpu_bound(tmp_path: Path) -> None:
    """Under 1 MiB of pack that index-pack spends seconds of CPU on (60 blobs of 64 MiB, each
    a copy of the base 64 times): the byte bound cannot stop it, and a 32 MiB pack of such
    deltas would hold the bundle's CPU for days. Each process of a push has a CPU bound."""
    answer = push_a_delta_bomb(tmp_path, "bombed")

    assert b"unpack ok" not in answer, answer
    assert b"index-pack abnormal exit" in answer, answer


def push_a_delta_bomb(tmp_path: Path, slug: str) -> bytes:
    """Push under 2 MiB of delta bomb to a gate on loopback whose pushes have one CPU-second
    each; what the gate answered."""
    config = loopback_gate_config(
        tmp_path,
        slug,
        GitUpstreamConfig(
            name="origin", url=f"file://{seed_upstream(tmp_path)}", push_branches=("agent/*",)
        ),
    )
    pack, base = delta_bomb_pack(os.urandom(1 << 20), deltas=60, copies=64)
    assert len(pack) < 2 << 20
    with gate_on_loopback(tmp_path, config, "--push-cpu-seconds", "1") as (port, _):
        return raw_push(port, f"{ZERO_OID} {base} refs/heads/agent/bomb", pack)


def _dumps_core_in_cwd() -> bool:
    """Whether a crashing process here writes its core in its working directory (the kernel's
    core_pattern is global: a container's process dumps where the host says)."""
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    return bool(pattern) and not pattern.startswith(("|", "/"))


@pytest.mark.skipif(not _dumps_core_in_cwd(), reason="core_pattern does not dump in the cwd")
def test_a_push_cut_off_by_the_cpu_bound_leaves_no_core_dump(tmp_path: Path) -> None:
    """SIGXCPU's default action dumps core. Docker's systemd unit gives containers an unbounded
    core size (LimitCORE=infinity), and with the usual core_pattern ("core") the dump of
    index-pack, as big as its heap, lands in its working directory: the gate's repository in
    the state dir on the host, once per delta bomb. The gate runs here with the core size
    such a host gives it."""
    before = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (before[1], before[1]))  # what the gate inherits
    try:
        answer = push_a_delta_bomb(tmp_path, "cored")
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, before)

    assert b"unpack ok" not in answer, answer
    cores = [p for p in (tmp_path / "gate").rglob("core*") if p.is_file()]
    assert not cores, f"core dumps in the gate's repository: {[p.stat().st_size for p in cores]}"


def test_a_repository_the_agent_builds_of_ref_files_is_not_served(gate: Gate) -> None:
    """`git daemon` serves what lies under a listed repository too (without --strict-paths):
    pushed branches named agent/origin/HEAD, .../objects/o and .../refs/r made
    refs/heads/agent/origin in the gate's repository a repository of its own, named like the
    upstream, which the daemon served with no hook: a push into it went unscanned, unbounded and
    uncounted into the gate's state on the host."""
    for ref in ("HEAD", "objects/o", "refs/r"):
        assert gate.push_ok(f"HEAD:refs/heads/agent/origin/{ref}")
    nested = f"git://127.0.0.1:{gate.port}/origin.git/refs/heads/agent/origin"
    commit_file(gate.agent, "blob.txt", f"{AWS_KEY}\n", "unscanned")

    pushed = git(gate.agent, "push", nested, "HEAD:refs/heads/anything", check=False)
    listed = git(gate.agent, "ls-remote", nested, check=False)

    assert pushed.returncode != 0 and listed.returncode != 0
    stored = gate.upstream.parent / "gate" / "origin.git" / "refs" / "heads" / "agent" / "origin"
    assert not (stored / "refs" / "heads" / "anything").exists()
