"""A hostile neighbour and a hostile agent against a real bundle container.

Only the agent: a container on the bundle's outbound network (as with a shared
BOTTLE_EGRESS_NETWORK), the same container routing the bundle's internal subnet through the
bundle, and a host user without rights (`nobody`) each try the proxy, the git gate and the
approval server; only the agent (pinned at the subnet's .3, as in a bottle) gets an answer.

Bounded: the bundle's memory, CPU and pids limits hold against a decompression bomb sent
through the proxy and against any process inside it that grows past them (git for a huge
push is one): the kernel ends a process in the bundle, and the bundle's peak stays under its
limit, never the host's memory.

Traffic goes only to containers and networks these tests create.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.config import BundleConfig
from tests.bundle_helpers import TEST_LABELS, _force_remove, container_ip, run_as_nobody
from tests.integration.test_gitgate_local import seed_upstream
from tests.integration.test_gitgate_support import bottle_networks, start_bundle_and_agent

pytestmark = [pytest.mark.docker, pytest.mark.slow]

UPSTREAM_IN_BUNDLE = "/srv/upstream.git"
SECRET_PLACEHOLDER = "bbph_hardening_placeholder"

# Tries each service at HOST; prints {"proxy": bool, "gate": bool, "supervise": bool}: True
# when the service answered (the attack worked). Standard library and git only.
ATTACK = r"""
import json, socket, subprocess, sys
host, bundle_ip = sys.argv[1], sys.argv[2]
result = {}
try:
    with socket.create_connection((host, 8888), timeout=10) as s:
        s.sendall(b"GET http://anything.invalid/ HTTP/1.1\r\nHost: anything.invalid\r\n\r\n")
        result["proxy"] = s.recv(64).startswith(b"HTTP/")
except OSError:
    result["proxy"] = False
listed = subprocess.run(
    ["git", "ls-remote", f"git://{host}:9418/origin"],
    capture_output=True, text=True, timeout=60, env={"HOME": "/tmp", "PATH": "/usr/bin:/bin"},
)
result["gate"] = listed.returncode == 0 and "refs/heads/main" in listed.stdout
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "x", "version": "1"}}}).encode()
request = (
    f"POST /mcp HTTP/1.1\r\nHost: {bundle_ip}:9100\r\nContent-Type: application/json\r\n"
    "Accept: application/json, text/event-stream\r\n"
    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
).encode() + body
try:
    with socket.create_connection((host, 9100), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    result["supervise"] = b"bot-bottle-supervise" in answer
except OSError:
    result["supervise"] = False
print(json.dumps(result))
"""
NOTHING = {"proxy": False, "gate": False, "supervise": False}
EVERYTHING = {"proxy": True, "gate": True, "supervise": True}


@dataclass
class Bed:
    client: Any
    config: BundleConfig
    bundle: Any
    agent: Any
    neighbour: Any
    outbound_ip: str  # the bundle's address on its outbound network
    upstream_ip: str  # an HTTP server on the outbound network (the neighbour's)
    state_dir: Path

    def attack_from(self, container: Any, host: str) -> dict[str, bool]:
        result = container.exec_run(["python3", "-c", ATTACK, host, self.config.bundle_ip])
        output = bytes(result.output).decode("utf-8", "replace")
        assert result.exit_code == 0, output
        parsed: dict[str, bool] = json.loads(output.strip().splitlines()[-1])
        return parsed


@pytest.fixture(scope="module")
def bed(
    docker_client: Any, bundle_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bed]:
    from bottle_engine.bundle.config import GitUpstreamConfig, SecretBinding

    workdir = tmp_path_factory.mktemp("hardening")
    upstream = seed_upstream(workdir)
    secret = workdir / "secret"
    secret.write_text("real-secret-value\n")
    with bottle_networks(docker_client) as networks, contextlib.ExitStack() as stack:
        neighbour = docker_client.containers.run(
            bundle_image,
            ["python3", "-m", "http.server", "8000", "-d", "/tmp"],
            entrypoint=[],
            name=f"bb-test-{networks.run_id}-neighbour",
            network=networks.egress,
            labels=TEST_LABELS,
            detach=True,
        )
        stack.callback(_force_remove, neighbour)
        upstream_ip = container_ip(neighbour, networks.egress)
        config = BundleConfig(
            slug=f"test-{networks.run_id}",
            bundle_ip=str(networks.subnet[2]),
            agent_subnet=str(networks.subnet),
            agent_ip=str(networks.subnet[3]),
            egress_allow=(f"{upstream_ip}/32:8000",),
            secrets=(
                SecretBinding(
                    "TOKEN",
                    SECRET_PLACEHOLDER,
                    ("upstream.invalid",),
                    "/run/bot-bottle/secrets/TOKEN",
                ),
            ),
            git=(GitUpstreamConfig("origin", UPSTREAM_IN_BUNDLE, ("agent/*",)),),
            supervise=True,
        )
        state_dir = workdir / "state"
        bundle, agent = start_bundle_and_agent(
            stack,
            docker_client,
            bundle_image,
            networks,
            config,
            state_dir,
            readonly_files={UPSTREAM_IN_BUNDLE: upstream},
            secret_files={"TOKEN": secret},
        )
        outbound_ip = container_ip(bundle, networks.egress)
        yield Bed(
            docker_client, config, bundle, agent, neighbour, outbound_ip, upstream_ip, state_dir
        )


def test_the_agent_uses_proxy_gate_and_approvals(bed: Bed) -> None:
    """The control: what the others are refused, the agent gets."""
    assert bed.attack_from(bed.agent, bed.config.bundle_ip) == EVERYTHING


def test_a_container_on_the_outbound_network_cannot_use_the_bundle(bed: Bed) -> None:
    assert bed.attack_from(bed.neighbour, bed.outbound_ip) == NOTHING


def test_a_container_routing_to_the_internal_address_is_refused_by_every_service(
    bed: Bed,
) -> None:
    """Listening on the internal address is not enough: a neighbour with a route to the
    internal subnet through the bundle's outbound side reaches it (Linux accepts packets for
    any local address on any interface). The services' own client check refuses it."""
    bed.neighbour.reload()
    pid = str(bed.neighbour.attrs["State"]["Pid"])
    subnet = bed.config.agent_subnet
    subprocess.run(
        ["nsenter", "-t", pid, "-n", "ip", "route", "replace", subnet, "via", bed.outbound_ip],
        check=True,
        capture_output=True,
    )
    try:
        assert bed.attack_from(bed.neighbour, bed.config.bundle_ip) == NOTHING
    finally:
        subprocess.run(
            ["nsenter", "-t", pid, "-n", "ip", "route", "del", subnet],
            check=False,
            capture_output=True,
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another host user")
def test_a_host_user_without_rights_cannot_use_the_bundle(bed: Bed) -> None:
    """`nobody` on the host reaches the bundle's outbound address (the host has a route to that
    bridge; it has none to the internal one, which has no host address)."""
    result = run_as_nobody(["python3", "-c", ATTACK, bed.outbound_ip, bed.config.bundle_ip], 120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == NOTHING


# -- bounds ---------------------------------------------------------------------------------


def _memory_cgroup(container: Any) -> Path:
    return Path("/sys/fs/cgroup/memory/docker") / str(container.id)


class PeakMemory:
    """Samples a container's memory use (cgroup v1) in a thread: the peak, even if it dies."""

    def __init__(self, container: Any) -> None:
        self.cgroup = _memory_cgroup(container)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self, name: str) -> int:
        try:
            return int((self.cgroup / name).read_text())
        except (OSError, ValueError):
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(
                self.peak,
                self._read("memory.usage_in_bytes"),
                self._read("memory.max_usage_in_bytes"),
            )
            self._stop.wait(0.05)

    def __enter__(self) -> PeakMemory:
        if not Path("/sys/fs/cgroup/memory/docker").is_dir():
            pytest.skip("no cgroup v1 memory controller for Docker on this host")
        assert self.cgroup.is_dir(), f"the bundle is not running (no {self.cgroup})"
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _limit(bed: Bed) -> int:
    """The memory the bundle may use by the rule (this bed's agent size is 0: the smallest)."""
    from bottle_engine.limits import bundle_limits

    return bundle_limits(0).memory_bytes


def test_the_bundle_has_memory_cpu_pids_and_tmp_limits(bed: Bed) -> None:
    from bottle_engine.limits import bundle_limits

    expected = bundle_limits(0)
    bed.bundle.reload()
    assert bed.bundle.name.endswith("-bundle")  # the name asked for, whatever else changed
    host = bed.bundle.attrs["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == expected.memory_bytes
    assert host["NanoCpus"] == expected.nano_cpus
    assert host["PidsLimit"] == expected.pids
    assert f"size={expected.tmp_bytes}" in host["Tmpfs"]["/tmp"]


def test_a_crashing_bundle_process_dumps_no_core_into_the_state_dir(bed: Bed) -> None:
    """A process that dies of a core-dumping signal (the git gate's CPU bound ends a push with
    SIGXCPU) writes its core in its working directory under the usual core_pattern, and the
    git gate's processes work in its repository in the state dir, a host directory. Docker's
    systemd unit gives containers an unbounded core size; where the daemon's soft limit is 0
    its hard limit let any process raise it."""
    crash = "ulimit -c unlimited 2>/dev/null; cd /var/lib/bot-bottle && exec python3 -c " + (
        "'import os; os.abort()'"
    )
    result = bed.bundle.exec_run(["sh", "-c", crash])
    assert result.exit_code != 0
    listing = bed.bundle.exec_run(["sh", "-c", "ls /var/lib/bot-bottle"])
    assert b"core" not in bytes(listing.output).split(), bytes(listing.output)


def test_a_process_growing_past_the_limit_is_killed_inside_the_bundle(bed: Bed) -> None:
    """Any process of the bundle (git indexing a huge push, the proxy buffering) that grows
    past the limit is killed by the kernel inside the container; the host keeps its memory."""
    limit = _limit(bed)
    grow = (
        "import sys\nblocks = []\n"
        f"for _ in range({(limit + 512 * 2**20) // 2**24}):\n"
        "    blocks.append(bytearray(2**24))\n"
        "print('grew past the limit')\n"
    )
    with PeakMemory(bed.bundle) as memory:
        result = bed.bundle.exec_run(["python3", "-c", grow])
    assert result.exit_code == 137, bytes(result.output)  # SIGKILL from the OOM killer
    assert b"grew past the limit" not in bytes(result.output)
    assert memory.peak <= limit


def test_the_bundle_runs_as_a_uid_no_host_account_holds(bed: Bed) -> None:
    import pwd

    if os.geteuid() != 0:
        pytest.skip("the engine runs the bundle as its own user when not root")
    bed.bundle.reload()
    uid = int(str(bed.bundle.attrs["Config"]["User"]).split(":")[0])
    assert uid not in {entry.pw_uid for entry in pwd.getpwall()}
    assert uid != 10001
    listing = {p.name: p.stat() for p in [bed.state_dir, *bed.state_dir.iterdir()]}
    assert all(st.st_uid == uid for st in listing.values()), listing
    assert (bed.state_dir.stat().st_mode & 0o777) == 0o700
    for name in ("bundle.json", "egress.jsonl"):
        assert (bed.state_dir / name).stat().st_mode & 0o077 == 0, name


def _gzip_bomb(inflated: int) -> bytes:
    out = io.BytesIO()
    chunk = b"\0" * (16 * 1024 * 1024)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as bomb:
        for _ in range(inflated // len(chunk)):
            bomb.write(chunk)
    return out.getvalue()


BOMB_SENDER = r"""
import http.client, sys
body = open("/tmp/bomb.gz", "rb").read()
connection = http.client.HTTPConnection(sys.argv[1], 8888, timeout=300)
try:
    connection.request("POST", sys.argv[2], body=body,
                       headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    print(connection.getresponse().status)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_decompression_bomb_through_the_proxy_stays_within_the_bundles_memory(
    bed: Bed,
) -> None:
    """1.5 GiB of zeros in about 1.5 MiB of gzip, posted by the agent to an allowed host: the
    proxy inflates bodies to look for placeholders. Whatever it does with them, the bundle's
    memory never passes its limit (the OOM killer ends a process inside it instead, and the
    bundle stops: it fails closed). Last in this module for that reason."""
    limit = _limit(bed)
    bomb = _gzip_bomb(2 * limit)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("bomb.gz")
        info.size, info.mode = len(bomb), 0o644
        tar.addfile(info, io.BytesIO(bomb))
    bed.agent.put_archive("/tmp", archive.getvalue())
    url = f"http://{bed.upstream_ip}:8000/upload"
    with PeakMemory(bed.bundle) as memory:
        result = bed.agent.exec_run(["python3", "-c", BOMB_SENDER, bed.config.bundle_ip, url])
        time.sleep(1)
    answer = bytes(result.output).decode("utf-8", "replace").strip()
    bed.bundle.reload()
    print(f"bomb: agent saw {answer!r}; bundle {bed.bundle.status}, peak {memory.peak >> 20} MiB")
    assert memory.peak <= limit, (
        f"the bundle reached {memory.peak / 2**20:.0f} MiB, past its limit of "
        f"{limit / 2**20:.0f} MiB (agent saw: {answer})"
    )
