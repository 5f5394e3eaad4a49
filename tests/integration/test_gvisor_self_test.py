"""The gVisor self-test against a hostile agent image, on the real daemon with the real runsc.

`gvisor.self_test` runs an image's own tools under runsc: the bundle image before a launch with
`runtime = "auto"` (tests/integration/test_gvisor.py shows an agent image cannot choose runc by
failing it), the base image in `gvisor install`. An image is still not trusted there (a
Dockerfile and build context an agent's merged branch can change; a shared cache's pushers
choose what a key maps to): its entrypoint must not run, what runs must have a bottle's bounds,
and a tool that never exits must not hold the launch.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import gvisor
from bottle_engine.limits import container_log_options
from tests.fixtures_artifacts import build_image_from_texts
from tests.polling import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# A hang detector, far past the engine's own bound (`limits.SELF_TEST_SECONDS`) and a slow
# sandbox start: a self-test still running then never returns by itself.
HANG_SECONDS = 300

ENTRYPOINT_FAILS = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENTRYPOINT ["/bin/false"]
"""

# `sh` replaced by one that never exits; VOLUME: a place Docker would keep on the host's disk.
SHELL_HANGS = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
VOLUME /data
RUN ["/bin/bash", "-c", "printf '#!/bin/bash\\\\nexec sleep infinity\\\\n' > /bin/sh.hang \
&& chmod 755 /bin/sh.hang && mv -f /bin/sh.hang /bin/sh"]
"""


@pytest.fixture
def runsc(docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Mapping[str, Any]:
    """The daemon's runsc runtime; a private cache dir, so no earlier verdict is reused."""
    runtime = (docker_client.info().get("Runtimes") or {}).get(gvisor.RUNTIME_NAME)
    if runtime is None:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("CI needs the runsc runtime registered (scripts/setup)")
        pytest.skip("the Docker daemon has no runsc runtime")
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "cache"))
    return dict(runtime)


@pytest.fixture
def hostile_image(
    docker_client: Any, base_image: str, remove_test_images: list[str]
) -> Callable[[str], str]:
    """Builds an image FROM the test base out of a Dockerfile's text; removed after the test."""

    def build(dockerfile: str) -> str:
        tag = f"bot-bottle-test/self-test:{secrets.token_hex(6)}"
        remove_test_images.append(tag)
        return build_image_from_texts(
            docker_client, tag, {"Dockerfile": dockerfile}, {"BASE_IMAGE": base_image}
        )

    return build


def _containers_of(client: Any, image: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"ancestor": image}))


@contextlib.contextmanager
def self_test_running(
    client: Any, image: str, runtime: Mapping[str, Any]
) -> Iterator[Callable[[], bool | None]]:
    """Runs the self-test in a thread; yields a function that waits (at most `HANG_SECONDS`) for
    its verdict, None if it is still running. Every container of `image` is removed afterwards,
    whatever happened (which also ends a self-test that hangs)."""
    verdicts: list[bool] = []
    thread = threading.Thread(
        target=lambda: verdicts.append(gvisor.self_test(client, image, runtime)), daemon=True
    )
    thread.start()

    def verdict() -> bool | None:
        thread.join(HANG_SECONDS)
        return verdicts[0] if verdicts else None

    try:
        yield verdict
    finally:
        for container in _containers_of(client, image):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        thread.join(60)


def test_the_images_entrypoint_is_not_run(
    docker_client: Any, runsc: Mapping[str, Any], hostile_image: Callable[[str], str]
) -> None:
    """An entrypoint that fails would make the self-test fail if it ran: it passes."""
    image = hostile_image(ENTRYPOINT_FAILS)
    with self_test_running(docker_client, image, runsc) as verdict:
        assert verdict() is True


def test_a_shell_that_never_exits_fails_the_self_test_and_leaves_no_container(
    docker_client: Any,
    runsc: Mapping[str, Any],
    hostile_image: Callable[[str], str],
    tmp_path: Path,
) -> None:
    image = hostile_image(SHELL_HANGS)
    with self_test_running(docker_client, image, runsc) as verdict:
        found = verdict()
        assert found is not None, f"the self-test still runs after {HANG_SECONDS} s"
        assert found is False
        assert _containers_of(docker_client, image) == []
        # No answer in time is no verdict to keep: a busy machine's slow start would keep runc.
        kept = tmp_path / "cache" / "gvisor-check.json"
        assert not kept.exists() or image not in kept.read_text()


def test_the_self_test_container_has_a_bottles_bounds(
    docker_client: Any, runsc: Mapping[str, Any], hostile_image: Callable[[str], str]
) -> None:
    image = hostile_image(SHELL_HANGS)
    with self_test_running(docker_client, image, runsc):
        container = wait_for(
            lambda: _containers_of(docker_client, image), "the self-test container"
        )[0]
        host = container.attrs["HostConfig"]
        assert host["Runtime"] == gvisor.RUNTIME_NAME and host["NetworkMode"] == "none"
        assert host["Memory"] > 0 and host["MemorySwap"] == host["Memory"]
        assert host["PidsLimit"] and host["PidsLimit"] > 0
        assert host["NanoCpus"] > 0
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert host["LogConfig"] == {"Type": "json-file", "Config": container_log_options()}
        assert {"Name": "core", "Soft": 0, "Hard": 0} in (host["Ulimits"] or [])
        assert container.attrs["Config"]["User"] not in ("", "0", "root")
        # The image's VOLUME is a tmpfs counted in the memory limit, not a volume on the disk.
        assert "/data" in (host["Tmpfs"] or {})
        assert [m for m in container.attrs["Mounts"] if m["Type"] == "volume"] == []
