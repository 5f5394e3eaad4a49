"""The warm pool on the real daemon: a member serves nothing until claimed, one member serves one
bottle, concurrent launches from two processes never share a member, and nothing is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle, pool, records, state
from bottle_engine.bundle.config import EGRESS_PORT, GIT_GATE_PORT, SUPERVISE_PORT
from bottle_engine.dockerapi.client import LABEL_POOL, LABEL_STATE
from bottle_engine.limits import container_log_options
from tests.bottle_fixtures import TEST_LABEL, BottleWorld, labelled_leftovers, world_env

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Tries each of the bundle's ports from where the agent will sit; prints what happened.
KNOCK = """
import json, socket, sys
host, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
seen = {}
for port in ports:
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.sendall(b"GET http://upstream.test/ HTTP/1.1\\r\\nHost: upstream.test\\r\\n\\r\\n")
            s.settimeout(3)
            seen[port] = "answered: " + repr(s.recv(200))
    except ConnectionRefusedError:
        seen[port] = "refused"
    except OSError as exc:
        seen[port] = type(exc).__name__
print(json.dumps(seen))
"""


def _pool_resources(client: Any) -> list[str]:
    names = [c.name for c in client.containers.list(all=True, filters={"label": LABEL_POOL})]
    names += [n.name for n in client.networks.list(filters={"label": LABEL_POOL})]
    return names


@pytest.fixture
def clean_pool(bottle_world: BottleWorld, docker_client: Any) -> Any:
    """The world's environment; afterwards no member of this state dir is left."""
    with world_env(bottle_world):
        yield
        lifecycle.pool_drain()
        lifecycle.gc()
        ours = state.state_id()
    left = [
        c.name
        for c in docker_client.containers.list(all=True, filters={"label": LABEL_POOL})
        if c.labels.get(LABEL_STATE) == ours
    ]
    left += [
        n.name
        for n in docker_client.networks.list(filters={"label": LABEL_POOL})
        if (n.attrs.get("Labels") or {}).get(LABEL_STATE) == ours
    ]
    assert left == []


def test_a_member_without_a_bottle_serves_nothing_even_from_the_agents_address(
    bottle_world: BottleWorld, docker_client: Any, bundle_image: str, clean_pool: None
) -> None:
    """The attack: sit where a future agent will sit (the member's agent address, on its
    internal network) and use the proxy, the gate and MCP before any bottle is handed over."""
    (member,) = lifecycle.pool_fill(bottle_world.manifest, "probe", 1)
    assert not (member.directory / "bundle.json").exists()
    output = docker_client.containers.run(
        bundle_image,
        entrypoint=["python3", "-c", KNOCK],
        command=[member.bundle_ip, str(EGRESS_PORT), str(GIT_GATE_PORT), str(SUPERVISE_PORT)],
        network=member.internal_network,
        networking_config={
            member.internal_network: docker_client.api.create_endpoint_config(
                ipv4_address=member.agent_ip
            )
        },
        labels=TEST_LABEL,
        remove=True,
    )
    seen = json.loads(output)
    assert seen == {str(p): "refused" for p in (EGRESS_PORT, GIT_GATE_PORT, SUPERVISE_PORT)}
    # Nothing of a bottle is in the member's dir; its services are loaded and waiting.
    names = {p.name for p in member.directory.iterdir()}
    assert not names & {"bundle.json", "secrets", "git-keys", "bundle.ready"}
    assert {".warm-egress", ".warm-gitgate", ".warm-supervise"} <= names


def test_a_pooled_launch_uses_the_member_once_and_stop_removes_it(
    bottle_world: BottleWorld, docker_client: Any, clean_pool: None
) -> None:
    (member,) = lifecycle.pool_fill(bottle_world.manifest, "twin", 1)
    record = lifecycle.launch(bottle_world.manifest, "twin")
    try:
        gateway = record.resources.gateway
        assert gateway is not None
        assert gateway.pool_member == member.id
        assert gateway.internal_network == member.internal_network
        assert record.bundle_ip == member.bundle_ip
        assert [m.id for where, m in lifecycle.pool_members() if where == "free"] == []
        # The bundle answers with the digest of the config it loaded; it runs the bottle's.
        ready = json.loads((member.directory / "bundle.ready").read_text())
        config = (member.directory / "bundle.json").read_bytes()
        import hashlib

        assert ready["config_sha256"] == hashlib.sha256(config).hexdigest()
        assert [b.status.text for b in lifecycle.list_bottles() if b.slug == record.slug] == [
            "running"
        ]
        code, out = lifecycle._backend(record).exec_as_agent(
            record,
            ["sh", "-c", "curl -s -o /dev/null -w '%{http_code}' http://upstream.test:8000/"],
        )
        assert (code, out.strip()) == (0, "200")
        # A second launch finds no free member: cold, and it works too.
        second = lifecycle.launch(bottle_world.manifest, "twin")
        try:
            assert second.resources.gateway is not None
            assert second.resources.gateway.pool_member is None
        finally:
            lifecycle.stop(second.slug, remove=True)
        # Stop and resume a pooled bottle: the bundle's mount still finds the member's dir.
        lifecycle.stop(record.slug)
        lifecycle.resume(record.slug)
        assert [b.status.text for b in lifecycle.list_bottles() if b.slug == record.slug] == [
            "running"
        ]
        # The member's bundle and the agent, resumed, keep their bounded logs (invariant 6).
        for name in (record.name, record.bundle_name):
            log_config = docker_client.containers.get(name).attrs["HostConfig"]["LogConfig"]
            assert log_config == {"Type": "json-file", "Config": container_log_options()}
    finally:
        lifecycle.stop(record.slug, remove=True)
    assert not member.directory.exists()
    assert not (bottle_world.state_dir / "bottles" / record.slug).exists()
    assert [n for n in _pool_resources(docker_client) if member.id in n] == []
    assert labelled_leftovers(docker_client, record.slug) == []


def _cli_launch(world: BottleWorld, agent: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bottle_engine",
            "launch",
            "-f",
            str(world.manifest),
            agent,
            "--detach",
            "--json",
        ],
        env={**os.environ, **world.env, "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("members", [1, 2])
def test_two_processes_launching_at_once_never_share_a_member(
    bottle_world: BottleWorld, docker_client: Any, clean_pool: None, members: int
) -> None:
    made = lifecycle.pool_fill(bottle_world.manifest, "twin", members)
    with ThreadPoolExecutor(2) as threads:
        results = list(threads.map(lambda _: _cli_launch(bottle_world, "twin"), range(2)))
    launched = [json.loads(r.stdout) for r in results if r.returncode == 0]
    try:
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        used = [r["resources"]["gateway"]["pool_member"] for r in launched]
        pooled = [m for m in used if m is not None]
        assert len(pooled) == len(set(pooled)) == members  # each member once, none left over
        assert set(pooled) == {m.id for m in made}
        assert len({r["slug"] for r in launched}) == 2
        assert len({r["subnet"] for r in launched}) == 2
    finally:
        for raw in launched:
            lifecycle.stop(raw["slug"], remove=True)
    assert [r for r in records.all_records() if r.slug.startswith("twin")] == []


def test_gc_removes_a_claimed_member_no_bottle_accounts_for(
    bottle_world: BottleWorld, docker_client: Any, clean_pool: None
) -> None:
    """A launch that took a member and then died (kill -9) leaves a claimed member: gc."""
    (member,) = lifecycle.pool_fill(bottle_world.manifest, "victim", 1)
    taken = list(pool.take(member.key))
    assert [m.id for m in taken] == [member.id]
    assert list(pool.take(member.key)) == []  # taken once only
    removed = lifecycle.gc()
    assert member.container in removed
    assert [n for n in _pool_resources(docker_client) if member.id in n] == []
    assert not member.directory.exists()


def test_filling_up_to_one_makes_only_what_is_missing_and_release_removes_it(
    bottle_world: BottleWorld, docker_client: Any, clean_pool: None
) -> None:
    """What the editor's keep-warm asks for: a member when none is free, none when one is,
    and removal of its own member unless a launch took it."""
    (member,) = lifecycle.pool_fill(bottle_world.manifest, "twin", 1, up_to=True)
    assert lifecycle.pool_fill(bottle_world.manifest, "twin", 1, up_to=True) == []
    assert lifecycle.pool_release(["no-such-member", member.id]) == [member.id]
    assert [m for _, m in lifecycle.pool_members() if m.id == member.id] == []
    assert [n for n in _pool_resources(docker_client) if member.id in n] == []
    assert lifecycle.pool_release([member.id]) == []  # gone already: nothing to remove
