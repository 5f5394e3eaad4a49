"""The artifact builder against the real daemon, on a small image built FROM the base fixture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts import ArtifactStore, BuildSpec, build, compute_input_key
from bottle_engine.artifacts.base import base_image_digest
from bottle_engine.artifacts.builder import layer_cache_ref
from bottle_engine.artifacts.oci import read_layout
from bottle_engine.cli import main
from bottle_engine.errors import BottleError
from tests.fixtures_artifacts import (
    TEST_LABELS,
    RecordingClient,
    build_image_from_texts,
    remove_images,
    small_build_spec,
    write_small_context,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
PEM = Path("/etc/ssl/certs/ca-certificates.crt")


def run_in(client: Any, image: str, command: str) -> str:
    output: bytes = client.containers.run(
        image, ["sh", "-c", command], remove=True, network_disabled=True, labels=TEST_LABELS
    )
    return output.decode()


def test_two_builds_from_scratch_give_the_same_artifact_digest(
    docker_client: Any, small_spec: BuildSpec, remove_test_images: list[str]
) -> None:
    first = build(docker_client, small_spec, no_cache=True)
    remove_test_images.append(first.artifact.image_tag)
    second = build(docker_client, small_spec, no_cache=True)
    assert first.built and second.built
    assert second.artifact.digest == first.artifact.digest
    assert second.artifact.input_key == first.artifact.input_key


def test_a_second_build_makes_no_docker_build_call(
    docker_client: Any, small_spec: BuildSpec, remove_test_images: list[str]
) -> None:
    artifact = build(docker_client, small_spec).artifact
    remove_test_images.append(artifact.image_tag)

    recording = RecordingClient(docker_client)
    again = build(recording, small_spec)
    assert not again.built and not again.loaded
    assert again.artifact == artifact
    assert "build" not in recording.calls
    assert "load_image" not in recording.calls

    # Gone from Docker (e.g. pruned): it comes back from the store, still without a build.
    docker_client.api.remove_image(artifact.image_tag, force=True)
    recording = RecordingClient(docker_client)
    restored = build(recording, small_spec)
    assert "build" not in recording.calls
    assert "load_image" in recording.calls
    assert restored.loaded
    assert docker_client.api.inspect_image(artifact.image_tag)["Id"] == (
        "sha256:" + _config_digest(artifact.layout_dir)
    )


def _config_digest(layout_dir: Path) -> str:
    return read_layout(layout_dir).config_digest.removeprefix("sha256:")


def test_the_loaded_image_runs_with_context_files_ca_and_clamped_times(
    docker_client: Any, small_spec: BuildSpec, remove_test_images: list[str]
) -> None:
    spec = replace(small_spec, ca_bundle=PEM, build_args={"GREETING": "bonjour"})
    artifact = build(docker_client, spec).artifact
    remove_test_images.append(artifact.image_tag)
    output = run_in(
        docker_client,
        artifact.image_tag,
        "cat /greeting; cat greeting.txt; stat -c %Y greeting.txt; "
        "sha256sum < extra-ca.crt; id -u agent; ls /var/log/app; pwd",
    )
    lines = output.splitlines()
    assert lines[0] == "bonjour"
    assert lines[1] == "hello"
    assert lines[2] == str(spec.source_date_epoch)
    expected_ca = subprocess.run(
        ["sha256sum"], input=PEM.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    assert lines[3] == expected_ca.strip()
    assert lines[4] == "1000"
    assert lines[5:] == ["/opt/app"]  # the build log was dropped; the directory stayed


def test_a_failing_step_shows_its_output_and_stores_nothing(
    docker_client: Any, small_context: Path, base_image: str
) -> None:
    (small_context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo marker-from-the-step && exit 3\n"
    )
    spec = small_build_spec(small_context, base_image)
    with pytest.raises(BottleError) as raised:
        build(docker_client, spec)
    assert "marker-from-the-step" in str(raised.value)
    assert "RUN echo marker-from-the-step" in str(raised.value)
    key = compute_input_key(spec, base_image_digest(docker_client, base_image))
    assert ArtifactStore().lookup(key) is None


VerifyRun = Callable[[], tuple[int, dict[str, Any]]]


@pytest.fixture
def cli_verify(
    small_context: Path,
    base_image: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[VerifyRun]:
    """`bottle-engine build dev --verify --json` on a manifest whose bottle builds
    `small_context` as it is when called: (exit code, report). The images each run made are
    removed after the test, whatever its assertions found."""
    reports: list[dict[str, Any]] = []

    def run() -> tuple[int, dict[str, Any]]:
        manifest = write_manifest(tmp_path, small_context)
        monkeypatch.setenv("BOTTLE_BASE_IMAGE", base_image)
        code = main(["build", "dev", "-f", str(manifest), "--verify", "--json"])
        reports.append(json.loads(capsys.readouterr().out))
        return code, reports[-1]

    yield run
    for report in reports:
        remove_images_of(report, small_context)


def test_verify_agrees_for_a_reproducible_dockerfile(cli_verify: VerifyRun) -> None:
    code, report = cli_verify()
    assert code == 0
    assert report["reproducible"] is True
    assert report["first_digest"] == report["second_digest"]
    assert report["differences"] == []


def test_verify_lists_the_paths_that_differ(small_context: Path, cli_verify: VerifyRun) -> None:
    (small_context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "RUN head -c 16 /dev/urandom > /random.bin && echo stable > /stable.txt\n"
    )
    code, report = cli_verify()
    assert code == 1
    assert report["reproducible"] is False
    paths = [difference["path"] for difference in report["differences"]]
    assert "/random.bin" in paths
    assert "/stable.txt" not in paths


def write_manifest(directory: Path, context: Path) -> Path:
    manifest = directory / "bottle.toml"
    manifest.write_text(
        f'[agents.dev]\nbottle = "box"\n\n[bottles.box]\n'
        f'dockerfile = "{context / "Dockerfile"}"\ncontext = "{context}"\n'
    )
    return manifest


def remove_images_of(report: dict[str, Any], context: Path) -> None:
    from bottle_engine.dockerapi import connect

    tags = [cache_ref(context)]
    if report.get("image_tag"):
        tags.append(report["image_tag"])
    remove_images(connect(), tags)


def cache_ref(context: Path) -> str:
    """The layer-cache tag of the CLI's build of `context`'s Dockerfile (artifact "agent")."""
    return layer_cache_ref(small_build_spec(context, "unused", name="agent"))


def test_killing_the_build_half_way_leaves_no_trusted_entry(
    docker_client: Any, base_image: str, tmp_path: Path
) -> None:
    context = write_small_context(tmp_path / "context")
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app/ /opt/app/\n"
        "RUN echo slow-step-started && sleep 8\n"
    )
    manifest = write_manifest(tmp_path, context)
    cache = tmp_path / "cache"
    env = {**os.environ, "BOTTLE_CACHE_DIR": str(cache), "BOTTLE_BASE_IMAGE": base_image}
    command = [sys.executable, "-m", "bottle_engine.cli", "build", "dev", "-f", str(manifest)]

    with subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if "docker build" in line:
                break
        time.sleep(3)  # inside the slow RUN step
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    store = ArtifactStore(cache / "artifacts")
    assert store.entries() == []
    assert not store.layouts.exists() or list(store.layouts.iterdir()) == []

    try:
        finished = subprocess.run(
            [*command, "--json"], env=env, capture_output=True, text=True, timeout=600
        )
        assert finished.returncode == 0, finished.stderr
        report = json.loads(finished.stdout)
        assert report["built"] is True  # nothing from the killed run was trusted
        assert store.lookup(report["input_key"]) is not None
        store.gc(keep=1)
        assert not store.tmp.exists() or list(store.tmp.iterdir()) == []  # the dead run's temp
    finally:
        remove_images(docker_client, [cache_ref(context)])
        if "report" in locals():
            remove_images(docker_client, [report["image_tag"]])


def test_layer_cache_older_than_the_clamp_time_is_not_reused(
    docker_client: Any, small_spec: BuildSpec, remove_test_images: list[str]
) -> None:
    first = build(docker_client, small_spec, no_cache=True)  # leaves Docker's layer cache
    remove_test_images.append(first.artifact.image_tag)
    # A later commit moves the clamp time past the layers Docker has cached for this Dockerfile.
    later = replace(small_spec, source_date_epoch=int(time.time()) + 1)
    time.sleep(2)
    recording = RecordingClient(docker_client)
    rebuilt = build(recording, later)
    remove_test_images.append(rebuilt.artifact.image_tag)
    assert recording.calls.count("build") == 2  # the cached attempt, then one without cache
    fresh = build(docker_client, later, no_cache=True)
    assert fresh.artifact.digest == rebuilt.artifact.digest


def test_a_base_tag_moved_to_a_copy_with_an_onbuild_trigger_is_another_input(
    docker_client: Any, base_image: str, small_context: Path, remove_test_images: list[str]
) -> None:
    """A base image's ONBUILD instructions run in every build FROM it and add no layer of their
    own. One tag on two images alike but for a planted trigger (on two machines sharing a
    cache, or a tag moved on one): the build FROM the clean one must not be given the artifact
    the trigger built, under the same input key."""
    tag = "bot-bottle-test/onbuild-base:1"
    spec = small_build_spec(small_context, tag)
    remove_test_images.append(layer_cache_ref(spec))
    trigger = "ONBUILD RUN echo planted > /planted\n"
    build_image_from_texts(docker_client, tag, {"Dockerfile": f"FROM {base_image}\n{trigger}"})
    remove_test_images.append(docker_client.images.get(tag).id)
    planted = build(docker_client, spec)
    remove_test_images.append(planted.artifact.image_tag)
    assert run_in(docker_client, planted.artifact.image_tag, "cat /planted") == "planted\n"

    build_image_from_texts(docker_client, tag, {"Dockerfile": f"FROM {base_image}\n"})
    remove_test_images.append(tag)
    clean = build(docker_client, spec)
    remove_test_images.append(clean.artifact.image_tag)
    assert clean.artifact.input_key != planted.artifact.input_key
    assert run_in(docker_client, clean.artifact.image_tag, "ls /planted 2>&1 || true") == (
        "ls: cannot access '/planted': No such file or directory\n"
    )


def test_an_image_copied_from_that_moved_to_other_contents_is_another_input(
    docker_client: Any, base_image: str, small_context: Path, remove_test_images: list[str]
) -> None:
    """A `COPY --from=IMAGE` reads that image as much as FROM reads the base. When its tag
    moves to other contents (a newer `docker pull`, a rebuild), the next build must copy from
    the new one, not be answered from the store with what the old one gave."""
    tool = "bot-bottle-test/copied-from:1"
    (small_context / "Dockerfile").write_text(
        (small_context / "Dockerfile").read_text() + f"COPY --from={tool} /tool /tool\n"
    )
    spec = small_build_spec(small_context, base_image)
    remove_test_images.append(layer_cache_ref(spec))

    def tool_says(word: str) -> None:
        build_image_from_texts(
            docker_client, tool, {"Dockerfile": f"FROM {base_image}\nRUN echo {word} > /tool\n"}
        )
        remove_test_images.append(docker_client.images.get(tool).id)

    tool_says("old")
    first = build(docker_client, spec)
    remove_test_images.append(first.artifact.image_tag)
    assert run_in(docker_client, first.artifact.image_tag, "cat /tool") == "old\n"

    tool_says("new")
    remove_test_images.append(tool)
    second = build(docker_client, spec)
    remove_test_images.append(second.artifact.image_tag)
    assert second.built and second.artifact.input_key != first.artifact.input_key
    assert run_in(docker_client, second.artifact.image_tag, "cat /tool") == "new\n"
