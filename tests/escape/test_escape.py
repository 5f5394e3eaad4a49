"""The acceptance gate: a hostile agent inside a real bottle tries to get out.

Each probe runs inside the agent's sandbox, as the agent. Every one must be refused except the
control (the allowlisted test host through the proxy). A second bottle runs alongside, so
"another bottle is unreachable" is tested against a real neighbour with a listening agent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bottle_engine import lifecycle
from bottle_engine.dockerapi.containers import AGENT_DNS_SERVERS
from bottle_engine.probes import ProbeReport, ProbeTargets
from tests.bottle_fixtures import BottleWorld, agent_exec, running_bottle, world_env
from tests.bundle_helpers import run_as_nobody
from tests.gvisor_helpers import require_gvisor, runtimes_of


def _gateway(bundle_ip: str) -> str:
    head, last = bundle_ip.rsplit(".", 1)
    return f"{head}.{int(last) - 1}"


def _agent_ip(bundle_ip: str) -> str:
    head, last = bundle_ip.rsplit(".", 1)
    return f"{head}.{int(last) + 1}"


WAIT_FOR_LISTENER = (
    "for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && exit 0; "
    "sleep 0.2; done; exit 1"
)


def _wait_for_listener(world: BottleWorld, bottle: Any) -> Any:
    """The second bottle, once its agent listens: "unreachable" must not mean "not up yet"."""
    code, output = agent_exec(world, bottle, ["bash", "-c", WAIT_FOR_LISTENER])
    assert code == 0, f"the neighbour's agent never listened: {output}"
    return bottle


@pytest.fixture(scope="module", params=["runc", "gvisor"])
def sandbox(
    request: pytest.FixtureRequest,
    bottle_world: BottleWorld,
    probe_bottle: Any,
    neighbour_bottle: Any,
) -> Iterator[tuple[Any, Any]]:
    """The probe bottle and its listening neighbour, once under runc and once under gVisor.

    The session's bottles (`runtime = "auto"`) serve the pass of the runtime they got; the other
    pass launches its own pair with BOTTLE_RUNTIME forced, so both runtimes are always tested.
    Where gVisor cannot run, its pass is skipped with the reason, except in CI or on a machine
    `scripts/setup` prepared, where that is a failure.
    """
    from bottle_engine.dockerapi import connect

    client = connect()
    runtime = "runsc" if request.param == "gvisor" else "runc"
    if runtime == "runsc":
        image = client.containers.get(probe_bottle.name).image.id
        require_gvisor(bottle_world, image, "the escape suite's gVisor pass")
    if runtimes_of(client, probe_bottle) == {runtime}:
        yield probe_bottle, _wait_for_listener(bottle_world, neighbour_bottle)
        return
    world = dataclasses.replace(bottle_world, env={**bottle_world.env, "BOTTLE_RUNTIME": runtime})
    with running_bottle(world, "probe") as probe, running_bottle(world, "neighbour") as other:
        for bottle in (probe, other):
            assert runtimes_of(client, bottle) == {runtime}
        yield probe, _wait_for_listener(world, other)


@pytest.fixture(scope="module")
def escape_report(
    bottle_world: BottleWorld, sandbox: tuple[Any, Any]
) -> tuple[ProbeReport, list[str]]:
    probe_bottle, neighbour_bottle = sandbox
    outside = bottle_world.outside
    targets = ProbeTargets(
        bundle_ip=probe_bottle.bundle_ip,
        gateway_ip=_gateway(probe_bottle.bundle_ip),
        allowed_url=f"http://upstream.test:{8000}/",
        denied_url=f"http://stranger.test:{8000}/",
        outside=[(outside.stranger_ip, 8000), (outside.upstream_ip, 8000)],
        host_ports=[outside.host_port],
        other_bottles=[
            (neighbour_bottle.bundle_ip, 8888),
            (_agent_ip(neighbour_bottle.bundle_ip), 8080),
        ],
    )
    with world_env(bottle_world):
        return lifecycle.probe(probe_bottle.slug, targets)


def _failures(report: ProbeReport) -> str:
    return "\n".join(
        f"{row['probe']}: expected {row['expected']}, observed {row['observed']} "
        f"({row['claim']}): {row['output']}"
        for row in report.to_json()
        if not row["passed"]
    )


def test_every_escape_probe_is_refused_and_the_control_works(
    escape_report: tuple[ProbeReport, list[str]],
) -> None:
    report, _ = escape_report
    assert report.results, "no probes ran"
    assert report.passed, _failures(report)


def test_the_control_really_reached_the_allowlisted_host(
    escape_report: tuple[ProbeReport, list[str]],
) -> None:
    report, _ = escape_report
    control = next(r for r in report.results if r.probe.name == "control-allowed-host")
    assert control.succeeded and control.output.strip().endswith("200")


def test_probes_cover_each_isolation_claim(escape_report: tuple[ProbeReport, list[str]]) -> None:
    names = {r.probe.name for r in escape_report[0].results}
    for expected in (
        "proxy-denies-unlisted-host",
        "docker-socket-absent",
        "agent-not-root",
        "no-capabilities",
        "no-ipv6-address",
        "proxy-denies-bundle-port-9418",
        "proxy-refuses-tls-on-its-port",
        "proxy-bounds-request-head",
        "proxy-answers-a-refused-body-early",
    ):
        assert expected in names
    assert any(n.startswith("direct-tcp-") for n in names)
    assert any(n.startswith("proxy-denies-ip-") for n in names)
    assert any(n.startswith("host-service-") for n in names)
    assert sum(n.startswith("other-bottle-") for n in names) == 2


def test_no_real_secret_value_inside_the_agent(
    escape_report: tuple[ProbeReport, list[str]],
) -> None:
    assert escape_report[1] == []


def test_agent_env_holds_only_the_placeholder(bottle_world: BottleWorld, probe_bottle: Any) -> None:
    code, env = agent_exec(bottle_world, probe_bottle, ["env"])
    assert code == 0
    token = next(line for line in env.splitlines() if line.startswith("TEST_TOKEN="))
    assert token.startswith("TEST_TOKEN=bbph_")
    assert bottle_world.secret_value not in env


def test_probe_cli_reports_json(bottle_world: BottleWorld, probe_bottle: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bottle_engine", "probe", probe_bottle.slug, "--json"],
        env={**os.environ, **bottle_world.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    data = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert data["passed"] is True
    assert data["secret_leaks"] == []


def test_names_the_agent_looks_up_are_never_forwarded_out(
    bottle_world: BottleWorld, probe_bottle: Any, docker_client: Any
) -> None:
    """Docker's embedded DNS forwards unknown names upstream, for internal networks too before
    Moby 26 (CVE-2024-29018): a way out by DNS. The agent has no server it forwards to (an
    IPv6 one only), so a lookup ends there (the name is `.invalid`: nothing may answer it
    anyway, should a regression let the query out)."""
    container = docker_client.containers.get(probe_bottle.name)
    assert container.attrs["HostConfig"]["Dns"] == list(AGENT_DNS_SERVERS)
    code, _ = agent_exec(
        bottle_world, probe_bottle, ["getent", "hosts", "exfiltrate.bottle.invalid"]
    )
    assert code != 0


# -- only the agent, and a bounded agent ------------------------------------------------------

PROXY_KNOCK = (
    "import socket, sys\n"
    "try:\n"
    "    with socket.create_connection((sys.argv[1], 8888), timeout=10) as s:\n"
    "        s.sendall(b'GET http://upstream.test:8000/ HTTP/1.1\\r\\nHost: upstream.test:8000"
    "\\r\\n\\r\\n')\n"
    "        print('answered' if s.recv(64).startswith(b'HTTP/') else 'closed')\n"
    "except OSError as exc:\n"
    "    print('refused', exc)\n"
)


def _bundle_outbound_ip(docker_client: Any, bottle: Any, network: str) -> str:
    bundle = docker_client.containers.get(bottle.bundle_name)
    return str(bundle.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def test_a_container_on_the_outbound_network_cannot_use_the_bottles_proxy(
    bottle_world: BottleWorld, probe_bottle: Any, docker_client: Any
) -> None:
    """The world's `stranger` shares the bundle's outbound network (BOTTLE_EGRESS_NETWORK): it
    must not get the bottle's proxy, its allowlist and its secret substitution."""
    outside = bottle_world.outside
    stranger = next(
        c
        for c in docker_client.networks.get(outside.network).containers
        if c.attrs["NetworkSettings"]["Networks"][outside.network]["IPAddress"]
        == outside.stranger_ip
    )
    target = _bundle_outbound_ip(docker_client, probe_bottle, outside.network)
    result = stranger.exec_run(["python3", "-c", PROXY_KNOCK, target])
    assert not bytes(result.output).startswith(b"answered"), bytes(result.output)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another host user")
def test_a_host_user_cannot_use_the_bottles_proxy(
    bottle_world: BottleWorld, probe_bottle: Any, docker_client: Any
) -> None:
    target = _bundle_outbound_ip(docker_client, probe_bottle, bottle_world.outside.network)
    result = run_as_nobody(["python3", "-c", PROXY_KNOCK, target], 60)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.startswith("answered"), result.stdout


def test_the_agent_cannot_fill_the_hosts_disk_through_tmp(
    bottle_world: BottleWorld, probe_bottle: Any, docker_client: Any
) -> None:
    """/tmp is a tmpfs of half the bottle's memory, counted in its memory limit: writing past
    it fails in the bottle instead of taking the host's disk."""

    size = probe_bottle.resources.memory_bytes // 2
    fill = (
        f"head -c {size + 16 * 2**20} /dev/zero > /tmp/fill; code=$?; "
        "du -sm /tmp/fill; rm -f /tmp/fill; exit $code"
    )
    code, output = agent_exec(bottle_world, probe_bottle, ["sh", "-c", fill])
    assert code != 0, f"wrote past the bound: {output}"
    assert "No space left on device" in output
    mounts = docker_client.containers.get(probe_bottle.name).attrs["HostConfig"]["Tmpfs"] or {}
    assert "/tmp" in mounts


# A process of 64 MiB that raises its core size as far as it may and crashes in /tmp. With a
# pipe in the host's core_pattern (systemd-coredump, apport) its dump is read, compressed and
# stored by a helper the kernel starts on the host, outside the bottle's memory, CPU and disk.
CRASH_WITH_CORE = (
    'ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -Hc)"; '
    "echo hard=$(ulimit -Hc) soft=$(ulimit -c); cd /tmp && "
    "node -e 'Buffer.alloc(64 << 20, 1); process.kill(process.pid, \"SIGSEGV\")'; "
    "ls -l /tmp | grep core || echo no-core"
)


def test_a_crashing_agent_process_dumps_no_core(
    bottle_world: BottleWorld, sandbox: tuple[Any, Any]
) -> None:
    """Invariant 6: no agent process dumps core, under either runtime, whatever the host's
    core_pattern: the core size is 0 and the agent cannot raise it."""
    probe_bottle, _ = sandbox
    _, output = agent_exec(bottle_world, probe_bottle, ["bash", "-c", CRASH_WITH_CORE])
    assert "hard=0 soft=0" in output, output
    assert "no-core" in output, output
