"""Fixtures for artifact builds, shared by any test that needs a built image.

Registered as a pytest plugin in tests/conftest.py (``pytest_plugins``). The agent image is built
once per session through the same path a launch takes (`ensure_artifact`, no test labels), so
launches in other tests find it in the store and build nothing.

* `agent_build_spec` / `agent_artifact`: the repository's Dockerfile on the `base_image` fixture
  (`repository_agent_spec` for code outside pytest, such as the benchmarks).
* `small_context` + `small_spec`: a tiny Dockerfile on the base image (seconds to build).
* `ssh_image`: an sshd with git, the upstream the git gate's ssh tests push to.
* `RecordingClient`: wraps the docker SDK client and records every low-level API call, so a test
  can say "no docker build ran" without timing anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shlex
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from bottle_engine.artifacts import Artifact, ArtifactStore, BuildSpec, build
from bottle_engine.artifacts.builder import layer_cache_ref

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TEST_LABELS = {"bot-bottle.test": "1"}

BUNDLE_DOCKERFILE = REPO_ROOT / "bottle_engine" / "bundle" / "Dockerfile"
SMALL_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG GREETING=hello
COPY extra-ca.crt app/ /opt/app/
RUN echo "$GREETING" > /greeting && mkdir -p /var/log/app && date > /var/log/app/built.log \\
 && useradd --uid 1000 --create-home agent
WORKDIR /opt/app
"""


def bundle_instructions(kind: str) -> list[str]:
    """The values of the bundle Dockerfile's `kind` instructions (continuations joined)."""
    parser = DockerfileParser(fileobj=io.StringIO(BUNDLE_DOCKERFILE.read_text()))
    return [i["value"] for i in parser.structure if i["instruction"] == kind]


def bundle_pip_install() -> list[str]:
    """The bundle Dockerfile's pip install command line (its `ARG PIP_INSTALL`)."""
    for value in bundle_instructions("ARG"):
        name, _, quoted = value.partition("=")
        if name == "PIP_INSTALL":
            (word,) = shlex.split(quoted)  # the ARG's value; the shell splits it where used
            return word.split()
    raise AssertionError("the bundle Dockerfile has no ARG PIP_INSTALL")


def build_ca_bundle() -> Path | None:
    """The CA bundle builds need to reach registries behind this machine's inspecting proxy."""
    chosen = Path(os.environ.get("BOTTLE_CA_BUNDLE", HOST_CA_BUNDLE))
    return chosen if chosen.is_file() else None


class _RecordingAPI:
    def __init__(self, api: Any, calls: list[str]) -> None:
        self._api = api
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._api, name)
        if not callable(attribute):
            return attribute

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return attribute(*args, **kwargs)

        return recorded


class RecordingClient:
    """A docker SDK client whose ``.api`` calls are appended to ``.calls`` by method name."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        self._client = client
        self.api = _RecordingAPI(client.api, self.calls)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def write_small_context(root: Path, greeting_file: str = "hello\n") -> Path:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(SMALL_DOCKERFILE)
    (root / "app" / "greeting.txt").write_text(greeting_file)
    (root / "app" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "app" / "run.sh").chmod(0o755)
    (root / "notes.md").write_text("not copied\n")
    return root


def small_build_spec(context: Path, base_image: str, **changes: Any) -> BuildSpec:
    fields: dict[str, Any] = {
        "name": "test-small",
        "dockerfile": context / "Dockerfile",
        "context": context,
        "build_args": {},
        "base_image": base_image,
        "ca_bundle": None,
        "labels": TEST_LABELS,
        "source_date_epoch": 1_700_000_000,
    }
    fields.update(changes)
    return BuildSpec(**fields)


def build_image_from_texts(
    docker_client: Any,
    tag: str,
    files: Mapping[str, str | bytes],
    buildargs: dict[str, str] | None = None,
    network_mode: str | None = None,
) -> str:
    """Build `tag` from a context of small files (a `Dockerfile` among them), labelled as a test
    image; the intermediate containers go either way."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    docker_client.images.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        buildargs=buildargs or {},
        labels=TEST_LABELS,
        rm=True,
        forcerm=True,
        network_mode=network_mode,
    )
    return tag


def remove_images(docker_client: Any, tags: Iterable[str]) -> None:
    for tag in tags:
        with contextlib.suppress(Exception):
            docker_client.api.remove_image(tag, force=True)


@pytest.fixture
def small_context(tmp_path: Path) -> Path:
    return write_small_context(tmp_path / "context")


@pytest.fixture
def small_spec(small_context: Path, base_image: str, remove_test_images: list[str]) -> BuildSpec:
    """The small image's spec; its layer-cache tag is removed after the test."""
    spec = small_build_spec(small_context, base_image)
    remove_test_images.append(layer_cache_ref(spec))
    return spec


@pytest.fixture
def remove_test_images(docker_client: Any) -> Iterator[list[str]]:
    """Tags appended to the yielded list are removed afterwards, also when the test fails."""
    tags: list[str] = []
    yield tags
    remove_images(docker_client, tags)


def repository_agent_spec(base_image: str) -> BuildSpec:
    """The agent image exactly as a launch of the repository's own bottle would build it (the
    benchmarks build it so too, so that they find the same artifact by input key)."""
    return BuildSpec(
        name="agent",
        dockerfile=REPO_ROOT / "Dockerfile",
        context=REPO_ROOT,
        build_args={},
        base_image=base_image,
        ca_bundle=build_ca_bundle(),
    )


@pytest.fixture(scope="session")
def agent_build_spec(base_image: str) -> BuildSpec:
    return repository_agent_spec(base_image)


@pytest.fixture(scope="session")
def agent_artifact(
    docker_client: Any, agent_build_spec: BuildSpec, session_cache_dir: Path
) -> Iterator[Artifact]:
    """The agent image, built (or found in the store) once per session and loaded into Docker;
    what this session added to Docker is removed when it ends.

    Session fixtures run before the per-test BOTTLE_CACHE_DIR is set, so the store is named
    explicitly: the session's, where launches in later tests look.
    """
    store = ArtifactStore(session_cache_dir / "artifacts")
    result = build(docker_client, agent_build_spec, store=store)
    yield result.artifact
    leftovers = [result.artifact.image_tag] if result.loaded else []
    if result.built:
        leftovers.append(layer_cache_ref(agent_build_spec))
    remove_images(docker_client, leftovers)


SSH_IMAGE_NAME = "bot-bottle-test/git-ssh-upstream"  # tagged by its Dockerfile and base image
SSH_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends openssh-server git \\
 && rm -rf /var/lib/apt/lists/* \\
 && useradd --create-home --shell /bin/sh git \\
 && mkdir -p /run/sshd /home/git/.ssh \\
 && rm -f /etc/ssh/ssh_host_*
"""


@pytest.fixture(scope="session")
def ssh_image(docker_client: Any, base_image: str) -> str:
    """An sshd with git: the upstream the git gate pushes to over ssh (tagged by its inputs)."""
    base_id = docker_client.images.get(base_image).id
    tag = f"{SSH_IMAGE_NAME}:{hashlib.sha256((SSH_DOCKERFILE + base_id).encode()).hexdigest()[:16]}"
    if docker_client.images.list(name=tag):
        return tag
    return build_image_from_texts(
        docker_client, tag, {"Dockerfile": SSH_DOCKERFILE}, {"BASE_IMAGE": base_image}
    )
