"""What the engine reads out of the agent image at a launch, on the host, against a hostile image.

The agent image is not trusted: an agent's merged branch changes its Dockerfile and context, and
with a shared artifact cache whoever may push to the registry chooses what a key maps to. A file
of zeros compresses to almost nothing in a layer, so a small image can hold a CA bundle or a
home of many GiB. Invariant 6: the engine reading them must not take that much of the host.
Sizes here are tens of MiB against bounds the test passes in; the engine's own are larger.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.backends.docker import SYSTEM_CA_BUNDLE, image_file
from bottle_engine.dockerapi.containers import read_file
from bottle_engine.errors import BottleError
from bottle_engine.limits import IMAGE_FILE_MAX_BYTES, MIB
from tests.fixtures_artifacts import REPO_ROOT, build_image_from_texts

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BOUND = 4 * MIB
HUGE = 4 * BOUND  # what the hostile image holds: four times the bound

ZEROS = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
RUN mkdir -p /home/agent $(dirname {path}) && head -c {size} /dev/zero > {path} \\
    && chown -R 1000:1000 /home/agent
"""


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache dir of the test's own: what it finds there, this test put."""
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def image_with(
    docker_client: Any, base_image: str, remove_test_images: list[str]
) -> Callable[[str, int], str]:
    """Builds an image FROM the test base with `size` zero bytes at `path`; removed after."""

    def build(path: str, size: int) -> str:
        tag = f"bot-bottle-test/image-files:{secrets.token_hex(6)}"
        remove_test_images.append(tag)
        dockerfile = ZEROS.format(size=size, path=path)
        return build_image_from_texts(
            docker_client, tag, {"Dockerfile": dockerfile}, {"BASE_IMAGE": base_image}
        )

    return build


@pytest.fixture
def created(docker_client: Any) -> Any:
    """Creates (never starts) a container of an image; removed after the test."""
    made: list[Any] = []

    def create(image: str) -> Any:
        container = docker_client.containers.create(image, command=["true"])
        made.append(container)
        return container

    yield create
    for container in made:
        container.remove(force=True)


def test_a_huge_ca_bundle_in_the_image_is_refused_unread(
    image_with: Callable[[str, int], str], created: Callable[[str], Any], own_cache_dir: Path
) -> None:
    """The CA bundle (every launch), /etc/passwd and /etc/group (under runc) are read whole:
    one larger than the bound is refused from its header, and nothing of it is cached."""
    container = created(image_with(SYSTEM_CA_BUNDLE, HUGE))
    with pytest.raises(BottleError, match=f"ca-certificates.crt .* more than the {BOUND} "):
        read_file(container, SYSTEM_CA_BUNDLE, max_bytes=BOUND)
    with pytest.raises(BottleError, match=f"more than the {IMAGE_FILE_MAX_BYTES} "):
        image_file(container, SYSTEM_CA_BUNDLE)
    assert not list(own_cache_dir.glob("image-files/*")), "the refused file was cached"
    assert read_file(container, "/etc/passwd", max_bytes=BOUND) is not None  # still readable


# Run in a process of its own, its peak memory (VmHWM) measured from just before the copy.
GIVE_HOME = """
import json, sys
import docker
from bottle_engine.backends.docker import give_home
client = docker.from_env()
container = client.containers.get(sys.argv[1])
def rss(field):
    status = open("/proc/self/status").read()
    return int(status.split(field + ":")[1].split()[0]) * 1024
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak (VmHWM) starts again from here
before = rss("VmRSS")
error = None
try:
    give_home(container, 4242, max_bytes=int(sys.argv[2]))
except Exception as exc:
    error = str(exc)
print(json.dumps({"grew": rss("VmHWM") - before, "error": error}))
"""


def _give_home(container: Any, max_bytes: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", GIVE_HOME, container.id, str(max_bytes)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_the_agents_home_is_given_to_it_without_holding_it_in_memory(
    image_with: Callable[[str, int], str], created: Callable[[str], Any]
) -> None:
    """Under runc the image's home is re-owned through the host: a home of HUGE bytes, under
    the bound it is given, costs the engine far less memory than its size."""
    container = created(image_with("/home/agent/zeros", HUGE))
    answer = _give_home(container, max_bytes=8 * HUGE)
    assert answer["error"] is None
    assert answer["grew"] < HUGE // 2, f"the copy took {answer['grew'] // MIB} MiB of memory"
    stream, _ = container.get_archive("/home/agent/zeros")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:  # ours: 16 MiB
        zeros = archive.next()
    assert zeros is not None and (zeros.uid, zeros.gid, zeros.size) == (4242, 4242, HUGE)


def test_a_home_over_the_bound_is_refused(
    image_with: Callable[[str, int], str], created: Callable[[str], Any]
) -> None:
    container = created(image_with("/home/agent/zeros", HUGE))
    answer = _give_home(container, max_bytes=BOUND)
    assert answer["error"] is not None and "/home/agent" in answer["error"], answer
    assert answer["grew"] < HUGE // 2, f"the refusal took {answer['grew'] // MIB} MiB of memory"
