"""The git gate's store budget ledger and the one-shot rotating log append (no git, no daemon)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bottle_engine.bundle.audit import append_line
from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate import gate, store
from bottle_engine.git import GitError


@pytest.mark.parametrize(
    ("stored", "incoming", "budget", "over"),
    [(0, 10, 10, False), (5, 5, 10, False), (5, 6, 10, True), (0, 11, 10, True)],
)
def test_over_budget_counts_what_is_kept_and_what_comes(
    stored: int, incoming: int, budget: int, over: bool
) -> None:
    assert store.over_budget(stored, incoming, budget) is over


def test_a_reservation_counts_until_released_and_a_refusal_counts_nothing(tmp_path: Path) -> None:
    assert store.reserve(tmp_path, 600, 1000) is None
    assert store.reserve(tmp_path, 500, 1000) == 600  # refused: 600 kept, nothing added
    assert store.stored_bytes(tmp_path) == 600
    store.release(tmp_path, 600)
    assert store.reserve(tmp_path, 1000, 1000) is None


def test_incoming_bytes_sums_the_quarantine_and_is_zero_without_one(tmp_path: Path) -> None:
    quarantine = tmp_path / "incoming-x"
    (quarantine / "pack").mkdir(parents=True)
    (quarantine / "pack" / "pack-1.pack").write_bytes(b"p" * 300)
    (quarantine / "pack" / "pack-1.idx").write_bytes(b"i" * 20)
    assert store.incoming_bytes({store.QUARANTINE_ENV: str(quarantine)}) == 320
    assert store.incoming_bytes({}) == 0  # a push of deletions only: git sent no pack


def test_new_refs_are_charged_a_block_per_part_past_refs_heads() -> None:
    block = store.REF_BLOCK_BYTES
    assert store.ref_bytes([]) == 0
    assert store.ref_bytes(["refs/heads/main"]) == block
    assert store.ref_bytes(["refs/heads/agent/x", "refs/heads/agent/y"]) == 4 * block
    assert store.ref_bytes(["refs/heads/a/b/c/d"]) == 4 * block


def test_a_planted_link_as_the_ledger_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("0")
    os.symlink(tmp_path / "elsewhere", tmp_path / store.LEDGER_NAME)
    with pytest.raises(OSError):
        store.reserve(tmp_path, 1, 10)


def test_append_line_rotates_and_keeps_at_most_its_bound(tmp_path: Path) -> None:
    log = tmp_path / "git-gate.jsonl"
    for number in range(200):
        append_line(log, f'{{"push": {number:04d}, "pad": "{"x" * 80}"}}', 1000, backups=2)
    kept = [log, log.with_name(log.name + ".1"), log.with_name(log.name + ".2")]
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert all(path.stat().st_size <= 1000 for path in kept)
    assert log.read_text().splitlines()[-1].startswith('{"push": 0199')


def test_append_line_refuses_a_planted_link(tmp_path: Path) -> None:
    target = tmp_path / "host-file"
    target.write_text("")
    os.symlink(target, tmp_path / "git-gate.jsonl")
    with pytest.raises(OSError):
        append_line(tmp_path / "git-gate.jsonl", "{}", 1000)
    assert target.read_text() == ""


def test_a_push_whose_check_fails_is_uncounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git fails the push when the hook raises (a git error, the CPU bound's SIGXCPU): the
    ledger must drop it too, or each such push shrinks the budget until the next start."""
    quarantine = tmp_path / "incoming"
    quarantine.mkdir()
    (quarantine / "pack-1.pack").write_bytes(b"p" * 500)
    monkeypatch.setenv(store.QUARANTINE_ENV, str(quarantine))

    def broken(*_args: object) -> gate.Verdict:
        raise GitError("reading objects: git died")

    monkeypatch.setattr(gate, "judge_and_forward", broken)
    upstream = GitUpstreamConfig(name="origin", url="file:///nowhere", push_branches=("*",))
    config = BundleConfig(slug="s", bundle_ip="127.0.0.1", agent_subnet="127.0.0.0/8")
    with pytest.raises(GitError):
        gate.pre_receive(tmp_path, config, upstream, f"{'0' * 40} {'1' * 40} refs/heads/x\n")
    assert store.stored_bytes(tmp_path) == 0
