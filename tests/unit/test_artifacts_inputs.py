"""The input key: what changes it, what must not, and the context Docker is sent."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from bottle_engine.artifacts import BuildSpec, compute_input_key, prepare_inputs
from bottle_engine.artifacts.base import (
    PINNED_DEFAULT_BASE,
    image_content_digest,
    resolve_base_image,
)
from bottle_engine.artifacts.dockerfile import referenced_images
from bottle_engine.artifacts.inputs import (
    OUTSIDE_DOCKERFILE_NAME,
    resolve_ca_bundle,
    resolve_source_date_epoch,
    write_context_tar,
)
from bottle_engine.artifacts.spec import EXTRA_CA_NAME
from bottle_engine.errors import BottleError
from tests.fixtures_artifacts import small_build_spec, write_small_context

BASE_DIGEST = "sha256:" + "b" * 64
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def spec(tmp_path: Path) -> BuildSpec:
    return small_build_spec(write_small_context(tmp_path / "ctx"), "bot-bottle/base:bookworm")


def key(spec: BuildSpec) -> str:
    return compute_input_key(spec, BASE_DIGEST)


def test_same_inputs_give_the_same_key(spec: BuildSpec) -> None:
    assert key(spec) == key(spec)
    assert key(spec).startswith("sha256:") and len(key(spec)) == 71


def test_changing_a_context_file_changes_the_key(spec: BuildSpec) -> None:
    before = key(spec)
    (spec.context / "app" / "greeting.txt").write_text("bonjour\n")
    assert key(spec) != before


def test_adding_a_context_file_changes_the_key(spec: BuildSpec) -> None:
    before = key(spec)
    (spec.context / "app" / "new.txt").write_text("x")
    assert key(spec) != before


def test_changing_a_file_mode_changes_the_key(spec: BuildSpec) -> None:
    before = key(spec)
    (spec.context / "app" / "greeting.txt").chmod(0o600)
    assert key(spec) != before


def test_touching_mtimes_only_keeps_the_key(spec: BuildSpec) -> None:
    before = key(spec)
    for path in [spec.context, *spec.context.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000))
    assert key(spec) == before


def test_changing_the_dockerfile_changes_the_key(spec: BuildSpec) -> None:
    before = key(spec)
    spec.dockerfile.write_text(spec.dockerfile.read_text() + "ENV X=1\n")
    assert key(spec) != before


def test_changing_a_build_arg_changes_the_key(spec: BuildSpec) -> None:
    changed = replace(spec, build_args={"GREETING": "bonjour"})
    assert key(changed) != key(spec)
    assert key(replace(changed, build_args={"GREETING": "bonjour"})) == key(changed)


def test_the_ca_bundle_is_part_of_the_key(spec: BuildSpec, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(PEM)
    with_ca = key(replace(spec, ca_bundle=bundle))
    assert with_ca != key(spec)
    bundle.write_bytes(PEM + PEM)
    assert key(replace(spec, ca_bundle=bundle)) != with_ca


def test_base_image_reference_and_digest_are_part_of_the_key(spec: BuildSpec) -> None:
    assert key(replace(spec, base_image="other/base:1")) != key(spec)
    assert compute_input_key(spec, "sha256:" + "c" * 64) != key(spec)


def test_clamp_time_and_labels_are_part_of_the_key(spec: BuildSpec) -> None:
    assert key(replace(spec, source_date_epoch=1)) != key(spec)
    assert key(replace(spec, labels={"a": "b"})) != key(spec)


def test_a_dockerignored_file_does_not_change_the_key(spec: BuildSpec) -> None:
    (spec.context / ".dockerignore").write_text("# build output\n*.log\nbuild/\n")
    before = key(spec)
    (spec.context / "debug.log").write_text("noise")
    (spec.context / "build").mkdir()
    (spec.context / "build" / "out.bin").write_bytes(b"\0" * 10)
    assert key(spec) == before
    (spec.context / "kept.txt").write_text("counts")
    assert key(spec) != before


def test_dockerignore_exceptions_bring_files_back(spec: BuildSpec) -> None:
    (spec.context / ".dockerignore").write_text("*\n!app/greeting.txt\n")
    paths = [entry.path for entry in prepare_inputs(spec, BASE_DIGEST).entries]
    assert "app/greeting.txt" in paths and "app" in paths
    assert "app/run.sh" not in paths and "notes.md" not in paths
    # Always sent, whatever the patterns say (as the Docker CLI does).
    assert {"Dockerfile", ".dockerignore", EXTRA_CA_NAME} <= set(paths)


def test_changing_dockerignore_itself_changes_the_key(spec: BuildSpec) -> None:
    (spec.context / ".dockerignore").write_text("notes.md\n")
    before = key(spec)
    (spec.context / ".dockerignore").write_text("notes.md\n# a comment\n")
    assert key(spec) != before


def test_explain_lists_every_part_and_entry(spec: BuildSpec) -> None:
    inputs = prepare_inputs(spec, BASE_DIGEST)
    text = "\n".join(inputs.explain())
    assert inputs.input_key in text
    for part in ("dockerfile", "context", "build_args", "base_image_digest", "ca_bundle"):
        assert f"{part}:" in text
    assert "app/greeting.txt" in text


def test_context_tar_is_deterministic_sorted_and_clamped(spec: BuildSpec) -> None:
    (spec.context / ".dockerignore").write_text("notes.md\n")
    first, second = io.BytesIO(), io.BytesIO()
    write_context_tar(prepare_inputs(spec, BASE_DIGEST), first)
    os.utime(spec.context / "app" / "greeting.txt", (5, 5))
    write_context_tar(prepare_inputs(spec, BASE_DIGEST), second)
    assert first.getvalue() == second.getvalue()
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert names == sorted(names)
    assert "notes.md" not in names
    # The daemon would re-apply .dockerignore and drop the engine's files, so it stays out.
    assert ".dockerignore" not in names
    assert {member.mtime for member in members} == {spec.source_date_epoch}
    assert {(member.uid, member.gid, member.uname) for member in members} == {(0, 0, "")}
    assert tar_mode(members, "app/run.sh") == 0o755


def tar_mode(members: list[tarfile.TarInfo], name: str) -> int:
    return next(member.mode for member in members if member.name == name)


def test_the_extra_ca_is_placed_in_the_context_and_announced(
    spec: BuildSpec, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(PEM)
    inputs = prepare_inputs(replace(spec, ca_bundle=bundle), BASE_DIGEST)
    ca_entry = next(entry for entry in inputs.entries if entry.path == EXTRA_CA_NAME)
    assert ca_entry.data == PEM
    assert dict(inputs.build_args)["EXTRA_CA_CERT"] == EXTRA_CA_NAME
    assert dict(inputs.build_args)["BASE_IMAGE"] == spec.base_image
    without = prepare_inputs(spec, BASE_DIGEST)
    assert dict(without.build_args)["EXTRA_CA_CERT"] == ""
    assert next(e for e in without.entries if e.path == EXTRA_CA_NAME).data == b""


def test_a_ca_bundle_without_certificates_is_refused(spec: BuildSpec, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(BottleError, match="holds no PEM certificate"):
        key(replace(spec, ca_bundle=bundle))
    with pytest.raises(BottleError, match="cannot read the extra CA bundle"):
        key(replace(spec, ca_bundle=tmp_path / "missing.pem"))


def test_a_dockerfile_outside_the_context_is_carried_in(spec: BuildSpec, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "agent.Dockerfile"
    outside.parent.mkdir()
    outside.write_text(spec.dockerfile.read_text())
    inputs = prepare_inputs(replace(spec, dockerfile=outside), BASE_DIGEST)
    assert inputs.dockerfile_path == OUTSIDE_DOCKERFILE_NAME
    assert OUTSIDE_DOCKERFILE_NAME in [entry.path for entry in inputs.entries]


def test_missing_dockerfile_or_context_is_a_clear_error(spec: BuildSpec, tmp_path: Path) -> None:
    with pytest.raises(BottleError, match="does not exist"):
        key(replace(spec, dockerfile=tmp_path / "nope" / "Dockerfile"))
    with pytest.raises(BottleError, match="is not a directory"):
        key(replace(spec, context=tmp_path / "nope"))


def test_a_fifo_in_the_context_is_refused(spec: BuildSpec) -> None:
    os.mkfifo(spec.context / "pipe")
    with pytest.raises(BottleError, match="special file"):
        key(spec)


def test_source_date_epoch_comes_from_env_then_git_then_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert resolve_source_date_epoch(None, tmp_path) == 0  # not a git checkout
    assert resolve_source_date_epoch(7, tmp_path) == 7
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert resolve_source_date_epoch(None, tmp_path) == 1234
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BottleError, match="not a number"):
        resolve_source_date_epoch(None, tmp_path)


def test_base_image_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOTTLE_BASE_IMAGE", raising=False)
    assert resolve_base_image(None) == PINNED_DEFAULT_BASE
    assert "@sha256:" in PINNED_DEFAULT_BASE
    assert resolve_base_image("mine:1") == "mine:1"
    monkeypatch.setenv("BOTTLE_BASE_IMAGE", "env:2")
    assert resolve_base_image("mine:1") == "env:2"


def test_ca_bundle_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOTTLE_CA_BUNDLE", raising=False)
    assert resolve_ca_bundle(None, None) is None
    assert resolve_ca_bundle(None, Path("/m.pem")) == Path("/m.pem")
    monkeypatch.setenv("BOTTLE_CA_BUNDLE", "/env.pem")
    assert resolve_ca_bundle(None, Path("/m.pem")) == Path("/env.pem")
    assert resolve_ca_bundle("/cli.pem", Path("/m.pem")) == Path("/cli.pem")


def test_base_content_digest_ignores_ids_and_times() -> None:
    attrs = {
        "Id": "sha256:1",
        "Created": "2026-01-01",
        "Os": "linux",
        "Architecture": "amd64",
        "RootFS": {"Layers": ["sha256:aa"]},
        "Config": {"Cmd": ["bash"], "Hostname": "abc"},
    }
    reimported = {**attrs, "Id": "sha256:2", "Created": "2026-02-02", "Config": {"Cmd": ["bash"]}}
    assert image_content_digest(attrs) == image_content_digest(reimported)
    other_layers = {**attrs, "RootFS": {"Layers": ["sha256:bb"]}}
    assert image_content_digest(other_layers) != image_content_digest(attrs)


def test_a_base_with_an_onbuild_trigger_has_another_content_digest() -> None:
    """Its triggers run in every build FROM it, and add no layer to the base itself."""
    attrs = {"RootFS": {"Layers": ["sha256:aa"]}, "Config": {"Cmd": ["bash"]}}
    planted = {**attrs, "Config": {"Cmd": ["bash"], "OnBuild": ["RUN echo planted > /planted"]}}
    assert image_content_digest(planted) != image_content_digest(attrs)


def test_clamp_time_is_the_newest_commit_of_the_files_in_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    repo = write_small_context(tmp_path / "repo")
    (repo / ".dockerignore").write_text(".git\nnotes.md\n")

    def commit(paths: list[str], when: int) -> None:
        env = {
            **os.environ,
            "GIT_AUTHOR_DATE": f"@{when} +0000",
            "GIT_COMMITTER_DATE": f"@{when} +0000",
        }
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        subprocess.run([*git, "add", *paths], check=True, env=env)
        subprocess.run([*git, "commit", "-q", "-m", "c"], check=True, env=env)

    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    commit(["."], 1_600_000_000)
    spec = replace(small_build_spec(repo, "base:1"), source_date_epoch=None)
    assert prepare_inputs(spec, BASE_DIGEST).source_date_epoch == 1_600_000_000
    before = key(spec)
    (repo / "notes.md").write_text("ignored by .dockerignore\n")
    commit(["notes.md"], 1_700_000_000)
    assert prepare_inputs(spec, BASE_DIGEST).source_date_epoch == 1_600_000_000
    assert key(spec) == before
    (repo / "app" / "greeting.txt").write_text("changed\n")
    commit(["app/greeting.txt"], 1_750_000_000)
    assert prepare_inputs(spec, BASE_DIGEST).source_date_epoch == 1_750_000_000


MULTI_STAGE = """\
# escape=`
ARG BASE_IMAGE
ARG NODE=18
FROM --platform=linux/amd64 node:${NODE} AS Build
RUN echo built `
  > /built
FROM ${BASE_IMAGE}
COPY --from=build /built /built
COPY --chown=1:1 --from="busybox:1" /bin/busybox /bin/
COPY --from=0 /built /again
COPY ["/app", "/opt/app"]
FROM scratch AS empty
FROM BUILD
"""


def test_the_images_a_dockerfile_reads_are_its_foreign_stages_and_copies() -> None:
    """Earlier stages (by name in any case, or number) and `scratch` read no image; build
    args override the global ARGs a FROM reads; a COPY --from is read as written (Docker's
    classic builder substitutes nothing there: `--from=${T}` is an invalid reference)."""
    found = referenced_images(MULTI_STAGE.encode(), {"BASE_IMAGE": "base:1", "NODE": "20"})
    assert found == ("base:1", "busybox:1", "node:20")
    assert referenced_images(MULTI_STAGE.encode(), {"BASE_IMAGE": "b"}) == (
        "b",
        "busybox:1",
        "node:18",
    )
    literal = "ARG T=x:1\nFROM b\nARG T=y:1\nCOPY --from=${T} /a /b\n"
    assert referenced_images(literal.encode(), {"T": "z:1"}) == ("${T}", "b")


def test_a_dockerfile_that_is_not_utf8_or_starts_with_a_bom_is_read() -> None:
    """Docker reads the bytes (a RUN may echo any) and skips a BOM; so does the key."""
    assert referenced_images(b"\xef\xbb\xbfFROM b\nRUN printf '\xff\xfe'\n", {}) == ("b",)
    assert referenced_images(b"FROM\nCOPY --from= /a /b\nFROM b AS\n", {}) == ("b",)


def test_a_reference_past_an_empty_continuation_line_is_read() -> None:
    """Docker 20.10's classic builder skips an empty line inside a continuation (with a
    warning) and reads the instruction on: `docker build` here pulled the `--from` image."""
    dockerfile = b"FROM b\nCOPY \\\n\n  \n --from=c:1 /a /b\nRUN x \\\n\nFROM d:1\n"
    assert referenced_images(dockerfile, {}) == ("b", "c:1")


def test_a_from_with_an_arg_default_reads_the_default() -> None:
    """`${X:-word}` and `${X:+word}` in a FROM are the shell's, as the builder reads them."""
    dockerfile = b"ARG X\nARG Y=y:1\nFROM ${X:-d:1}\nFROM ${Y:+p:1}\nFROM ${X:+q:1}scratch\n"
    assert referenced_images(dockerfile, {}) == ("d:1", "p:1")
    assert referenced_images(dockerfile, {"X": "x:1"}) == ("p:1", "q:1scratch", "x:1")


def test_each_image_the_dockerfile_reads_is_part_of_the_key(spec: BuildSpec) -> None:
    (spec.context / "Dockerfile").write_text(MULTI_STAGE)
    digests = {"node:18": "sha256:" + "1" * 64, "busybox:1": "sha256:" + "2" * 64}
    asked: list[str] = []

    def image_digest(ref: str) -> str:
        asked.append(ref)
        return digests[ref]

    inputs = prepare_inputs(spec, BASE_DIGEST, image_digest)
    assert sorted(asked) == ["busybox:1", "node:18"]  # the base's digest is the caller's
    assert dict(inputs.images) == digests
    digests["busybox:1"] = "sha256:" + "3" * 64
    assert compute_input_key(spec, BASE_DIGEST, image_digest) != inputs.input_key
    with pytest.raises(ValueError, match="busybox:1, node:18"):
        prepare_inputs(spec, BASE_DIGEST)
