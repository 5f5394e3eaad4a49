"""The smolmachines backend's pure parts: the VM it asks smolvm for, and the files it copies in."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import records
from bottle_engine.backends.smolmachines import (
    KEEPALIVE,
    SmolmachinesBackend,
    machine_spec,
    vm_resources,
)
from bottle_engine.errors import BottleError
from bottle_engine.guest import files_archive, guest_files
from bottle_engine.manifest import load_manifest_text
from bottle_engine.plan import AGENT_UID, PROMPT_PATH, WORKSPACE, BottlePlan, plan_bottle
from bottle_engine.records import BottleRecord
from bottle_engine.smolvm import machine_create_args, machine_exec_args

MANIFEST = """\
[agents.dev]
prompt = "Review the diff; never push to main."

[bottles.default]
egress.allow = ["api.anthropic.com", "pypi.org"]
"""


def make_plan(tmp_path: Path) -> BottlePlan:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    manifest = load_manifest_text(MANIFEST, tmp_path / "bottle.toml").require()
    return plan_bottle(manifest, "dev", cwd=tmp_path)


def test_vm_may_reach_the_bundle_and_nothing_else(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    args = machine_create_args(machine_spec(plan, tmp_path / "bottle.smolmachine"))
    cidrs = [args[i + 1] for i, arg in enumerate(args) if arg == "--allow-cidr"]
    assert cidrs == [f"{plan.bundle_ip}/32"]
    # The egress allowlist is the bundle's business: no host names reach smolvm.
    assert "api.anthropic.com" not in " ".join(args)
    assert not {"--net", "--allow-host", "--allow-host-pattern", "--allow-private"} & set(args)


def test_vm_resolves_names_only_through_its_bundle(tmp_path: Path) -> None:
    """smolvm's virtio-net gateway answers every guest DNS query (UDP and TCP 53, to any
    address) by forwarding it from the host to its upstream resolver, 1.1.1.1 unless `--dns`
    names another, and the `--allow-cidr` list never gates that path: without `--dns` the
    agent could tunnel data out through DNS past its bundle. The bundle serves no DNS, so a
    forwarded lookup ends there, as in the docker backend."""
    plan = make_plan(tmp_path)
    args = machine_create_args(machine_spec(plan, tmp_path / "bottle.smolmachine"))
    assert args.count("--dns") == 1
    assert args[args.index("--dns") + 1] == plan.bundle_ip


def test_vm_gets_the_plans_guest_env_with_ip_literal_proxies(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    args = machine_create_args(machine_spec(plan, tmp_path / "bottle.smolmachine"))
    env = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--env")
    assert env == plan.guest_env
    assert env["HTTPS_PROXY"] == f"http://{plan.bundle_ip}:8888"


def test_vm_is_named_for_the_bottle_and_labelled_for_gc(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    spec = machine_spec(plan, tmp_path / "bottle.smolmachine")
    args = machine_create_args(spec)
    assert args[args.index("--name") + 1] == f"bottle-{plan.slug}"
    assert f"bot-bottle.slug={plan.slug}" in args
    assert args[args.index("--") + 1 :] == list(KEEPALIVE)
    assert args[args.index("--user") + 1] == f"{AGENT_UID}:{AGENT_UID}"


def test_prompt_reaches_the_guest_readable_by_the_agent_alone(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    files = guest_files(plan, bottle_ca=b"CA", system_cas=None, prompt="be careful")
    with tarfile.open(fileobj=io.BytesIO(files_archive(files))) as archive:
        prompt = archive.getmember(PROMPT_PATH.lstrip("/"))
        extracted = archive.extractfile(prompt)
        assert extracted is not None
        assert extracted.read() == b"be careful"
    assert prompt.mode == 0o600
    assert (prompt.uid, prompt.gid) == (AGENT_UID, AGENT_UID)


def test_vm_gets_the_plans_limits_and_workspace_as_flags(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    args = machine_create_args(machine_spec(plan, tmp_path / "bottle.smolmachine"))
    cpus, memory_mib = vm_resources(plan.cpus, plan.memory_bytes)
    assert args[args.index("--cpus") + 1] == str(cpus)
    assert args[args.index("--mem") + 1] == str(memory_mib)
    assert args[args.index("--workdir") + 1] == WORKSPACE


def test_limits_round_to_what_smolvm_counts() -> None:
    assert vm_resources(1.5, 3 * 1024**3) == (2, 3072)
    assert vm_resources(0.25, 64 * 1024**2) == (1, 256)


class _RecordingSmolvm:
    """Stands in for `Smolvm`: one running machine; a command run in it exits 5."""

    def __init__(self, name: str, state: str = "running") -> None:
        self.name, self.state = name, state
        self.ran: list[list[str]] = []

    def machines(self) -> list[dict[str, str]]:
        return [{"name": self.name, "state": self.state}]

    def exec_attached(
        self,
        name: str,
        command: list[str],
        *,
        interactive: bool,
        user: str | None = None,
        guard: bool = False,
    ) -> int:
        self.ran.append(machine_exec_args(name, command, interactive=interactive, user=user))
        return 5


def _record(tmp_path: Path) -> BottleRecord:
    return records.record_for(make_plan(tmp_path), "smolmachines", records.BottleResources())


@pytest.mark.parametrize("tty", [True, False])
def test_exec_runs_as_the_agent_and_passes_the_exit_code_through(tmp_path: Path, tty: bool) -> None:
    record = _record(tmp_path)
    smolvm: Any = _RecordingSmolvm(record.name)
    backend = SmolmachinesBackend(client=object(), smolvm=smolvm)
    assert backend.exec(record, ["git", "status"], tty=tty) == 5
    assert smolvm.ran == [
        machine_exec_args(record.name, ["git", "status"], interactive=tty, user="1000:1000")
    ]


def test_exec_in_a_stopped_microvm_says_to_resume(tmp_path: Path) -> None:
    record = _record(tmp_path)
    smolvm: Any = _RecordingSmolvm(record.name, state="stopped")
    with pytest.raises(BottleError) as raised:
        SmolmachinesBackend(client=object(), smolvm=smolvm).exec(record, ["sh"], tty=False)
    assert raised.value.fix and f"resume {record.slug}" in raised.value.fix
    assert smolvm.ran == []
