"""Invariant 6, disk, in a real bundle container: an agent pushing clean packs one after another
through the gate stops at the gate's store budget, measured on the host in the bottle's state
dir (the bundle's git, its user, its bind mount; the upstream is our sshd container)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import GIT_GATE_REPOS_NAME
from tests.integration.test_gitgate_bundle import AGENT_GIT, Bottle, gated_bottle

pytestmark = [pytest.mark.docker, pytest.mark.slow]

KIB = 1024
BUDGET = 1024 * KIB
PUSHES = 12  # each about 170 KiB of pack: twice the budget
# 128 KiB of random bytes as decimal numbers: text the scanner finds nothing in, and that zlib
# cannot shrink below the random bytes.
NOISE = "head -c 131072 /dev/urandom | od -An -tu4 -w16"


@pytest.fixture
def budgeted(
    docker_client: Any,
    bundle_image: str,
    ssh_image: str,
    tmp_path: Path,
) -> Iterator[tuple[Bottle, Path]]:
    """A bottle whose gate's store budget is BUDGET, and the gate's repository on the host."""
    with gated_bottle(
        docker_client, bundle_image, ssh_image, tmp_path, max_stored_bytes=BUDGET
    ) as bottle:
        yield bottle, tmp_path / "state" / GIT_GATE_REPOS_NAME / "origin.git"


def test_clean_pushes_from_the_bottle_stop_at_the_gates_store_budget(
    budgeted: tuple[Bottle, Path],
) -> None:
    bottle, gate_repo = budgeted
    git = " ".join(AGENT_GIT)
    code, output = bottle.agent_sh(f"git clone -q {bottle.gate_url} /tmp/fill")
    assert code == 0, output
    refused = []
    for push in range(PUSHES):
        code, output = bottle.agent_sh(
            f"cd /tmp/fill && {NOISE} > noise-{push}.txt && git add noise-{push}.txt"
            f" && {git} commit -q -m noise-{push}"
            f" && git push origin HEAD:refs/heads/agent/fill-{push} 2>&1"
        )
        if code != 0:
            refused.append((push, output))

    objects = gate_repo / "objects"
    kept = sum(path.stat().st_size for path in objects.rglob("*") if path.is_file())
    assert kept <= BUDGET + 64 * KIB, f"the gate keeps {kept} bytes after {PUSHES} pushes"
    assert refused and refused[0][0] > 0, refused[:1]
    assert f"at most {BUDGET} bytes of accepted pushes to 'origin'" in refused[0][1]
    assert bottle.upstream_ref(f"refs/heads/agent/fill-{refused[0][0]}") is None


def test_new_refs_from_the_bottle_are_bounded_per_push_and_by_the_store_budget(
    budgeted: tuple[Bottle, Path],
) -> None:
    """Refs cost no pack: 1500 new branches at one commit in one push, or 40 at a time, sent no
    object the budget counted, and each became a file in the gate's repository on the host."""
    bottle, gate_repo = budgeted
    git = " ".join(AGENT_GIT)
    make = (
        "cd /tmp/refs && seq {count} | sed 's|.*|create refs/heads/agent/{prefix}& HEAD|'"
        " | git update-ref --stdin"
    )
    code, output = bottle.agent_sh(
        f"git clone -q {bottle.gate_url} /tmp/refs && cd /tmp/refs"
        f" && echo hi > a.txt && git add a.txt && {git} commit -q -m refs"
        " && git push -q origin HEAD:refs/heads/agent/base 2>&1"
    )
    assert code == 0, output

    code, output = bottle.agent_sh(
        make.format(count=1500, prefix="many/")
        + " && git push origin 'refs/heads/agent/many/*' 2>&1"
    )
    assert code != 0, "1500 refs accepted in one push"
    assert "at most 1000 refs per push" in output, output

    refused = []
    for push in range(8):  # 40 two-part names a push: 320 KiB of blocks, the budget is 1 MiB
        code, output = bottle.agent_sh(
            make.format(count=40, prefix=f"p{push}-")
            + f" && git push origin 'refs/heads/agent/p{push}-*' 2>&1"
        )
        if code != 0:
            refused.append((push, output))
    assert refused and refused[0][0] > 0, refused[:1]
    assert f"at most {BUDGET} bytes of accepted pushes to 'origin'" in refused[0][1]
    ref_files = [p for p in (gate_repo / "refs" / "heads").rglob("*") if p.is_file()]
    assert len(ref_files) * 2 * 4096 <= BUDGET + 8 * KIB, f"{len(ref_files)} ref files kept"
