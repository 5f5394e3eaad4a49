"""A whole smolmachines bottle: real images, real bundle on its bridge, the microVM through the
smolvm contract fake (every argv checked by the real smolvm 1.32.2; the guest a stand-in
container of the packed image). Checks what the VM is allowed (one CIDR: the bundle's), that
the bundle answers on that address from the host (where smolvm's network stack sends the
guest's connections), what lands in the guest with which owner and mode, that logs, exec and
probes go through smolvm, and that stop and a failed launch leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle, records
from bottle_engine.backends import backend_named
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.config import EGRESS_PORT
from bottle_engine.cli import main
from bottle_engine.command_output import UNFINISHED
from bottle_engine.dockerapi.client import LABEL_SLUG
from bottle_engine.limits import PROBE_OUTPUT_BYTES
from bottle_engine.plan import AGENT_HOME, AGENT_UID, CA_BUNDLE_PATH, PROMPT_PATH, WORKSPACE
from bottle_engine.probes import HAYSTACK_DIRS, ProbeTargets, find_secret_leaks
from tests.bottle_fixtures import TEST_SECONDS
from tests.bundle_helpers import build_bundle_image
from tests.fakes.fixtures import (
    FakeSmolvm,
    failing_without_kvm,
    install_fake_smolvm,
)
from tests.root_note import LIBRARY, NOTE, build_note_library

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MANIFEST = """\
[agents.dev]
prompt = "Only ever push to bot/* branches."
command = ["sh"]

[bottles.default]
backend = "smolmachines"
base_image = "{base_image}"
egress.allow = ["pypi.org"]
"""
AGENT_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN useradd --uid 1000 --create-home agent
"""


@pytest.fixture(scope="session")
def images_ready(docker_client: Any, base_image: str, session_cache_dir: Path) -> None:
    """The bundle image in the session's artifact store, so launches find it there."""
    build_bundle_image(docker_client, base_image, session_cache_dir)


@pytest.fixture
def project(
    tmp_path: Path, base_image: str, images_ready: None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "bottle.toml").write_text(MANIFEST.format(base_image=base_image))
    (root / "Dockerfile").write_text(AGENT_DOCKERFILE)
    (root / "notes.txt").write_text("the workspace copy\n")
    host_cas = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_cas.exists():
        monkeypatch.setenv("BOTTLE_CA_BUNDLE", str(host_cas))
    return root


def slug_resources(docker_client: Any, slug: str) -> list[str]:
    label = {"label": f"{LABEL_SLUG}={slug}"}
    return [c.name for c in docker_client.containers.list(all=True, filters=label)] + [
        n.name for n in docker_client.networks.list(filters=label)
    ]


def create_argv(fake: FakeSmolvm) -> list[str]:
    [argv] = [a for a in fake.commands() if a[:2] == ["machine", "create"]]
    return argv


def in_guest(record: records.BottleRecord, *argv: str) -> str:
    code, output = backend_named("smolmachines").exec_as_agent(record, list(argv))
    assert code == 0, output
    return output.strip()


@contextlib.contextmanager
def launched(project: Path) -> Iterator[records.BottleRecord]:
    """The project's `dev` bottle, launched; stopped and removed afterwards whatever happens."""
    record = lifecycle.launch(project / "bottle.toml", "dev", cwd=project)
    try:
        yield record
    finally:
        lifecycle.stop(record.slug, remove=True)


def test_launch_limits_the_vm_to_the_bundle_and_stop_removes_everything(
    project: Path, fake_smolvm: FakeSmolvm, docker_client: Any
) -> None:
    with launched(project) as record:
        argv = create_argv(fake_smolvm)
        assert "--smolfile" not in argv
        assert argv.count("--allow-cidr") == 1
        assert argv[argv.index("--allow-cidr") + 1] == f"{record.bundle_ip}/32"
        machine = fake_smolvm.machine(record.name)
        assert machine is not None
        assert machine["state"] == "running"
        assert machine["allowed_cidrs"] == [f"{record.bundle_ip}/32"]
        assert machine["dns"] == record.bundle_ip  # smolvm's DNS path ends at the bundle
        assert f"HTTPS_PROXY=http://{record.bundle_ip}:{EGRESS_PORT}" in machine["fake_env"]
        # TSI hands the guest's connections to the host: the bundle must answer there.
        with socket.create_connection((record.bundle_ip, EGRESS_PORT), timeout=10):
            pass
        # The guest set-up really ran: files, owners, modes, the CA bundle, the workspace copy.
        assert in_guest(record, "stat", "-c", "%a %u", PROMPT_PATH) == f"600 {AGENT_UID}"
        assert in_guest(record, "id", "-u") == str(AGENT_UID)
        assert in_guest(record, "cat", f"{WORKSPACE}/notes.txt") == "the workspace copy"
        assert "BEGIN CERTIFICATE" in in_guest(record, "cat", CA_BUNDLE_PATH)
        assert lifecycle.find(record.slug).backend == "smolmachines"
        code, output = backend_named("smolmachines").exec_as_agent(record, ["sh", "-c", "exit 3"])
        assert code == 3, output
        # The agent can hold the output of what runs as the agent open: not waited for.
        code, output = backend_named("smolmachines").exec_as_agent(
            record, ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; exec sleep 600"], seconds=3
        )
        assert code == UNFINISHED, output
        assert output.startswith("x" * PROBE_OUTPUT_BYTES) and "stopped waiting" in output
    assert fake_smolvm.machine(record.name) is None
    assert slug_resources(docker_client, record.slug) == []


def test_stopped_bottle_resumes_bundle_first_then_the_vm(
    project: Path, fake_smolvm: FakeSmolvm, docker_client: Any
) -> None:
    with launched(project) as record:
        lifecycle.stop(record.slug)
        assert statuses(record.slug) == ["stopped"]
        assert docker_client.containers.get(f"{record.name}-bundle").status == "exited"
        lifecycle.resume(record.slug)
        assert statuses(record.slug) == ["running"]
        assert docker_client.containers.get(f"{record.name}-bundle").status == "running"


def statuses(slug: str) -> list[str]:
    return [r.status.text for r in lifecycle.list_bottles() if r.slug == slug]


def test_failed_vm_start_removes_the_machine_bundle_and_networks(
    project: Path,
    fake_smolvm: FakeSmolvm,
    docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with failing_without_kvm(monkeypatch, "start"):
        lifecycle.launch(project / "bottle.toml", "dev", cwd=project)
    argv = create_argv(fake_smolvm)
    name = argv[argv.index("--name") + 1]
    slug = name.removeprefix("bottle-")
    assert fake_smolvm.machine(name) is None
    assert slug_resources(docker_client, slug) == []
    assert records.load(slug) is None


def test_pack_command_reuses_the_cached_pack_without_running_smolvm(
    project: Path, fake_smolvm: FakeSmolvm, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = str(project / "bottle.toml")
    assert main(["pack", "-f", manifest, "dev", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert Path(first["sidecar"]).is_file()
    fake_smolvm.forget_calls()
    assert main(["pack", "-f", manifest, "dev", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cache_hit"] is True
    assert again["sidecar"] == first["sidecar"]
    assert fake_smolvm.calls() == []


def test_logs_of_a_smolmachines_bottle_come_from_smolvm_not_docker(
    project: Path, fake_smolvm: FakeSmolvm, docker_client: Any
) -> None:
    with launched(project) as record:
        fake_smolvm.forget_calls()
        output = b"".join(lifecycle.logs(record.slug))
        assert isinstance(output, bytes)
        assert ["machine", "logs", "--name", record.name] in fake_smolvm.commands()
        bundle_output = b"".join(lifecycle.logs(record.slug, bundle=True))
        assert bundle_output  # the bundle is a container on both backends


def test_probes_run_in_the_guest_through_smolvm(
    project: Path, fake_smolvm: FakeSmolvm, docker_client: Any
) -> None:
    with launched(project) as record:
        fake_smolvm.forget_calls()
        gateway = ".".join([*record.bundle_ip.split(".")[:3], "1"])
        report, leaks = lifecycle.probe(record.slug, ProbeTargets(record.bundle_ip, gateway))
        assert leaks == []
        assert report.results, "no probe ran"
        assert report.passed, [r for r in report.results if not r.passed]
        execs = [a for a in fake_smolvm.commands() if a[:2] == ["machine", "exec"]]
        assert len(execs) >= len(report.results)
        assert all(a[a.index("--user") + 1] in {f"{AGENT_UID}:{AGENT_UID}", "0"} for a in execs)


def test_the_secret_search_reads_the_guest_through_smolvm_as_it_streams(
    project: Path, fake_smolvm: FakeSmolvm, docker_client: Any
) -> None:
    marker = "leaked-" + os.urandom(8).hex()
    with launched(project) as record:
        in_guest(record, "sh", "-c", f'echo {marker} > "$HOME/found.txt"')
        fake_smolvm.forget_calls()
        haystacks = backend_named("smolmachines").secret_haystacks(record, TEST_SECONDS)
        assert find_secret_leaks([marker], haystacks) == [AGENT_HOME]
        execs = [a for a in fake_smolvm.commands() if a[:2] == ["machine", "exec"]]
        assert len(execs) == 1 + len(HAYSTACK_DIRS)
        assert all(a[a.index("--user") + 1] == "0" for a in execs)


def test_a_pack_made_by_another_smolvm_is_not_reused(
    project: Path, fake_smolvm: FakeSmolvm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another smolvm (another version, or this fake beside the real one) may not read the pack.
    manifest = str(project / "bottle.toml")
    assert main(["pack", "-f", manifest, "dev", "--json"]) == 0
    other = install_fake_smolvm(tmp_path / "other-smolvm", "1.32.2")
    other.binary.write_text(other.binary.read_text() + "# another build\n")
    monkeypatch.setenv("BOTTLE_SMOLVM", str(other.binary))
    assert main(["pack", "-f", manifest, "dev", "--json"]) == 0
    assert len([a for a in other.commands() if a[:2] == ["pack", "create"] and "--image" in a]) == 1


def test_what_smolvm_copies_into_the_guest_is_staged_where_no_bundle_writes(
    project: Path, fake_smolvm: FakeSmolvm, docker_client: Any
) -> None:
    """smolvm opens the tar it copies into the guest by path. Staged in the bottle's dir, which
    its bundle can write, a taken-over bundle could swap it for a link to a host file between
    the engine's write and the copy, and that file would land in the guest."""
    with launched(project) as record:
        copies = [argv for argv in fake_smolvm.commands() if argv[:2] == ["machine", "cp"]]
        assert copies, "the workspace and the bottle's files reach the guest by `machine cp`"
        bundle_writable = BottleDir.of(record.slug).path.resolve()
        for argv in copies:
            source = Path(argv[-2]).resolve()
            assert not source.is_relative_to(bundle_writable), argv
            assert not source.exists(), f"{source} left behind"


WORKSPACE_SH = """\
#!/bin/sh
id -u >> /tmp/workspace-sh-ran-as
exec /bin/sh "$@"
"""


def test_a_program_of_the_workspace_copy_on_the_path_never_runs_as_root_at_launch(
    project: Path, fake_smolvm: FakeSmolvm
) -> None:
    """The workspace copy is the project, which an agent may have written in an earlier
    session; the guest's PATH may name a directory of it (a project's node_modules/.bin). The
    launch's root commands in the guest come after the copy is in: none may be found there."""
    manifest = project / "bottle.toml"
    path = f"{WORKSPACE}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    manifest.write_text(manifest.read_text() + f'env = {{ PATH = "{path}" }}\n')
    (project / "bin").mkdir()
    (project / "bin" / "sh").write_text(WORKSPACE_SH)
    (project / "bin" / "sh").chmod(0o755)
    with launched(project) as record:
        ran = in_guest(record, "/bin/sh", "-c", "cat /tmp/workspace-sh-ran-as 2>/dev/null; true")
    assert ran == ""


def test_a_library_the_guests_environment_preloads_is_not_loaded_as_root_at_launch(
    project: Path, fake_smolvm: FakeSmolvm
) -> None:
    """The person's LD_PRELOAD names a file of the workspace copy: the launch's root commands
    after the copy is in start with the machine's environment, which the loader reads."""
    manifest = project / "bottle.toml"
    build_note_library(project)
    manifest.write_text(
        manifest.read_text() + f'env = {{ LD_PRELOAD = "{WORKSPACE}/{LIBRARY}" }}\n'
    )
    with launched(project) as record:
        noted = in_guest(record, "sh", "-c", f"cat {NOTE} 2>/dev/null; true")
    assert noted == ""


def test_the_guests_root_directory_stays_roots(project: Path, fake_smolvm: FakeSmolvm) -> None:
    """The guest files are unpacked at `/`, and each tree's destination was then given to the
    agent: `/` too. The owner of `/` may swap its entries, such as the /lib64 link that holds
    the ELF interpreter every program names, so what the engine later runs there as root (the
    CA bundle step, the secret search of `probe`) would start with the agent's loader. Here
    the link is swapped for an equal one: a proof that leaves the guest working."""
    swap = 'ln -s "$(readlink /lib64)" /lib64.agent && mv -T /lib64.agent /lib64 && echo swapped'
    with launched(project) as record:
        owner = in_guest(record, "stat", "-c", "%u", "/")
        code, output = backend_named("smolmachines").exec_as_agent(record, ["sh", "-c", swap])
    assert "swapped" not in output and code != 0, output
    assert owner == "0"
