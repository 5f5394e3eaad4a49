"""The bundle image: reproducible, with its Python byte code kept (fast bundle start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts import build
from bottle_engine.artifacts.builder import layer_cache_ref
from bottle_engine.artifacts.bundle_image import bundle_build_spec
from tests.fixtures_artifacts import TEST_LABELS, remove_images

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Counts the .pyc files under /opt/bot-bottle and those that are not hash-based (PEP 552 flags).
COUNT_BYTE_CODE = """
import pathlib
files = list(pathlib.Path("/opt/bot-bottle").rglob("*.pyc"))
timestamped = [f for f in files if not int.from_bytes(f.read_bytes()[4:8], "little") & 1]
print(len(files), len(timestamped))
"""


def test_the_bundle_rebuilt_from_scratch_has_the_same_digest_and_keeps_hash_based_byte_code(
    docker_client: Any, base_image: str, bundle_image: str
) -> None:
    spec = bundle_build_spec(base_image, HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None)
    stored = build(docker_client, spec)
    assert not stored.built and stored.artifact.image_tag == bundle_image
    rebuilt = build(docker_client, spec, no_cache=True)
    try:
        assert rebuilt.built
        assert rebuilt.artifact.digest == stored.artifact.digest
    finally:
        remove_images(docker_client, [layer_cache_ref(spec)])

    output: bytes = docker_client.containers.run(
        bundle_image,
        ["-c", COUNT_BYTE_CODE],
        entrypoint="/opt/bot-bottle/proxy/bin/python",
        remove=True,
        network_disabled=True,
        labels=TEST_LABELS,
    )
    total, timestamped = map(int, output.split())
    assert total > 1000  # mitmproxy and its dependencies, the services venv, our own modules
    assert timestamped == 0
