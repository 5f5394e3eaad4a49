"""pip, run as the bundle's Dockerfile runs it, installs only files whose sha256 is pinned.

The attack: whoever stands between PyPI and the bundle's build (a mirror, the TLS-inspecting
proxy whose CA the build trusts) serves a release file other than the one published. Here the
"index" is a find-links directory in the build context, the build has no network, and the
installing pip is the bundle image's own, with the Dockerfile's own `PIP_INSTALL` flags.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from typing import Any

import pytest
from docker.errors import BuildError

from tests.fixtures_artifacts import (
    TEST_LABELS,
    build_image_from_texts,
    bundle_pip_install,
    remove_images,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOCKERFILE = """\
ARG BUNDLE_IMAGE
FROM ${BUNDLE_IMAGE}
ARG PIP_INSTALL
USER root
COPY index /index
RUN python3 -m venv /opt/probe \\
 && /opt/probe/bin/$PIP_INSTALL --no-index --find-links /index -r /index/requirements.txt
"""


def tiny_wheel(origin: str) -> bytes:
    """A pure-Python wheel `tiny` 1.0 whose module says where it came from."""
    files = {
        "tiny/__init__.py": f"ORIGIN = {origin!r}\n",
        "tiny-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n",
        "tiny-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: bot-bottle-test\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},,\n" for name in files) + "tiny-1.0.dist-info/RECORD,,\n"
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as wheel:
        for name, text in {**files, "tiny-1.0.dist-info/RECORD": record}.items():
            wheel.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)
    return data.getvalue()


PUBLISHED = tiny_wheel("published")
PUBLISHED_HASH = hashlib.sha256(PUBLISHED).hexdigest()


def install(docker_client: Any, bundle_image: str, wheel: bytes, requirement: str) -> str:
    """Build the probe image: the bundle's pip installs `requirement` from an index that
    serves `wheel`. What the installed `tiny` says; BuildError if pip refused."""
    tag = f"bot-bottle-test/pip-hashes:{uuid.uuid4().hex[:12]}"
    try:
        build_image_from_texts(
            docker_client,
            tag,
            {
                "Dockerfile": DOCKERFILE,
                "index/tiny-1.0-py3-none-any.whl": wheel,
                "index/requirements.txt": requirement + "\n",
            },
            buildargs={"BUNDLE_IMAGE": bundle_image, "PIP_INSTALL": " ".join(bundle_pip_install())},
            network_mode="none",
        )
        output: bytes = docker_client.containers.run(
            tag,
            ["-c", "import tiny; print(tiny.ORIGIN)"],
            entrypoint="/opt/probe/bin/python",
            remove=True,
            network_disabled=True,
            labels=TEST_LABELS,
        )
        return output.decode().strip()
    finally:
        remove_images(docker_client, [tag])


def refusal(docker_client: Any, bundle_image: str, wheel: bytes, requirement: str) -> str:
    with pytest.raises(BuildError) as refused:
        install(docker_client, bundle_image, wheel, requirement)
    return "".join(str(chunk.get("stream", "")) for chunk in refused.value.build_log)


def test_the_published_wheel_with_its_pinned_hash_installs(
    docker_client: Any, bundle_image: str
) -> None:
    """The control: the probe build itself works, so a refusal below is pip's."""
    requirement = f"tiny==1.0 --hash=sha256:{PUBLISHED_HASH}"
    assert install(docker_client, bundle_image, PUBLISHED, requirement) == "published"


def test_a_replaced_wheel_is_refused_although_name_and_version_match(
    docker_client: Any, bundle_image: str
) -> None:
    tampered = tiny_wheel("tampered")
    requirement = f"tiny==1.0 --hash=sha256:{PUBLISHED_HASH}"
    log = refusal(docker_client, bundle_image, tampered, requirement)
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in log
    assert hashlib.sha256(tampered).hexdigest() in log  # pip names what it was served


def test_a_requirement_without_a_hash_is_refused(docker_client: Any, bundle_image: str) -> None:
    log = refusal(docker_client, bundle_image, PUBLISHED, "tiny==1.0")
    assert "Hashes are required in --require-hashes mode" in log
