"""The agent image's build context and real secret values, against the real daemon.

Two bottles build their agent image from one context with `COPY . /src`, and a git-ignored
`.env` in it holds a value. For the bottle without a secret of that value the image is built
(the value is in it: `/src/.env`). The bottle whose secret it is would get the same input key,
and so the same image from the store, with no build to check: its launch is refused all the
same, before any image is built or reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts import ensure_artifact
from bottle_engine.artifacts.agent import agent_build_spec
from bottle_engine.artifacts.builder import layer_cache_ref
from bottle_engine.backends.docker import DockerBackend
from bottle_engine.errors import BottleError
from bottle_engine.manifest import load_manifest_text
from bottle_engine.plan import BottlePlan, plan_bottle
from bottle_engine.progress import QuietProgress
from bottle_engine.settings import EngineSettings
from tests.fixtures_artifacts import TEST_LABELS, RecordingClient

pytestmark = [pytest.mark.docker, pytest.mark.slow]

INVENTED_VALUE = "rt41-invented-api-key-9e13a8"
MANIFEST = """\
[agents.plain]
bottle = "plain"
[agents.keyed]
bottle = "keyed"
[bottles.plain]
dockerfile = "ctx/Dockerfile"
context = "ctx"
[bottles.keyed]
dockerfile = "ctx/Dockerfile"
context = "ctx"
[bottles.keyed.secrets.API_KEY]
from_env = "RT41_API_KEY"
hosts = ["api.example.invalid"]
"""


def plans(project: Path) -> tuple[BottlePlan, BottlePlan]:
    context = project / "ctx"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /src\n")
    (context / "main.py").write_text("print('work')\n")
    (context / ".env").write_text(f"RT41_API_KEY={INVENTED_VALUE}\n")
    (project / "bottle.toml").write_text(MANIFEST)
    manifest = load_manifest_text(MANIFEST, project / "bottle.toml").require()
    return (
        plan_bottle(manifest, "plain", cwd=project),
        plan_bottle(manifest, "keyed", cwd=project),
    )


def test_a_launch_reusing_an_agent_image_whose_context_holds_its_value_is_refused(
    docker_client: Any,
    base_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    remove_test_images: list[str],
) -> None:
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "cache"))  # a store of its own
    monkeypatch.setenv("RT41_API_KEY", INVENTED_VALUE)
    settings = EngineSettings(base_image=base_image)
    plain, keyed = plans(tmp_path / "project")
    plain_spec = agent_build_spec(plain, settings)
    remove_test_images.append(layer_cache_ref(plain_spec))
    image = ensure_artifact(docker_client, plain_spec, settings=settings).image_tag
    remove_test_images.append(image)
    baked: bytes = docker_client.containers.run(
        image, ["cat", "/src/.env"], remove=True, network_disabled=True, labels=TEST_LABELS
    )
    assert INVENTED_VALUE.encode() in baked  # what a reuse of this image would hand the agent

    recording = RecordingClient(docker_client)
    with pytest.raises(BottleError) as caught:
        DockerBackend(recording, settings).prepare(keyed, QuietProgress())

    told = f"{caught.value.message}\n{caught.value.fix}"
    assert ".env" in told and "API_KEY" in told and ".dockerignore" in told
    assert INVENTED_VALUE not in told
    assert "build" not in recording.calls and "load_image" not in recording.calls
