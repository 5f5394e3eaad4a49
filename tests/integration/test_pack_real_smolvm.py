"""The engine against the real smolvm CLI (opt-in: ``BOTTLE_REAL_SMOLVM=1``).

The contract fake stands in for smolvm everywhere else; these tests keep it honest. The first
needs no VM: the real CLI must accept the engine's ``machine create`` flags and Smolfile and
record exactly the one allowed CIDR. The second packs and boots a real agent image and is
skipped, with smolvm's own reason, on hosts that cannot boot microVMs.

    BOTTLE_REAL_SMOLVM=1 BOTTLE_SMOLVM=/path/to/smolvm \
        pytest tests/integration/test_pack_real_smolvm.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import smolvm
from bottle_engine.artifacts import BuildSpec, ensure_artifact
from bottle_engine.artifacts.pack import pack_artifact
from bottle_engine.errors import BottleError
from bottle_engine.smolfile import spec_for, write_smolfile

pytestmark = pytest.mark.skipif(
    os.environ.get("BOTTLE_REAL_SMOLVM") != "1",
    reason="runs the real smolvm only with BOTTLE_REAL_SMOLVM=1 (and BOTTLE_SMOLVM or PATH)",
)

BUNDLE_CIDR = "172.30.9.2/32"


@pytest.fixture
def real_smolvm(monkeypatch: pytest.MonkeyPatch) -> Iterator[smolvm.Smolvm]:
    """The installed smolvm with its state in a directory of this test's own (a short path:
    smolvm puts Unix sockets under it, and those are limited to 107 bytes)."""
    state_dir = tempfile.mkdtemp(prefix="bb-smolvm-", dir="/tmp")
    monkeypatch.setenv("BOTTLE_SMOLVM_STATE_DIR", state_dir)
    try:
        info = smolvm.probe()
    except BottleError as exc:
        pytest.skip(f"no usable smolvm: {exc}")
    try:
        yield smolvm.Smolvm(info)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def created(cli: smolvm.Smolvm, name: str) -> dict[str, Any]:
    return next(m for m in cli.machines() if m["name"] == name)


def test_real_cli_accepts_the_engine_flags_and_smolfile(
    real_smolvm: smolvm.Smolvm, tmp_path: Path
) -> None:
    smolfile = write_smolfile(spec_for(1, 512 * 1024**2, "/workspace"), tmp_path / "Smolfile")
    spec = smolvm.MachineSpec(
        name="bottle-contract",
        sidecar=tmp_path / "unused.smolmachine",
        allow_cidrs=(BUNDLE_CIDR,),
        env={"HTTPS_PROXY": "http://172.30.9.2:8888"},
        labels={"bot-bottle.slug": "contract", "bot-bottle.managed": "1"},
        smolfile=smolfile,
        workload=("sleep", "infinity"),
        user="1000:1000",
    )
    args = smolvm.machine_create_args(spec)
    # Without a real pack, create from nothing: every other flag is the engine's own.
    at = args.index("--from")
    args = args[:at] + args[at + 2 :]
    real_smolvm.run(args, doing="create the contract machine")
    try:
        machine = created(real_smolvm, "bottle-contract")
        assert machine["allowed_cidrs"] == [BUNDLE_CIDR]
        assert machine["labels"]["bot-bottle.slug"] == "contract"
        assert (machine["cpus"], machine["memory_mib"]) == (1, 512)
    finally:
        real_smolvm.machine_delete("bottle-contract")
    assert not [m for m in real_smolvm.machines() if m["name"] == "bottle-contract"]


def boot_failure(cli: smolvm.Smolvm) -> str | None:
    """Why this host cannot boot a microVM (smolvm's own words), or None when it can."""
    done = subprocess.run(
        cli.command(["machine", "run", "--", "true"]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode == 0:
        return None
    return smolvm.translate_failure("boot a test microVM", done.returncode, done.stderr).message


@pytest.mark.docker
@pytest.mark.slow
def test_real_smolvm_packs_and_boots_the_agent_image(
    real_smolvm: smolvm.Smolvm,
    docker_client: Any,
    base_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = boot_failure(real_smolvm)
    if reason:
        pytest.skip(f"this host cannot boot microVMs: {reason}")
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "cache"))
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo bottled > /etc/bottle-marker\n"
    )
    artifact = ensure_artifact(
        docker_client,
        BuildSpec(
            name="smolvm-real",
            dockerfile=context / "Dockerfile",
            context=context,
            build_args={},
            base_image=base_image,
            ca_bundle=None,
        ),
    )
    pack = pack_artifact(artifact, smolvm=real_smolvm, docker_client=docker_client)
    spec = smolvm.MachineSpec(
        name="bottle-real",
        sidecar=pack.sidecar,
        allow_cidrs=("127.0.0.1/32",),
        workload=("sleep", "infinity"),
    )
    real_smolvm.machine_create(spec)
    try:
        real_smolvm.machine_start("bottle-real")
        assert real_smolvm.machine_exec("bottle-real", ["cat", "/etc/bottle-marker"]).strip() == (
            "bottled"
        )
        real_smolvm.machine_stop("bottle-real")
    finally:
        real_smolvm.machine_delete("bottle-real")
