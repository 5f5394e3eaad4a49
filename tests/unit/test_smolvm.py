"""The smolvm wrapper: capability probe, argument lists, error translation, and the fake's
contract (it must fail where the real CLI fails)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from bottle_engine import smolvm
from bottle_engine.artifacts.pack import choose_method
from bottle_engine.errors import BottleError
from bottle_engine.smolfile import SMOLFILE_KEYS, render_smolfile, spec_for
from tests.fakes.fixtures import FAKE_SMOLVM, FakeSmolvm, fake_smolvm, legacy_smolvm
from tests.fakes.oci_layout import make_layout, write_oci_tar

__all__ = ["fake_smolvm", "legacy_smolvm"]  # fixtures used below

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
    with pytest.raises(BottleError, match="none on PATH") as caught:
        smolvm.find_binary()
    assert "BOTTLE_SMOLVM" in str(caught.value.fix)
    assert "docker" in str(caught.value.fix)


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
    assert not {"--net", "--allow-host", "--allow-host-pattern", "--use-host-proxy"} & set(args)


def test_machine_create_passes_env_as_key_value_pairs() -> None:
    args = smolvm.machine_create_args(spec())
    pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--env"]
    assert pairs == ["HTTPS_PROXY=http://172.30.0.2:8888", "BOTTLE_SLUG=dev"]


def test_machine_create_refuses_an_empty_allow_list() -> None:
    with pytest.raises(BottleError, match="without an egress allow list"):
        smolvm.machine_create_args(spec(allow_cidrs=()))


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


def test_engine_argv_is_accepted_by_the_fake(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"FAKE_SMOLVM_STATE": str(state), "PATH": "/usr/bin:/bin"}
    sidecar = tmp_path / "bottle.smolmachine"
    sidecar.write_text(json.dumps({"format": "fake-smolmachine/1"}))
    done = run_fake(*smolvm.machine_create_args(spec(sidecar=sidecar)), env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads((state / "machines" / "bottle-dev.json").read_text())
    assert record["allowed_cidrs"] == ["172.30.0.2/32"]


def test_smolfile_holds_only_keys_the_real_cli_accepts() -> None:
    text = render_smolfile(spec_for(1.5, 3 * 1024**3, "/workspace"))
    document = tomllib.loads(text)
    assert set(document) <= SMOLFILE_KEYS
    assert document == {"cpus": 2, "memory": 3072, "workdir": "/workspace"}


def test_smolfile_never_carries_network_or_env() -> None:
    document = tomllib.loads(render_smolfile(spec_for(1, 1024**3, "/workspace")))
    assert not {"net", "network", "env", "secrets", "volumes"} & set(document)


def pack_with_fake(
    tmp_path: Path, image: str, version: str = "1.32.2"
) -> subprocess.CompletedProcess[str]:
    env = {"FAKE_SMOLVM_VERSION": version, "PATH": "/usr/bin:/bin"}
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


def started_machine(tmp_path: Path) -> smolvm.Smolvm:
    cli = smolvm.Smolvm()
    sidecar = tmp_path / "bottle.smolmachine"
    sidecar.write_text(json.dumps({"format": "fake-smolmachine/1"}))
    cli.machine_create(spec(sidecar=sidecar))
    cli.machine_start("bottle-dev")
    return cli


def test_a_failing_guest_command_is_a_result_not_an_error(
    fake_smolvm: FakeSmolvm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = started_machine(tmp_path)
    monkeypatch.setenv("FAKE_SMOLVM_EXEC_EXIT", "3")
    code, output = cli.exec_output("bottle-dev", ["false"], user="1000:1000")
    assert code == 3
    assert b"false" in output


def test_exec_in_a_stopped_machine_is_an_error_naming_it(
    fake_smolvm: FakeSmolvm, tmp_path: Path
) -> None:
    cli = started_machine(tmp_path)
    cli.machine_stop("bottle-dev")
    with pytest.raises(BottleError, match="not running"):
        cli.exec_output("bottle-dev", ["true"])
