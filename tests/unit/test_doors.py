"""One door per concern: the CLI, doctor and gc reach Docker and smolvm only through the
`Backend` protocol (`available`, ...) or the `Host` facade; smolmachines runs no subprocess of
its own; the bundle package holds only what runs in the bundle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bottle_engine
from bottle_engine import doctor, lifecycle, records
from bottle_engine.backends import backend_named
from bottle_engine.backends.docker import DockerBackend
from bottle_engine.errors import BottleError
from bottle_engine.records import BottleRecord

PACKAGE = Path(bottle_engine.__file__).resolve().parent
NO_DAEMON = "unix:///nonexistent/docker.sock"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    "path",
    [*sorted((PACKAGE / "cli").glob("*.py")), PACKAGE / "doctor.py"],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_the_cli_and_doctor_import_neither_docker_nor_a_backend(path: Path) -> None:
    forbidden = {
        module
        for module in imported_modules(path)
        if module.split(".")[0] == "docker"
        or module.startswith("bottle_engine.dockerapi")
        or module in ("bottle_engine.backends.docker", "bottle_engine.backends.smolmachines")
    }
    assert forbidden == set()


def test_smolmachines_runs_no_subprocess_itself() -> None:
    imported = imported_modules(PACKAGE / "backends" / "smolmachines.py")
    assert "subprocess" not in imported and "os" not in imported


def test_an_unreachable_daemon_makes_docker_unavailable_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    availability = DockerBackend().available()
    assert not availability
    assert "Docker daemon" in availability.detail
    assert availability.fix and "dockerd" in availability.fix
    check = doctor.check_docker()
    assert (check.ok, check.detail, check.fix) == (False, availability.detail, availability.fix)


def test_no_smolvm_makes_smolmachines_unavailable_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTTLE_SMOLVM", str(tmp_path / "absent"))
    availability = backend_named("smolmachines").available()
    assert not availability and "BOTTLE_SMOLVM" in availability.detail


def test_ls_says_why_a_status_is_unknown_when_the_backend_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    records.save(
        BottleRecord("s1", "bottle-s1", "dev", "default", "docker", "m", "/", "t", "i", "n")
    )
    (listed,) = lifecycle.list_bottles()
    assert listed.status.kind == "unknown"
    assert listed.fix and "Docker daemon" in listed.fix


def test_gc_with_no_backend_answering_is_an_error_naming_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    monkeypatch.setenv("BOTTLE_SMOLVM", str(tmp_path / "absent"))
    with pytest.raises(BottleError, match="Docker daemon"):
        lifecycle.gc()


def test_the_bundle_package_holds_no_host_side_module() -> None:
    assert not (PACKAGE / "bundle" / "image.py").exists()
    assert (PACKAGE / "artifacts" / "bundle_image.py").is_file()
