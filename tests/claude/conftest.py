"""The Claude Code world: the test world's outside network plus our own `api.anthropic.com`.

* `anthropic_stub`: a TLS server of ours (tests/claude/anthropic_stub.py) on the outside
  network, with its own CA, answering as `api.anthropic.com` (the bundle resolves the name to it
  through BOTTLE_BUNDLE_HOSTS); it accepts only the real key and the real subscription token.
* `claude_world`: a manifest whose bottle trusts that CA through `[egress] upstream_ca` and
  binds both credentials to api.anthropic.com, as `bottle-engine init` writes them.

Nothing here addresses anything but the containers and networks these fixtures create.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bottle_fixtures import REPO_ROOT, TEST_LABEL, BottleWorld, OutsideWorld, make_world
from tests.bundle_helpers import container_ip, make_test_ca, wait_for_log

STUB_SOURCE = Path(__file__).with_name("anthropic_stub.py")
STUB_LOG = "/srv/requests.jsonl"
PROMPT_MARKER = "bottle-prompt-" + secrets.token_hex(6)

MANIFEST = """\
[agents.claude]
command = ["claude"]
prompt = "{marker}: you are Claude Code in a bot-bottle test."
copy_cwd = false

[agents.printer]
command = ["claude", "-p", "--output-format", "json", "say pong"]
prompt = "{marker}: you print one answer."
copy_cwd = false

[bottles.default]
dockerfile = "{repo}/Dockerfile"
context = "{repo}"
memory = "1g"
cpus = 1
supervise = true

[bottles.default.egress]
allow = ["api.anthropic.com", "{stub_ip}/32:443"]
upstream_ca = "{ca}"

[bottles.default.secrets.ANTHROPIC_API_KEY]
from_env = "BOTTLE_TEST_ANTHROPIC_API_KEY"
hosts = ["api.anthropic.com"]

[bottles.default.secrets.CLAUDE_CODE_OAUTH_TOKEN]
from_env = "BOTTLE_TEST_CLAUDE_OAUTH_TOKEN"
hosts = ["api.anthropic.com"]
"""


@dataclass(frozen=True)
class AnthropicStub:
    container: Any
    ip: str
    ca_cert: Path
    api_key: str
    oauth_token: str

    def requests(self) -> list[dict[str, Any]]:
        """Every request the stub received so far, oldest first."""
        result = self.container.exec_run(["cat", STUB_LOG])
        if result.exit_code != 0:
            return []
        text = result.output.decode("utf-8", "replace")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def anthropic_stub(
    docker_client: Any,
    bundle_image: str,
    outside_world: OutsideWorld,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AnthropicStub]:
    directory = tmp_path_factory.mktemp("anthropic-stub")
    tls = make_test_ca(directory / "tls", ["api.anthropic.com"])
    api_key = "sk-ant-api03-real-" + secrets.token_hex(16)
    oauth_token = "sk-ant-oat01-real-" + secrets.token_hex(16)
    files = {
        "anthropic_stub.py": STUB_SOURCE.read_bytes(),
        "server.pem": tls.server_cert.read_bytes(),
        "server-key.pem": tls.server_key.read_bytes(),
        "keys": f"{api_key}\n{oauth_token}\n".encode(),
    }
    container = docker_client.containers.create(
        bundle_image,
        entrypoint=["python3", "/srv/anthropic_stub.py"],
        command=[
            "--cert=/srv/server.pem",
            "--key=/srv/server-key.pem",
            "--keys-file=/srv/keys",
            f"--log={STUB_LOG}",
        ],
        user="0",
        name=f"bbtest-anthropic-{uuid.uuid4().hex[:8]}",
        network=outside_world.network,
        labels=TEST_LABEL,
    )
    try:
        container.put_archive("/srv", _tar(files))
        container.start()
        wait_for_log(container, "anthropic stub ready")
        ip = container_ip(container, outside_world.network)
        yield AnthropicStub(container, ip, tls.ca_cert, api_key, oauth_token)
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


@pytest.fixture(scope="session")
def claude_world(
    tmp_path_factory: pytest.TempPathFactory,
    outside_world: OutsideWorld,
    anthropic_stub: AnthropicStub,
    base_image: str,
    session_cache_dir: Path,
) -> BottleWorld:
    return make_world(
        tmp_path_factory.mktemp("claude-world"),
        MANIFEST.format(
            marker=PROMPT_MARKER,
            repo=REPO_ROOT,
            stub_ip=anthropic_stub.ip,
            ca=anthropic_stub.ca_cert,
        ),
        outside_world,
        base_image=base_image,
        cache_dir=session_cache_dir,
        bundle_hosts=f"api.anthropic.com={anthropic_stub.ip}",
        secrets_env={
            "BOTTLE_TEST_ANTHROPIC_API_KEY": anthropic_stub.api_key,
            "BOTTLE_TEST_CLAUDE_OAUTH_TOKEN": anthropic_stub.oauth_token,
        },
        secret_value=anthropic_stub.api_key,
    )


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
