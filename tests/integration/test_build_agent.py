"""The repository's agent image (Dockerfile at the top level), built on the local Debian base."""

from __future__ import annotations

from typing import Any

import pytest

from bottle_engine.artifacts import Artifact, BuildSpec, build
from bottle_engine.artifacts.builder import layer_cache_ref
from bottle_engine.artifacts.oci import read_layout
from tests.fixtures_artifacts import TEST_LABELS, remove_images

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_agent_image_rebuilt_from_scratch_has_the_same_digest(
    docker_client: Any, agent_build_spec: BuildSpec, agent_artifact: Artifact
) -> None:
    rebuilt = build(docker_client, agent_build_spec, no_cache=True)
    try:
        assert rebuilt.built
        assert rebuilt.artifact.input_key == agent_artifact.input_key
        assert rebuilt.artifact.digest == agent_artifact.digest
    finally:
        # The session fixture owns the image; this second build only replaced the layer cache.
        remove_images(docker_client, [layer_cache_ref(agent_build_spec)])


def test_the_agent_image_has_node_20_claude_code_git_and_a_non_root_user(
    docker_client: Any, agent_artifact: Artifact
) -> None:
    output: bytes = docker_client.containers.run(
        agent_artifact.image_tag,
        [
            "sh",
            "-c",
            "node --version; id -u; id -un; pwd; git --version >/dev/null && echo git; "
            'npm --version >/dev/null && echo npm; test -x "$(command -v claude)" && echo claude',
        ],
        remove=True,
        network_disabled=True,
        labels=TEST_LABELS,
    )
    lines = output.decode().split()
    assert lines[0].startswith("v20.")
    assert lines[1:4] == ["1000", "agent", "/workspace"]
    assert lines[4:] == ["git", "npm", "claude"]


def test_the_agent_image_config_carries_no_build_time(agent_artifact: Artifact) -> None:
    config = read_layout(agent_artifact.layout_dir).config
    assert "container" not in config
    assert all("created" not in entry for entry in config["history"])
    assert config["config"]["User"] == "agent"
    assert config["config"]["WorkingDir"] == "/workspace"
