"""gVisor set-up: the runtime choice, daemon.json edits and the pinned package's checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import gvisor
from bottle_engine.errors import BottleError
from bottle_engine.gvisor import RUNTIME_ARGS, Release, choose_runtime, runsc_from_deb
from tests.archive_attacks import tar_of

REGISTERED = {"runc": {"path": "runc"}, "runsc": {"path": "/opt/runsc"}}


class SelfTest:
    def __init__(self, verdict: bool) -> None:
        self.verdict = verdict
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.verdict


@pytest.mark.parametrize(
    ("wanted", "registered", "verdict", "runtime", "reason_has", "tested"),
    [
        ("auto", REGISTERED, True, "runsc", "registered and passes the self-test", True),
        ("auto", REGISTERED, False, "runc", "fails the self-test", True),
        ("auto", {"runc": {}}, True, "runc", "no runsc runtime", False),
        ("runc", REGISTERED, True, "runc", '"runc" asked for it', False),
        ("runsc", REGISTERED, False, "runsc", '"runsc" asked for it', False),
    ],
)
def test_runtime_choice_names_the_runtime_and_why(
    wanted: str,
    registered: dict[str, object],
    verdict: bool,
    runtime: str,
    reason_has: str,
    tested: bool,
) -> None:
    probe = SelfTest(verdict)
    choice = choose_runtime(wanted, registered, probe)
    assert choice.runtime == runtime
    assert reason_has in choice.reason
    assert (probe.calls == 1) is tested  # the self-test runs only when `auto` needs it
    assert choice.docker_runtime == ("runsc" if runtime == "runsc" else None)


def test_asking_for_runsc_without_it_registered_says_how_to_install() -> None:
    with pytest.raises(BottleError) as raised:
        choose_runtime("runsc", {"runc": {}}, SelfTest(True))
    assert "no runtime of that name" in raised.value.message
    assert "gvisor install" in (raised.value.fix or "")


def test_an_unknown_runtime_is_refused_with_the_choices() -> None:
    with pytest.raises(BottleError, match="unknown runtime 'kata'") as raised:
        choose_runtime("kata", REGISTERED, SelfTest(True))
    assert '"auto", "runc" or "runsc"' in (raised.value.fix or "")


def test_registering_keeps_every_other_daemon_setting() -> None:
    config: dict[str, Any] = {
        "log-driver": "json-file",
        "runtimes": {"kata": {"path": "/usr/bin/kata"}, "runsc": {"path": "/usr/bin/runsc"}},
    }
    updated = gvisor.with_runtime(config, Path("/usr/local/lib/bot-bottle/x/runsc"))
    assert updated["log-driver"] == "json-file"
    assert updated["runtimes"]["kata"] == {"path": "/usr/bin/kata"}
    assert updated["runtimes"]["runsc"] == {
        "path": "/usr/local/lib/bot-bottle/x/runsc",
        "runtimeArgs": list(RUNTIME_ARGS),
    }
    assert config["runtimes"]["runsc"] == {"path": "/usr/bin/runsc"}  # the input is not changed


def test_runtime_args_bound_the_disk_and_keep_runsc_working_here() -> None:
    assert "--overlay2=root:memory" in RUNTIME_ARGS
    assert "--network=host" in RUNTIME_ARGS


@pytest.mark.parametrize(("text", "expected"), [(None, {}), ("", {}), ("  \n", {})])
def test_absent_or_empty_daemon_json_reads_as_no_settings(
    tmp_path: Path, text: str | None, expected: dict[str, object]
) -> None:
    path = tmp_path / "daemon.json"
    if text is not None:
        path.write_text(text)
    assert gvisor.read_daemon_config(path) == expected


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_broken_daemon_json_is_named_and_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(text)
    with pytest.raises(BottleError, match=str(path)):
        gvisor.read_daemon_config(path)
    assert path.read_text() == text


def test_daemon_json_is_replaced_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("{}")
    path.chmod(0o640)
    gvisor.write_daemon_config({"runtimes": {}}, path)
    assert json.loads(path.read_text()) == {"runtimes": {}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["daemon.json"]  # no scratch file left


def test_pinned_releases_are_digests_not_names() -> None:
    for release in gvisor.PINNED.values():
        for digest in (release.deb_sha256, release.binary_sha256):
            assert len(digest) == 64 and int(digest, 16) >= 0
        assert release.deb_name.startswith(f"runsc_{release.version}_{release.architecture}")
        assert release.binary.is_relative_to(gvisor.INSTALL_ROOT)


def test_an_architecture_without_a_pin_is_named_with_a_way_out() -> None:
    with pytest.raises(BottleError, match="not s390x") as raised:
        gvisor.pinned_release("s390x")
    assert "gvisor.dev" in (raised.value.fix or "")


def test_air_gap_help_gives_the_file_its_digest_and_the_command() -> None:
    release = gvisor.pinned_release("amd64")
    text = gvisor.air_gap_help(release)
    assert release.archive_url in text
    assert release.deb_sha256 in text
    assert f"gvisor install --deb {release.deb_name}" in text


# -- the package checks, on packages made here ---------------------------------------------------


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return out


def _deb(tmp_path: Path, files: dict[str, bytes], name: str = "runsc.deb") -> Path:
    data = tar_of(files, "w:xz")
    deb = tmp_path / name
    deb.write_bytes(
        _ar([("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", data)])
    )
    return deb


def _release_for(deb: Path, binary: bytes) -> Release:
    return dataclasses.replace(
        gvisor.pinned_release("amd64"),
        deb_sha256=hashlib.sha256(deb.read_bytes()).hexdigest(),
        binary_sha256=hashlib.sha256(binary).hexdigest(),
    )


def test_the_binary_comes_out_of_a_package_whose_digests_match(tmp_path: Path) -> None:
    binary = b"\x7fELF pretend runsc"
    deb = _deb(tmp_path, {"./usr/share/doc/runsc/copyright": b"c", "./usr/bin/runsc": binary})
    assert runsc_from_deb(_release_for(deb, binary), deb) == binary


def test_a_package_with_another_digest_is_refused_naming_both(tmp_path: Path) -> None:
    deb = _deb(tmp_path, {"./usr/bin/runsc": b"x"})
    release = dataclasses.replace(_release_for(deb, b"x"), deb_sha256="0" * 64)
    with pytest.raises(BottleError) as raised:
        runsc_from_deb(release, deb)
    assert str(deb) in raised.value.message and "0" * 64 in raised.value.message
    assert "gvisor install --deb" in (raised.value.fix or "")


def test_a_package_whose_binary_was_swapped_is_refused(tmp_path: Path) -> None:
    """The package digest alone is not trusted to cover what is unpacked: both are pinned."""
    deb = _deb(tmp_path, {"./usr/bin/runsc": b"evil"})
    release = dataclasses.replace(_release_for(deb, b"evil"), binary_sha256="1" * 64)
    with pytest.raises(BottleError, match=r"usr/bin/runsc in .* does not have the pinned"):
        runsc_from_deb(release, deb)


def test_a_package_without_runsc_is_refused(tmp_path: Path) -> None:
    deb = _deb(tmp_path, {"./usr/bin/other": b"x"})
    with pytest.raises(BottleError, match="has no usr/bin/runsc"):
        runsc_from_deb(_release_for(deb, b"x"), deb)


def test_a_file_that_is_no_package_is_refused(tmp_path: Path) -> None:
    deb = tmp_path / "runsc.deb"
    deb.write_bytes(b"<html>not found</html>")
    with pytest.raises(BottleError, match="not a Debian package"):
        runsc_from_deb(_release_for(deb, b""), deb)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BottleError, match="does not exist"):
        runsc_from_deb(gvisor.pinned_release("amd64"), tmp_path / "absent.deb")


def test_installing_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BottleError, match="needs root") as raised:
        gvisor.ensure_gvisor(object(), "image")
    assert raised.value.fix == "sudo bottle-engine gvisor install"
