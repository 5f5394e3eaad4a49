"""`[egress] ask = true` in a real bottle: the agent's request to a host no rule allows waits in
the bundle's proxy until a person answers with the real `bottle-engine` CLI in another process.

The bottle lists only the test upstream's address (a private range, so the CIDR entry is what
lets an approved name reach it); `stranger.test` is a test host of ours whose private address
no rule lists, so approving it must not open it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.bottle_fixtures import (
    HTTP_PORT,
    REPO_ROOT,
    BottleWorld,
    agent_exec,
    audit_log,
    one_agent_manifest,
    running_bottle,
    world_for,
)

MANIFEST = one_agent_manifest(
    "asker",
    """\
[bottles.default.egress]
# The upstream's address only (a private range: refused unless listed); no host name at all.
allow = ["{upstream_ip}/32:{port}"]
ask = true
""",
)


@dataclasses.dataclass(frozen=True)
class AskingBottle:
    world: BottleWorld
    record: Any

    def curl(self, url: str) -> tuple[int, str]:
        """`curl` through the bundle's proxy as the agent: (exit code, status and body)."""
        return agent_exec(
            self.world,
            self.record,
            ["sh", "-c", 'curl -sS -m 110 -x "$HTTP_PROXY" -w "\n%{http_code}" "$0"', url],
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real CLI in its own process, as the person at the host runs it."""
        return subprocess.run(
            [sys.executable, "-m", "bottle_engine", *args],
            env={**os.environ, **self.world.env, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def wait_for_ask(self, host: str, held: Future[tuple[int, str]]) -> dict[str, Any]:
        """The egress ask the bundle opened for `host`, as `bottle-engine approvals` lists it."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert not held.done(), f"the request was not held: {held.result()}"
            listed = self.cli("approvals", self.record.slug, "--json")
            assert listed.returncode == 0, listed.stderr
            for request in json.loads(listed.stdout):
                if request["kind"] == "egress" and request["host"] == host:
                    return dict(request)
            time.sleep(0.3)
        raise AssertionError(f"no egress ask for {host} appeared")

    def audit(self, host: str) -> list[dict[str, Any]]:
        log = audit_log(self.world, self.record)
        lines = log.read_text().splitlines() if log.exists() else []
        return [e for e in map(json.loads, lines) if e["host"] == host]


@pytest.fixture(scope="module")
def asking(
    bottle_world: BottleWorld, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AskingBottle]:
    world = world_for(
        bottle_world,
        tmp_path_factory.mktemp("egress-ask"),
        MANIFEST,
        upstream_ip=bottle_world.outside.upstream_ip,
    )
    with running_bottle(world, "asker") as record:
        yield AskingBottle(world, record)


@pytest.fixture
def agent() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def test_an_unlisted_host_is_held_until_approved_from_the_cli_then_reached(
    asking: AskingBottle, agent: ThreadPoolExecutor
) -> None:
    held = agent.submit(asking.curl, f"http://upstream.test:{HTTP_PORT}/")
    ask = asking.wait_for_ask("upstream.test", held)
    assert (ask["port"], ask["method"], ask["path"]) == (HTTP_PORT, "GET", "/")

    approved = asking.cli("approve", ask["id"], "--fingerprint", ask["fingerprint"])
    assert approved.returncode == 0, approved.stderr

    code, output = held.result(timeout=120)
    assert code == 0 and output.endswith("\n200"), output
    # Approved until the bottle stops: the next request goes straight through.
    code, output = asking.curl(f"http://upstream.test:{HTTP_PORT}/")
    assert output.endswith("\n200"), output
    stages = [(e["kind"], e["stage"], e["decision"]) for e in asking.audit("upstream.test")]
    assert stages[:2] == [("ask", "asked", "ask"), ("ask", "answered", "allow")]
    assert [s for s in stages if s[0] == "ask"] == stages[:2]


def test_an_approved_name_resolving_to_an_unlisted_private_address_stays_refused(
    asking: AskingBottle, agent: ThreadPoolExecutor
) -> None:
    held = agent.submit(asking.curl, f"http://stranger.test:{HTTP_PORT}/")
    ask = asking.wait_for_ask("stranger.test", held)
    assert asking.cli("approve", ask["id"], "--fingerprint", ask["fingerprint"]).returncode == 0

    _, output = held.result(timeout=120)
    assert output.endswith("\n403") and "special-address" in output, output
    (decided,) = [e for e in asking.audit("stranger.test") if e["kind"] == "http"]
    assert decided["decision"] == "deny" and decided["bytes_sent"] == 0
