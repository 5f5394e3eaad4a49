"""The smolvm wrapper: capability probe, argument lists, error translation, and the fake's
contract (it must fail where the real CLI fails)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle_engine import smolvm
from bottle_engine.artifacts.pack import choose_method
from bottle_engine.errors import BottleError, CommandFailed
from bottle_engine.settings import EngineSettings
from tests.fakes.fixtures import FAKE_SMOLVM, FakeSmolvm
from tests.fakes.oci_layout import make_layout, write_oci_tar

# `smolvm pack create --help` of the real 1.32.2, abridged to the lines the probe reads.
REAL_PACK_CREATE_HELP = """\
Package an OCI image or VM snapshot into a self-contained executable

Usage: smolvm pack create [OPTIONS] --output <PATH>

Options:
      --error-format <ERROR_FORMAT>
          How a failure is reported on stderr: `text`, or `json` for `{"error":...}`

  -I, --image <IMAGE>
          Container image to pack: a registry reference (alpine:latest, python:3.11-slim), a `docker save` archive (./myapp.tar, or `-` to read one from stdin), or an unpacked rootfs directory (./rootfs/)

      --from-vm <VM_NAME>
          Pack from a stopped VM snapshot instead of an OCI image

  -o, --output <PATH>
          Output file path for the packed binary
"""  # noqa: E501
LEGACY_PACK_CREATE_HELP = """\
Usage: smolvm pack create [OPTIONS] --image <IMAGE> --output <PATH>

Options:
  -I, --image <IMAGE>
          OCI image reference (e.g. alpine:latest, ghcr.io/org/app:v1)

  -o, --output <PATH>
          Output file path for the packed binary (a .tar mention elsewhere does not count)
"""

BIN = Path("/usr/local/bin/smolvm")


def test_probe_reads_archive_support_from_the_image_option_help() -> None:
    info = smolvm.parse_probe(BIN, "smolvm 1.32.2\n", REAL_PACK_CREATE_HELP)
    assert info.version == "1.32.2"
    assert info.accepts_archives
    assert info.error_format_json


def test_probe_of_a_registry_only_release_says_no_archives() -> None:
    info = smolvm.parse_probe(BIN, "smolvm 0.8.0\n", LEGACY_PACK_CREATE_HELP)
    assert info.version == "0.8.0"
    assert not info.accepts_archives
    assert not info.error_format_json


def test_probe_rejects_a_binary_that_names_no_version() -> None:
    with pytest.raises(BottleError, match="names no version") as caught:
        smolvm.parse_probe(BIN, "hello\n", REAL_PACK_CREATE_HELP)
    assert "BOTTLE_SMOLVM" in str(caught.value.fix)


@pytest.mark.parametrize(
    ("accepts_archives", "via_registry", "expected"),
    [(True, False, "direct"), (True, True, "registry"), (False, False, "registry")],
)
def test_pack_method_follows_the_probed_capability(
    accepts_archives: bool, via_registry: bool, expected: str
) -> None:
    info = smolvm.SmolvmInfo(BIN, "1.0", accepts_archives, error_format_json=True)
    assert choose_method(info, via_registry=via_registry) == expected


def test_probe_runs_the_cli_once_per_binary(fake_smolvm: FakeSmolvm) -> None:
    first = smolvm.probe()
    second = smolvm.probe()
    assert first == second
    assert fake_smolvm.calls() == [["--version"], ["pack", "create", "--help"]]


def test_probe_of_the_fake_follows_the_emulated_version(legacy_smolvm: FakeSmolvm) -> None:
    info = smolvm.probe()
    assert (info.version, info.accepts_archives) == ("0.8.0", False)


def test_missing_binary_names_the_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOTTLE_SMOLVM", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(smolvm, "wheel_binary", lambda: None)
    with pytest.raises(BottleError, match="none on PATH") as caught:
        smolvm.find_binary()
    assert "BOTTLE_SMOLVM" in str(caught.value.fix)
    assert "smolmachines==1.32.2" in str(caught.value.fix)
    assert "docker" in str(caught.value.fix)


def test_without_smolvm_on_path_the_wheels_binary_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BOTTLE_SMOLVM", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    wheel = smolvm.wheel_binary()
    assert wheel is not None, "the test environment installs smolmachines==1.32.2"
    assert smolvm.find_binary() == wheel
    assert wheel.name == "smol-vmm"


def test_bottle_smolvm_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_executable = tmp_path / "smolvm"
    not_executable.write_text("")
    monkeypatch.setenv("BOTTLE_SMOLVM", str(not_executable))
    with pytest.raises(BottleError, match="not an executable"):
        smolvm.find_binary()


def spec(**overrides: object) -> smolvm.MachineSpec:
    values: dict[str, object] = {
        "name": "bottle-dev",
        "sidecar": Path("/cache/packs/abc/bottle.smolmachine"),
        "allow_cidrs": ("172.30.0.2/32",),
        "dns": "172.30.0.2",
        "env": {"HTTPS_PROXY": "http://172.30.0.2:8888", "BOTTLE_SLUG": "dev"},
    }
    values.update(overrides)
    return smolvm.MachineSpec(**values)  # type: ignore[arg-type]


def test_machine_create_allows_exactly_the_given_cidr() -> None:
    args = smolvm.machine_create_args(spec())
    assert args[:6] == [
        "machine",
        "create",
        "--name",
        "bottle-dev",
        "--from",
        "/cache/packs/abc/bottle.smolmachine",
    ]
    assert args.count("--allow-cidr") == 1
    assert args[args.index("--allow-cidr") + 1] == "172.30.0.2/32"
    # Anything wider would be a way out of the bottle.
    wider = {"--net", "--allow-host", "--allow-host-pattern", "--use-host-proxy", "--allow-udp"}
    assert not wider & set(args)
    assert not {"--ssh-agent", "--secret-env", "--volume", "--port", "--nested"} & set(args)


def test_machine_create_pins_the_backend_that_enforces_the_allow_list() -> None:
    args = smolvm.machine_create_args(spec())
    assert args[args.index("--net-backend") + 1] == "virtio-net"


def test_machine_create_carries_resources_as_flags_never_a_smolfile() -> None:
    # smolvm 1.32 refuses --smolfile beside --from: what a Smolfile held goes in flags.
    args = smolvm.machine_create_args(spec(cpus=2, memory_mib=3072, workdir="/workspace"))
    assert "--smolfile" not in args and "-s" not in args
    assert args[args.index("--cpus") + 1] == "2"
    assert args[args.index("--mem") + 1] == "3072"
    assert args[args.index("--workdir") + 1] == "/workspace"


def test_machine_create_passes_env_as_key_value_pairs() -> None:
    args = smolvm.machine_create_args(spec())
    pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--env"]
    assert pairs == ["HTTPS_PROXY=http://172.30.0.2:8888", "BOTTLE_SLUG=dev"]


def test_machine_create_refuses_an_empty_allow_list() -> None:
    with pytest.raises(BottleError, match="without an egress allow list"):
        smolvm.machine_create_args(spec(allow_cidrs=()))


def test_machine_create_refuses_a_vm_whose_dns_would_go_out_from_the_host() -> None:
    # smolvm forwards guest DNS to 1.1.1.1 from the host unless --dns names another upstream.
    with pytest.raises(BottleError, match="without a DNS upstream"):
        smolvm.machine_create_args(spec(dns=None))


def test_exec_uses_the_long_name_flag_and_a_terminal_for_attach() -> None:
    args = smolvm.machine_exec_args("bottle-dev", ["claude"], interactive=True)
    assert args == [
        "machine",
        "exec",
        "--name",
        "bottle-dev",
        "--interactive",
        "--tty",
        "--",
        "claude",
    ]


def test_no_kvm_failure_points_to_the_docker_backend() -> None:
    stderr = "note: no packed assets found for 'smol-vmm'\n" + json.dumps(
        {"error": {"code": "KVM_UNAVAILABLE", "message": "KvmOpen(Error(13))"}}
    )
    error = smolvm.translate_failure("start microVM bottle-dev", 1, stderr)
    assert "start microVM bottle-dev" in error.message
    assert "KvmOpen" in error.message
    assert error.message.endswith("(/dev/kvm: Permission denied)")  # errno 13, in words
    assert "note:" not in error.message
    assert 'backend = "docker"' in str(error.fix)


def test_usage_error_from_smolvm_asks_for_a_supported_release() -> None:
    error = smolvm.translate_failure(
        "pack x", 2, "error: unexpected argument '--image' found\n\nUsage: smolvm pack create\n"
    )
    assert "unexpected argument '--image'" in error.message
    assert "supported" in str(error.fix)


def run_fake(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FAKE_SMOLVM), *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_fake_rejects_unknown_flags_like_clap() -> None:
    done = run_fake("machine", "create", "--bogus")
    assert done.returncode == 2
    assert "unexpected argument '--bogus'" in done.stderr


def test_fake_exec_takes_no_short_name_flag_like_the_real_cli() -> None:
    done = run_fake("machine", "exec", "-n", "x", "--", "true")
    assert done.returncode == 2


def test_fake_refuses_from_with_smolfile_as_the_real_cli_does(tmp_path: Path) -> None:
    # The drift that hid the broken launch: the real 1.32.2 refuses this pair at parsing.
    env = {**os.environ, "SMOLVM_FAKE_STATE": str(tmp_path / "state")}
    sidecar = tmp_path / "bottle.smolmachine"
    sidecar.write_text(json.dumps({"format": "fake-smolmachine/1"}))
    smolfile = tmp_path / "Smolfile"
    smolfile.write_text("cpus = 1\n")
    done = run_fake(
        "machine",
        "create",
        "--name",
        "x",
        "--from",
        str(sidecar),
        "--smolfile",
        str(smolfile),
        env=env,
    )
    assert done.returncode == 2
    assert "'--from <PATH>' cannot be used with '--smolfile <PATH>'" in done.stderr
    assert not (tmp_path / "state" / "machines" / "x.json").exists()


def test_fake_refuses_what_the_real_cli_refuses_after_parsing(tmp_path: Path) -> None:
    # A check the real CLI makes before touching its state: TSI cannot enforce an allow list.
    env = {**os.environ, "SMOLVM_FAKE_STATE": str(tmp_path / "state")}
    done = run_fake(
        "machine",
        "create",
        "--name",
        "x",
        "--net-backend",
        "tsi",
        "--allow-cidr",
        "10.0.0.1/32",
        env=env,
    )
    assert done.returncode == 1
    assert "requires the virtio-net backend" in done.stderr
    assert not (tmp_path / "state" / "machines" / "x.json").exists()


def test_engine_argv_is_accepted_by_the_fake(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "SMOLVM_FAKE_STATE": str(state)}
    sidecar = tmp_path / "bottle.smolmachine"
    sidecar.write_text(json.dumps({"format": "fake-smolmachine/1"}))
    done = run_fake(*smolvm.machine_create_args(spec(sidecar=sidecar)), env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads((state / "machines" / "bottle-dev.json").read_text())
    assert record["allowed_cidrs"] == ["172.30.0.2/32"]
    assert record["dns"] == "172.30.0.2"


def pack_with_fake(
    tmp_path: Path, image: str, version: str = "1.32.2"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMOLVM_FAKE_VERSION": version}
    return run_fake("pack", "create", "--image", image, "--output", str(tmp_path / "out"), env=env)


def test_fake_packs_an_oci_archive_and_writes_launcher_and_sidecar(tmp_path: Path) -> None:
    artifact = make_layout(tmp_path, "oci")
    write_oci_tar(artifact.layout_dir, tmp_path / "image.tar")
    done = pack_with_fake(tmp_path, str(tmp_path / "image.tar"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").is_file()
    sidecar = json.loads((tmp_path / "out.smolmachine").read_text())
    assert sidecar["manifest_digest"] == artifact.digest


def test_fake_packs_a_docker_save_archive(tmp_path: Path) -> None:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("etc"), None)
    members = {
        "manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l/layer.tar"]}]).encode(),
        "c.json": b"{}",
        "l/layer.tar": layer.getvalue(),
    }
    with tarfile.open(tmp_path / "saved.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    done = pack_with_fake(tmp_path, str(tmp_path / "saved.tar"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.smolmachine").read_text())["archive_format"] == "docker-save"


def test_fake_refuses_an_archive_that_holds_no_image(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "junk.tar", "w") as tar:
        tar.addfile(tarfile.TarInfo("hello"), io.BytesIO(b""))
    done = pack_with_fake(tmp_path, str(tmp_path / "junk.tar"))
    assert done.returncode == 1
    assert "neither a docker-save nor an OCI archive" in done.stderr
    assert not (tmp_path / "out.smolmachine").exists()


def test_fake_as_a_registry_only_release_refuses_local_archives(tmp_path: Path) -> None:
    artifact = make_layout(tmp_path, "legacy")
    write_oci_tar(artifact.layout_dir, tmp_path / "image.tar")
    done = pack_with_fake(tmp_path, str(tmp_path / "image.tar"), version="0.8.0")
    assert done.returncode == 1
    assert not (tmp_path / "out.smolmachine").exists()


def test_fake_never_contacts_a_registry_off_this_machine(tmp_path: Path) -> None:
    done = pack_with_fake(tmp_path, "registry.example.invalid/agent:1")
    assert done.returncode == 1
    assert "loopback" in done.stderr


def test_smolvm_runs_with_the_vmm_confined(tmp_path: Path) -> None:
    env = smolvm.child_env(tmp_path / "smolvm", {"PATH": "/bin"})
    assert env["SMOLVM_SECCOMP"] == "enforce"
    assert env["SMOLVM_LANDLOCK"] == "enforce"


def test_an_explicit_hardening_choice_wins(tmp_path: Path) -> None:
    env = smolvm.child_env(tmp_path / "smolvm", {"SMOLVM_SECCOMP": "off"})
    assert env["SMOLVM_SECCOMP"] == "off"


def test_machine_name_from_the_environment_never_picks_a_machine(tmp_path: Path) -> None:
    env = smolvm.child_env(tmp_path / "smolvm", {"SMOLVM_MACHINE_NAME": "someone-elses"})
    assert "SMOLVM_MACHINE_NAME" not in env


def private_wheel(tmp_path: Path) -> Path:
    """A wheel-like directory the VM's unprivileged uid cannot enter (like one under /root)."""
    wheel = tmp_path / "private" / "smol"
    wheel.mkdir(parents=True)
    for name in smolvm.LIBKRUN_FILES:
        (wheel / name).write_bytes(f"{name} of {tmp_path.name}".encode())
    (wheel / "smol-vmm").write_bytes(b"")
    (tmp_path / "private").chmod(0o700)
    return wheel


def test_libkrun_the_vm_uid_cannot_read_is_used_from_a_verified_copy(tmp_path: Path) -> None:
    wheel = private_wheel(tmp_path)
    env = smolvm.child_env(wheel / "smol-vmm", {})
    copy = Path(env["SMOLVM_LIB_DIR"])
    try:
        assert copy != wheel
        assert smolvm.readable_by_others(copy / "libkrun.so")
        assert (copy / "libkrunfw.so.5").read_bytes() == (wheel / "libkrunfw.so.5").read_bytes()
        assert copy.stat().st_uid == os.geteuid()
        assert not copy.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    finally:
        subprocess.run(["rm", "-rf", str(copy)], check=True)


def test_a_libkrun_copy_someone_else_could_write_is_refused(tmp_path: Path) -> None:
    wheel = private_wheel(tmp_path)
    copy = smolvm.vm_readable_lib_dir(wheel)
    smolvm._LIB_DIRS.clear()
    try:
        copy.chmod(0o777)  # as if another user had planted it first
        with pytest.raises(BottleError, match="is not the copy of smolvm's libkrun") as caught:
            smolvm.vm_readable_lib_dir(wheel)
        assert "SMOLVM_LIB_DIR" in str(caught.value.fix)
    finally:
        smolvm._LIB_DIRS.clear()
        subprocess.run(["rm", "-rf", str(copy)], check=True)


def test_libkrun_that_everyone_can_read_is_used_in_place() -> None:
    public = Path(tempfile.mkdtemp(prefix="bb-public-wheel-", dir="/tmp"))
    try:
        public.chmod(0o755)
        for name in smolvm.LIBKRUN_FILES:
            (public / name).write_bytes(name.encode())
            (public / name).chmod(0o644)
        assert smolvm.vm_readable_lib_dir(public) == public
    finally:
        shutil.rmtree(public)


def test_real_no_kvm_failure_names_kvm_and_points_to_docker() -> None:
    # What smolvm 1.32.2 prints here when the VM process cannot open /dev/kvm.
    stderr = json.dumps(
        {
            "error": {
                "code": "SMOLVM_ERROR",
                "message": "agent operation failed: start vm: krun_start_enter returned: -22 "
                "(KVM inaccessible to the VM process after privilege drop — kvm permission "
                "denied: Cannot access /dev/kvm (permission denied).",
            }
        }
    )
    error = smolvm.translate_failure("start microVM bottle-dev", 1, stderr)
    assert "KVM" in error.message
    assert 'backend = "docker"' in str(error.fix)


def _stub_exec_stream(tmp_path: Path, script: str, *, seconds: float) -> Iterator[bytes]:
    """`exec_stream` through a smolvm that runs `script` (sh), read for `seconds`."""
    return _stub_smolvm(tmp_path, script).exec_stream(
        "m", ["tar"], user="0", until=time.monotonic() + seconds
    )


def test_a_guest_commands_failure_ends_its_stream_with_command_failed(tmp_path: Path) -> None:
    """smolvm passes on the guest command's exit status: a search whose tar could not read a
    file wrote what it could, then failed; the reader must hear of it."""
    stream = _stub_exec_stream(tmp_path, "printf 'what could be read'\nexit 2", seconds=60)
    assert next(stream) == b"what could be read"
    with pytest.raises(CommandFailed, match="exited with status 2"):
        next(stream)


def test_a_guest_command_that_holds_its_output_open_ends_its_stream_at_the_deadline(
    tmp_path: Path,
) -> None:
    """The agent can stop the secret search's command in its machine (it runs as the agent's
    user where it can): the output stays open, and a reader without a deadline waited for it
    as long as the machine ran."""
    stream = _stub_exec_stream(tmp_path, "printf 'the start'\nexec sleep 600", seconds=1)
    assert next(stream) == b"the start"
    with pytest.raises(CommandFailed, match="still open at the deadline"):
        next(stream)


def test_a_guest_command_whose_output_ends_before_smolvm_does_is_not_failed(
    tmp_path: Path,
) -> None:
    """Output at its end is not smolvm ended: the stream took smolvm, still on its way out, for
    a reader that had stopped early, ended it, and failed a search that had succeeded."""
    stream = _stub_exec_stream(tmp_path, "printf 'all of it'\nexec >&-\nsleep 0.3", seconds=60)
    assert b"".join(stream) == b"all of it"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "after",
    ["exec sleep 600", "yes 'smolvm writes on' >&2"],
    ids=["waits-on", "writes-errors-on"],
)
def test_a_smolvm_that_outlives_its_ending_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str
) -> None:
    """A stream that stops early ends smolvm with SIGTERM, then read its stderr to the end and
    waited: a smolvm that does not end there (one waiting on a guest command the agent stopped,
    one passing on a guest's stderr without end) held `logs` and the secret search for ever,
    and the stderr it wrote in the meantime took the host's memory."""
    monkeypatch.setattr(smolvm, "LOGS_SECONDS", 1)
    monkeypatch.setattr(smolvm, "EXIT_SECONDS", 1)
    pid_file = tmp_path / "smolvm.pid"
    script = f"echo $$ > {pid_file}\ntrap '' TERM\nprintf 'the start'\n{after}"
    logs = _stub_smolvm(tmp_path, script).logs("m")
    assert next(logs) == b"the start"
    with pytest.raises(BottleError, match="cut after 1 s of reading"):
        next(logs)
    assert_ended(pid_file)


@pytest.mark.timeout(60)
def test_ctrl_c_while_smolvm_is_waited_for_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the wait for a smolvm whose output had ended left it running: Popen's exit
    gives an interrupted wait a quarter of a second, then returns without ending it."""
    monkeypatch.setattr(smolvm, "EXIT_SECONDS", 30)
    pid_file = tmp_path / "smolvm.pid"
    script = f"echo $$ > {pid_file}\ntrap '' TERM INT\nprintf 'all'\nexec >&-\nexec sleep 600"
    logs = _stub_smolvm(tmp_path, script).logs("m", follow=True)
    assert next(logs) == b"all"
    ctrl_c = threading.Timer(1, os.kill, (os.getpid(), signal.SIGINT))  # the person's
    ctrl_c.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            next(logs)
    finally:
        ctrl_c.cancel()  # not to land in another test, should the stream not wait
    assert_ended(pid_file)


def assert_ended(pid_file: Path) -> None:
    """The stub smolvm that wrote its pid to `pid_file` has ended and been waited for."""
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def _stub_smolvm(tmp_path: Path, script: str) -> smolvm.Smolvm:
    """A Smolvm whose binary runs `script` (sh) for every command."""
    binary = tmp_path / "smolvm"
    binary.write_text(f"#!/bin/sh\n{script}\n")
    binary.chmod(0o755)
    info = smolvm.SmolvmInfo(binary, "1.32.2", accepts_archives=True, error_format_json=False)
    return smolvm.Smolvm(info, settings=EngineSettings())


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("console", "seconds", "cut"),
    [
        ("printf 'the start'\nexec yes 'the agent writes on'", 30, "cut after 1 MiB"),
        ("printf 'the start'\nexec sleep 600", 1, "cut after 1 s of reading"),
    ],
    ids=["endless-output", "held-open"],
)
def test_logs_without_follow_are_cut_and_smolvm_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: str, seconds: int, cut: str
) -> None:
    """`logs` without --follow read smolvm's console log to its end, with no deadline: an
    agent that keeps writing to its console made it run for ever."""
    monkeypatch.setattr(smolvm, "LOGS_SECONDS", seconds)
    monkeypatch.setattr(smolvm, "LOGS_BYTES", smolvm.MIB)
    pid_file = tmp_path / "smolvm.pid"
    logs = _stub_smolvm(tmp_path, f"echo $$ > {pid_file}\n{console}").logs("m")
    assert next(logs).startswith(b"the start")
    read = 0
    with pytest.raises(BottleError, match=cut):
        for chunk in logs:
            read += len(chunk)
    assert read < smolvm.MIB
    assert_ended(pid_file)


@pytest.mark.timeout(60)
def test_logs_written_without_end_to_a_slow_terminal_are_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time a reader takes over each chunk is not counted against `LOGS_SECONDS`: an agent
    that writes without end to a person's terminal, slower than smolvm, is cut by bytes."""
    monkeypatch.setattr(smolvm, "LOGS_SECONDS", 30)
    read = 0
    with pytest.raises(BottleError, match="cut after 64 MiB"):
        for chunk in _stub_smolvm(tmp_path, "exec yes 'the agent writes on'").logs("m"):
            read += len(chunk)
            assert read <= 64 * smolvm.MIB, "read past LOGS_BYTES without being cut"
            time.sleep(0.0001)  # a terminal drawing it


def test_logs_are_not_cut_for_the_time_their_reader_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline counts the time spent waiting on smolvm only: `logs | less` blocks while
    the person reads, and what they read was not to be cut for it."""
    monkeypatch.setattr(smolvm, "LOGS_SECONDS", 1)
    console = "printf 'the start, '\nsleep 0.2\nprintf 'and what came later'"
    read = []
    for chunk in _stub_smolvm(tmp_path, console).logs("m"):
        read.append(chunk)
        time.sleep(0.6)  # a person paging: 1.2 s in all, past the 1 s
    assert b"".join(read) == b"the start, and what came later"


def test_logs_followed_are_read_past_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--follow reads what comes for as long as the person leaves it running (Ctrl-C)."""
    monkeypatch.setattr(smolvm, "LOGS_SECONDS", 0.5)
    console = "printf 'the start, '\nsleep 1\nprintf 'and what came later'"
    logs = _stub_smolvm(tmp_path, console).logs("m", follow=True)
    assert b"".join(logs) == b"the start, and what came later"


@pytest.mark.parametrize(
    "image_tool",
    ["exec yes 'the image writes without end'", "printf 'started'; exec sleep 600"],
    ids=["endless-output", "never-ends"],
)
def test_a_launch_step_run_with_the_images_tools_is_bounded(
    tmp_path: Path, image_tool: str
) -> None:
    """A launch puts its files into the microVM with the agent image's own sh, tar and env, as
    root: an image whose tools write without end took the host's memory, and one whose tools
    never end held `launch` (and `gc`, which waits for launches) for ever."""
    machine = _stub_smolvm(tmp_path, image_tool)
    with pytest.raises(BottleError, match="had not finished after 1 s"):
        machine.machine_exec("m", ["sh", "-c", "tar -xpf x"], user="0", seconds=1)


def test_a_failed_launch_step_says_its_status_and_what_it_wrote(tmp_path: Path) -> None:
    machine = _stub_smolvm(tmp_path, "echo 'tar: x: Cannot open' >&2; exit 2")
    with pytest.raises(BottleError, match="exited with status 2: tar: x: Cannot open"):
        machine.machine_exec("m", ["sh", "-c", "tar -xpf x"], user="0")


def test_the_vmm_never_gets_the_launching_environments_secret_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `from_env` secret is read from the environment of the process that launches the
    bottle. smolvm's `machine start` re-executes itself as the VMM (`_boot-vm`), the process
    that runs the guest and the first one a guest escape lands in: it was handed that whole
    environment, real values and all. Only what smolvm itself reads is passed on now."""
    invented = "rt37-invented-token-6d1f0c"
    monkeypatch.setenv("RT37_BOTTLE_TOKEN", invented)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    dump = tmp_path / "env.txt"
    stub = tmp_path / "smolvm"
    stub.write_text(f"#!/bin/sh\n/usr/bin/env > '{dump}'\n")
    stub.chmod(0o755)
    info = smolvm.SmolvmInfo(stub, "1.32.2", accepts_archives=True, error_format_json=False)
    smolvm.Smolvm(info, settings=EngineSettings()).machine_start("bottle-rt37")
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert invented not in dump.read_text()
    assert "RT37_BOTTLE_TOKEN" not in seen
    # What smolvm reads is still there: its own settings, where its state and libraries are.
    assert seen["SMOLVM_SECCOMP"] == "enforce"
    assert seen["PATH"] == os.environ["PATH"]
    assert seen["HOME"] == os.environ["HOME"]
    assert seen["LC_ALL"] == "C.UTF-8"
