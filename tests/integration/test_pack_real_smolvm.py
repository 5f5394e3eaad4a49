"""The engine against the real smolvm 1.32.2 (the `smolmachines` wheel's CLI), not the fake.

Every test here runs the real binary with its state in a private ``--state-dir``. Without KVM
(as on the machines this project is tested on) the real CLI still parses every command line
and really creates, lists, labels and deletes machines; only what boots a VM (``machine
start``, ``pack create``) fails, and then the engine must show smolvm's own failure, naming
KVM, and leave nothing behind. Where KVM works, the boot test packs and boots a real image.
The suite fails (it does not skip) when the real smolvm is not installed: `scripts/setup`
installs it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import guest, lifecycle, records, smolvm, state
from bottle_engine.artifacts import BuildSpec, ensure_artifact
from bottle_engine.artifacts.pack import pack_artifact, packs_dir
from bottle_engine.backends.smolmachines import KEEPALIVE, SmolmachinesBackend, machine_spec
from bottle_engine.dockerapi.client import LABEL_MANAGED, LABEL_SLUG, LABEL_STATE
from bottle_engine.errors import BottleError
from bottle_engine.manifest import load_manifest_text
from bottle_engine.plan import BottlePlan, plan_bottle
from bottle_engine.settings import ENV_SMOLVM_STATE_DIR
from tests.bundle_helpers import build_bundle_image
from tests.integration.test_pack_launch import MANIFEST


@pytest.fixture
def real_smolvm(monkeypatch: pytest.MonkeyPatch) -> Iterator[smolvm.Smolvm]:
    """The real smolvm with its state in a directory of this test's own (a short path: smolvm
    puts Unix sockets under it, and those are limited to 107 bytes)."""
    monkeypatch.delenv("BOTTLE_SMOLVM", raising=False)
    binary = shutil.which("smolvm") or smolvm.wheel_binary()
    if binary is None:
        pytest.fail(
            f"the real smolvm is not installed: pip install smolmachines=={smolvm.TESTED_VERSION}"
        )
    info = smolvm.probe(Path(binary))
    assert info.version == smolvm.TESTED_VERSION
    state_dir = tempfile.mkdtemp(prefix="bb-smolvm-", dir="/tmp")
    monkeypatch.setenv(ENV_SMOLVM_STATE_DIR, state_dir)
    try:
        yield smolvm.Smolvm(info)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def make_plan(tmp_path: Path, base_image: str = "bot-bottle/base:bookworm") -> BottlePlan:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    text = MANIFEST.format(base_image=base_image)
    manifest = load_manifest_text(text, tmp_path / "bottle.toml").require()
    return plan_bottle(manifest, "dev", cwd=tmp_path)


def without_pack(args: list[str]) -> list[str]:
    """The engine's argv minus ``--from PACK``: a real pack needs a VM to make."""
    at = args.index("--from")
    return args[:at] + args[at + 2 :]


def boot_failure(cli: smolvm.Smolvm) -> BottleError | None:
    """Why this host cannot boot a microVM (smolvm's own words), or None when it can."""
    cli.run(["machine", "create", "--name", "bb-boot-check"], doing="create a boot check")
    try:
        cli.machine_start("bb-boot-check")
    except BottleError as exc:
        return exc
    finally:
        cli.machine_delete("bb-boot-check")
    return None


def test_real_cli_parses_the_engines_create_with_its_pack(
    real_smolvm: smolvm.Smolvm, tmp_path: Path
) -> None:
    args = smolvm.machine_create_args(
        machine_spec(make_plan(tmp_path), tmp_path / "no.smolmachine")
    )
    with pytest.raises(BottleError) as caught:
        real_smolvm.run(args, doing="create from a missing pack")
    # Parsed and checked, then refused only because the pack file does not exist.
    assert "file not found" in caught.value.message
    assert real_smolvm.machines() == []


def create_machine(
    real_smolvm: smolvm.Smolvm, tmp_path: Path
) -> tuple[BottlePlan, smolvm.MachineSpec]:
    """The engine's machine for a planned bottle, created (not started) by the real CLI."""
    plan = make_plan(tmp_path)
    spec = machine_spec(plan, tmp_path / "unused.smolmachine")
    real_smolvm.run(without_pack(smolvm.machine_create_args(spec)), doing="create")
    return plan, spec


def test_real_cli_creates_the_engines_machine_with_one_cidr_labels_and_limits(
    real_smolvm: smolvm.Smolvm, tmp_path: Path
) -> None:
    plan, spec = create_machine(real_smolvm, tmp_path)
    [machine] = real_smolvm.machines()
    assert machine["name"] == plan.name
    assert machine["allowed_cidrs"] == [f"{plan.bundle_ip}/32"]
    assert machine["network"] is True
    assert machine["labels"][LABEL_SLUG] == plan.slug
    assert machine["labels"][LABEL_MANAGED] == "1"
    assert (machine["cpus"], machine["memory_mib"]) == (spec.cpus, spec.memory_mib)
    assert machine["cmd"] == list(KEEPALIVE)
    assert machine["state"] == "created"
    SmolmachinesBackend(smolvm=real_smolvm)._delete_machine(plan.name)
    assert real_smolvm.machines() == []


def test_real_machine_forwards_guest_dns_to_its_bundle_only(
    real_smolvm: smolvm.Smolvm, tmp_path: Path
) -> None:
    # Stored by the real CLI: the upstream its gateway forwards every guest DNS query to. None
    # means smolvm's default (1.1.1.1, reached from the host past the allow list).
    plan, _ = create_machine(real_smolvm, tmp_path)
    [machine] = real_smolvm.machines()
    assert machine.get("dns") == plan.bundle_ip
    SmolmachinesBackend(smolvm=real_smolvm)._delete_machine(plan.name)


def test_orphaned_real_machines_are_found_by_their_labels(
    real_smolvm: smolvm.Smolvm, tmp_path: Path
) -> None:
    plan, _ = create_machine(real_smolvm, tmp_path)
    backend = SmolmachinesBackend(smolvm=real_smolvm)
    assert backend.orphans() == [plan.name]  # no record accounts for it
    assert backend.remove_orphans() == [plan.name]
    assert real_smolvm.machines() == []


def test_vm_boot_failure_names_kvm_and_leaves_no_machine(real_smolvm: smolvm.Smolvm) -> None:
    failure = boot_failure(real_smolvm)
    if failure is None:
        pytest.skip("this host boots microVMs; the boot test covers it")
    assert "KVM" in failure.message or "kvm" in failure.message
    assert 'backend = "docker"' in str(failure.fix)
    assert real_smolvm.machines() == []


@pytest.mark.docker
@pytest.mark.slow
def test_launch_with_the_real_smolvm_fails_at_the_vm_boot_naming_kvm_leaving_nothing(
    real_smolvm: smolvm.Smolvm,
    docker_client: Any,
    base_image: str,
    session_cache_dir: Path,
    tmp_path: Path,
) -> None:
    if boot_failure(real_smolvm) is None:
        pytest.skip("this host boots microVMs; the boot test covers it")
    build_bundle_image(docker_client, base_image, session_cache_dir)
    project = tmp_path / "project"
    project.mkdir()
    (project / "bottle.toml").write_text(MANIFEST.format(base_image=base_image))
    (project / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN useradd --uid 1000 --create-home agent\n"
    )
    packs_before = set(packs_dir().glob("*")) if packs_dir().exists() else set()
    with pytest.raises(BottleError) as caught:
        lifecycle.launch(project / "bottle.toml", "dev", cwd=project)
    assert "kvm" in caught.value.message.lower()
    assert 'backend = "docker"' in str(caught.value.fix)
    assert real_smolvm.machines() == []
    ours = {"label": f"{LABEL_STATE}={state.state_id()}"}
    assert docker_client.containers.list(all=True, filters=ours) == []
    assert docker_client.networks.list(filters=ours) == []
    assert records.all_records() == []
    assert set(packs_dir().glob("*")) == packs_before


@pytest.mark.docker
@pytest.mark.slow
def test_real_smolvm_packs_and_boots_the_agent_image(
    real_smolvm: smolvm.Smolvm,
    docker_client: Any,
    base_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if boot_failure(real_smolvm) is not None:
        pytest.skip("this host cannot boot microVMs (see the KVM test)")
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
        dns="127.0.0.1",
        workload=KEEPALIVE,
    )
    real_smolvm.machine_create(spec)
    try:
        real_smolvm.machine_start("bottle-real")
        marker = real_smolvm.machine_exec("bottle-real", ["cat", "/etc/bottle-marker"])
        assert marker.strip() == "bottled"
        real_smolvm.machine_stop("bottle-real")
    finally:
        real_smolvm.machine_delete("bottle-real")


def test_engine_argv_for_every_other_command_is_parsed_by_the_real_cli(
    real_smolvm: smolvm.Smolvm, tmp_path: Path
) -> None:
    # No machine of that name exists: each must fail at lookup (exit 1), never at parsing (2).
    for args in (
        ["machine", "start", "--name", "bb-none"],
        ["machine", "stop", "--name", "bb-none"],
        smolvm.machine_exec_args("bb-none", ["sh", "-c", "true"], user="1000:1000"),
        # root's commands after the agent ran: an environment over the machine's
        smolvm.machine_exec_args("bb-none", ["true"], user="0", env=guest.SYSTEM_EXEC_ENV),
        smolvm.machine_exec_args("bb-none", ["sh"], interactive=True),
        # `bottle-engine exec` from a terminal: as the agent, with a TTY.
        smolvm.machine_exec_args("bb-none", ["sh"], interactive=True, user="1000:1000"),
        smolvm.machine_logs_args("bb-none", follow=True),
        smolvm.machine_cp_args(Path("/etc/hostname"), "bb-none", "/tmp/x", mode=0o600, uid=0),
    ):
        done = subprocess.run(
            real_smolvm.command(args),
            capture_output=True,
            text=True,
            check=False,
            env=real_smolvm.env(),
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        assert done.returncode == 1, (args, done.stderr)
        assert "NOT_FOUND" in done.stderr or "not found" in done.stderr.lower(), (args, done.stderr)
