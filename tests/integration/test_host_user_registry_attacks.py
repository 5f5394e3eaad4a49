"""Another host user against the ephemeral registry a pack pushes the agent image into.

The registry listens on 127.0.0.1 without authentication (smolvm must pull from it), so every
local account can reach it; its port is in /proc/net/tcp for anyone to read. Here the other
user (`nobody`) waits for the pushed tag and writes its own image under that name before
smolvm pulls it. The pack, cached under the person's artifact digest, must still hold the
person's image: smolvm is told to pull the manifest by digest, which a registry cannot answer
with other bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.artifacts.pack import pack_artifact
from bottle_engine.dockerapi.client import LABEL_PACK
from bottle_engine.dockerapi.registry_container import REGISTRY_PORT, list_registries
from tests.fakes.fixtures import FakeSmolvm
from tests.fakes.oci_layout import LayoutArtifact, make_layout
from tests.host_users import NOBODY, as_user, open_tmp_dir
from tests.polling import wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another host user"),
]

# Runs as `nobody` with the system Python, given the registry's port and (at worst) the digest
# of the person's image: uploads its own image's blobs while the registry is up, then puts its
# manifest under every tag it sees and under the person's digest. Prints what it reached.
ATTACKER = textwrap.dedent(
    """
    import json, sys, time, urllib.error, urllib.request
    port, layout, victim = sys.argv[1], sys.argv[2], sys.argv[3]
    base = f"http://127.0.0.1:{port}/v2/bot-bottle"
    def call(method, url, data=None, headers=None):
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, b""
        except OSError:
            return 0, {}, b""
    index = json.load(open(f"{layout}/index.json"))
    digest = index["manifests"][0]["digest"]
    blob = lambda d: open(f"{layout}/blobs/sha256/{d[7:]}", "rb").read()
    manifest = json.loads(blob(digest))
    kind = {"Content-Type": manifest["mediaType"]}
    done = {"reached": False, "overwrote": [], "under_victim_digest": None}
    for _ in range(400):
        status, _, body = call("GET", base + "/tags/list")
        if status == 0 and done["reached"]:
            break  # the registry is gone
        done["reached"] |= status in (200, 404)
        tags = (json.loads(body).get("tags") or []) if status == 200 else []
        if done["reached"] and done["under_victim_digest"] is None:
            for descriptor in [manifest["config"], *manifest["layers"]]:
                _, headers, _ = call("POST", base + "/blobs/uploads/")
                location = headers["Location"]
                if location.startswith("/"):
                    location = f"http://127.0.0.1:{port}" + location
                joiner = "&" if "?" in location else "?"
                call("PUT", f"{location}{joiner}digest={descriptor['digest']}",
                     blob(descriptor["digest"]), {"Content-Type": "application/octet-stream"})
            status, _, _ = call("PUT", f"{base}/manifests/{victim}", blob(digest), kind)
            done["under_victim_digest"] = status
        for tag in tags:
            if call("PUT", f"{base}/manifests/{tag}", blob(digest), kind)[0] == 201:
                done["overwrote"].append(tag)
        if done["overwrote"]:
            break
        time.sleep(0.025)
    print(json.dumps(done))
    """
)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the other user can read (pytest's own tmp dirs are 0700)."""
    with open_tmp_dir(0o755) as directory:
        yield directory


def _readable(path: Path) -> None:
    for item in [path, *path.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)


def _registry_port(docker_client: Any, artifact: LayoutArtifact) -> int:
    def found() -> int | None:
        for container in list_registries(docker_client, {LABEL_PACK: artifact.digest[7:19]}):
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get(REGISTRY_PORT) or []
            if bindings:
                return int(bindings[0]["HostPort"])
        return None

    port: int = wait_for(found, timeout=60, interval=0.05, what="the pack's registry")
    return port


@pytest.mark.usefixtures("use_test_registry")
def test_another_user_cannot_swap_the_image_a_pack_pulls_from_the_ephemeral_registry(
    legacy_smolvm: FakeSmolvm,
    docker_client: Any,
    open_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SMOLVM_FAKE_PACK_DELAY", "3")  # the pull comes a moment after the push
    victim = make_layout(tmp_path, f"victim-{tmp_path.name}")
    attacker = make_layout(open_dir, f"attacker-{tmp_path.name}")
    _readable(attacker.layout_dir)
    script = open_dir / "attack.py"
    script.write_text(ATTACKER)
    script.chmod(0o644)
    attack: dict[str, subprocess.CompletedProcess[str]] = {}

    def attack_as_nobody() -> None:
        port = _registry_port(docker_client, victim)
        attack["run"] = as_user(
            NOBODY,
            ["/usr/bin/python3", str(script), str(port), str(attacker.layout_dir), victim.digest],
            timeout=60,
        )

    thread = threading.Thread(target=attack_as_nobody)
    thread.start()
    try:
        pack = pack_artifact(victim, via_registry=True, docker_client=docker_client)
    finally:
        thread.join(timeout=90)
    run = attack["run"]
    assert run.returncode == 0, run.stderr
    done = json.loads(run.stdout)
    assert done["reached"], run.stdout  # the other user could talk to the registry
    assert done["under_victim_digest"] == 400, run.stdout  # a digest names one set of bytes
    packed = json.loads(pack.sidecar.read_text())["manifest_digest"]
    assert packed == victim.digest, f"the pack holds {packed}, the other user's image"
