"""The supervise MCP server inside a real bundle container, asked from the agent container.

The agent (on the internal network only) calls request_approval at
``http://<bundle_ip>:9100/mcp`` with the MCP SDK's streamable HTTP client; the person answers
on the host with `bottle-engine approve|deny`, through the bottle's state dir that the bundle
shares with the host. A restart of the bundle container loses no request and no answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import approvals, state
from bottle_engine.approvals import AUDIT_LOG
from bottle_engine.bundle.config import SUPERVISE_PORT, BundleConfig
from tests.integration.test_gitgate_support import bottle_networks, start_bundle_and_agent
from tests.integration.test_supervise import bottle_engine, wait_for_event

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SERVICES_PYTHON = "/opt/bot-bottle/services/bin/python"  # the bundle image's venv with `mcp`
# Retries the connection: the agent's MCP client outlives a bundle restart the same way.
ASK = """\
import json, sys, time
import anyio
from mcp import Client

async def ask():
    async with Client(sys.argv[1]) as client:
        args = {"action": sys.argv[2], "reason": sys.argv[3]}
        result = await client.call_tool("request_approval", args)
        print(json.dumps(result.structured_content))

for attempt in range(int(sys.argv[4])):
    try:
        anyio.run(ask)
        break
    except Exception as exc:
        print("retrying:", repr(exc), file=sys.stderr)
        time.sleep(1)
"""


@dataclass
class SupervisedBottle:
    slug: str
    agent: Any
    bundle: Any
    config: BundleConfig
    state_dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.config.bundle_ip}:{SUPERVISE_PORT}/mcp"

    def ask_in_background(
        self, action: str, reason: str, attempts: int = 60
    ) -> tuple[threading.Thread, list[str]]:
        """The agent calls the tool; its printed answer lands in the returned list."""
        output: list[str] = []
        command = [SERVICES_PYTHON, "-c", ASK, self.url, action, reason, str(attempts)]

        def run() -> None:
            result = self.agent.exec_run(command)
            output.append(bytes(result.output).decode("utf-8", "replace"))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, output

    def wait_ready(self) -> None:
        from bottle_engine.dockerapi.bundle_container import wait_bundle_ready

        wait_bundle_ready(self.bundle, self.config, 180, state_dir=self.state_dir)


@pytest.fixture
def bottle(docker_client: Any, bundle_image: str) -> Iterator[SupervisedBottle]:
    with bottle_networks(docker_client) as networks, contextlib.ExitStack() as stack:
        slug = f"test-{networks.run_id}"
        config = BundleConfig(
            slug=slug,
            bundle_ip=str(networks.subnet[2]),
            agent_subnet=str(networks.subnet),
            supervise=True,
            supervise_timeout_seconds=300,
        )
        state_dir = state.bottle_dir(slug)  # where `bottle-engine approve` looks
        bundle, agent = start_bundle_and_agent(
            stack, docker_client, bundle_image, networks, config, state_dir
        )
        yield SupervisedBottle(slug, agent, bundle, config, state_dir)


def pending(slug: str) -> list[approvals.ApprovalRequest]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = approvals.list_requests(slug, pending_only=True)
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("no request reached the host's state dir")


def answer_of(
    bottle: SupervisedBottle, thread: threading.Thread, output: list[str]
) -> dict[str, Any]:
    thread.join(timeout=120)
    logs = bytes(bottle.bundle.logs(tail=40)).decode("utf-8", "replace")
    audit = (bottle.state_dir / "approvals.jsonl").read_text()
    assert output, f"the agent's tool call never returned; bundle log:\n{logs}\n{audit}"
    result: dict[str, Any] = json.loads(output[0].strip().splitlines()[-1])
    return result


def test_agent_gets_the_denial_and_note_given_on_the_host(bottle: SupervisedBottle) -> None:
    thread, output = bottle.ask_in_background("curl https://prod.invalid/reset", "cleanup")
    [request] = pending(bottle.slug)

    denied = bottle_engine("deny", request.id, "--note", "not on prod")

    assert denied.returncode == 0, denied.stderr
    answer = answer_of(bottle, thread, output)
    assert (answer["approved"], answer["request_id"], answer["note"]) == (
        False,
        request.id,
        "not on prod",
    )


def test_a_request_pending_across_a_bundle_restart_gets_its_answer(
    bottle: SupervisedBottle,
) -> None:
    first, _ = bottle.ask_in_background("git push --force", "history rewrite", attempts=1)
    [request] = pending(bottle.slug)

    bottle.bundle.restart(timeout=10)
    first.join(timeout=120)  # the agent's connection broke with the restart
    bottle.wait_ready()
    thread, output = bottle.ask_in_background("git push --force", "history rewrite")
    wait_for_event(bottle.state_dir / AUDIT_LOG, request.id, "asked-again")
    assert [r.id for r in approvals.list_requests(bottle.slug)] == [request.id]
    approved = bottle_engine("approve", request.id, "--fingerprint", request.fingerprint)

    assert approved.returncode == 0, approved.stderr
    answer = answer_of(bottle, thread, output)
    assert (answer["approved"], answer["request_id"]) == (True, request.id)
