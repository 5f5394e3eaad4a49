"""Invariant 6, disk: the git gate keeps what it accepts in its repository in the bottle's
state dir, a host directory. Each push is bounded (receive.maxInputSize); a hostile agent
pushing clean packs one after another must still not grow that directory past the gate's
budget (`max_stored_bytes`). The real gate on loopback, a real git client, a file:// upstream.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from bottle_engine.bundle.config import GitUpstreamConfig
from bottle_engine.bundle.gitgate import store
from tests.integration.test_gitgate_attacks import Gate, start_gate
from tests.integration.test_gitgate_local import commit_file, git, seed_upstream
from tests.integration.test_gitgate_support import gate_on_loopback, loopback_gate_config

KIB = 1024
BUDGET = 1024 * KIB
NOISE_BYTES = 256 * KIB  # a pack of about this size per push: the text barely compresses
PUSHES = 3 * BUDGET // NOISE_BYTES


def clean_noise(seed: int) -> str:
    """Text zlib cannot shrink much and the secret scanner finds nothing in: short numbers."""
    rng = random.Random(seed)
    words = []
    size = 0
    while size < 2 * NOISE_BYTES:
        word = str(rng.getrandbits(24))
        words.append(word)
        size += len(word) + 1
    return "\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12)) + "\n"


def gate_store_bytes(gate: Gate) -> int:
    """What the gate's repository keeps on the host: every file under its objects dir."""
    objects = gate.upstream.parent / "gate" / "origin.git" / "objects"
    return sum(path.stat().st_size for path in objects.rglob("*") if path.is_file())


def test_pushing_clean_packs_one_after_another_stops_at_the_store_budget(
    tmp_path: Path,
) -> None:
    for gate in start_gate(
        tmp_path,
        max_stored_bytes=BUDGET,
        max_push_bytes=4 * NOISE_BYTES,
        max_blob_bytes=4 * NOISE_BYTES,
        max_scan_bytes=8 * NOISE_BYTES,
    ):
        refusals = []
        for push in range(PUSHES):
            commit_file(gate.agent, f"data/{push}.txt", clean_noise(push))
            result = git(gate.agent, "push", "origin", f"HEAD:refs/heads/agent/{push}", check=False)
            if result.returncode != 0:
                refusals.append((push, result.stderr))

        kept = gate_store_bytes(gate)
        assert kept <= BUDGET + 64 * KIB, f"the gate keeps {kept} bytes after {PUSHES} pushes"
        assert refusals, "every push was accepted"
        first, said = refusals[0]
        assert first > 0, said  # clean pushes within the budget still arrive
        assert f"at most {BUDGET} bytes of accepted pushes to 'origin'" in said, said
        assert "bottle-engine resume" in said
        # A refused push reached nothing: the upstream has exactly the accepted branches.
        branches = git(gate.upstream, "for-each-ref", "--format=%(refname)", "refs/heads/agent")
        assert len(branches.stdout.split()) == first


def test_a_push_of_many_long_refs_leaves_one_bounded_line_in_the_gate_log(
    tmp_path: Path,
) -> None:
    """The gate's audit log (git-gate.jsonl, in the state dir) gets an entry per push; the
    agent chooses how many refs a push carries and how long their names are."""
    refs = 2000
    for gate in start_gate(tmp_path, max_push_refs=refs):
        long_name = "agent/" + "n" * 200
        gate.sh(
            f'for i in $(seq {refs}); do echo "create refs/heads/{long_name}-$i HEAD"; done'
            " | git update-ref --stdin"
        )
        result = git(gate.agent, "push", "origin", f"refs/heads/{long_name}-*", check=False)
        assert result.returncode == 0, result.stderr

        log = tmp_path / "state" / "git-gate.jsonl"
        line = log.read_text().splitlines()[-1]
        assert len(line) <= 64 * KIB, f"{len(line)} bytes logged for one push"
        entry = json.loads(line)
        assert entry["refs_total"] == refs
        assert entry["accepted"] is True


def test_a_push_cut_off_by_the_cpu_bound_is_uncounted(tmp_path: Path) -> None:
    """The hook counts a push before scanning it; one that the per-push CPU bound ended (SIGXCPU
    killed the hook) stayed counted though git dropped it, so each such push shrank the budget
    until the next start. A scan of a few MiB of clean text takes more than one CPU-second."""
    config = loopback_gate_config(
        tmp_path,
        "slow-scan",
        GitUpstreamConfig(
            name="origin", url=f"file://{seed_upstream(tmp_path)}", push_branches=("agent/*",)
        ),
    )
    with gate_on_loopback(tmp_path, config, "--push-cpu-seconds", "1") as (_port, agent):
        for part in range(24):
            commit_file(agent, f"data/{part}.txt", clean_noise(part))
        result = git(agent, "push", "origin", "HEAD:refs/heads/agent/big", check=False)

        assert result.returncode != 0, "the scan fit in one CPU-second: make the push bigger"
        assert store.stored_bytes(tmp_path / "gate" / "origin.git") == 0
        assert "CPU bound per push (1 CPU-seconds)" in result.stderr, result.stderr
