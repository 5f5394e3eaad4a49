"""Helpers shared by the git gate and supervise integration tests (no tests in here).

On loopback, both services are started the way the bundle starts them, ``python -m <module>``,
as subprocesses; every process is stopped in a ``finally``. In containers, a bundle and an agent
are started on networks the test creates, and removed with them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottle_engine.bundle.config import BundleConfig, GitUpstreamConfig, SecretBinding
from tests.bundle_helpers import TEST_LABELS, _force_remove, free_port, pick_subnet, wait_for_port


def write_config(path: Path, config: BundleConfig) -> Path:
    path.write_text(config.to_json())
    return path


@contextmanager
def service(
    module: str, args: Sequence[str], port: int, log: Path, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m module args`` until the block ends; ready once `port` accepts."""
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process, timeout, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def loopback_gate_config(
    tmp_path: Path, slug: str, origin: GitUpstreamConfig, secrets: tuple[SecretBinding, ...] = ()
) -> BundleConfig:
    """The config of a gate on loopback (see gate_on_loopback) with the one upstream `origin`,
    the bottle's `secrets` (what the gate scans pushes for) and its state in tmp_path/state."""
    return BundleConfig(
        slug=slug,
        bundle_ip="127.0.0.1",
        agent_subnet="127.0.0.0/8",
        secrets=secrets,
        git=(origin,),
        state_dir=str(tmp_path / "state"),
    )


@contextmanager
def gate_on_loopback(
    tmp_path: Path, config: BundleConfig, *extra_args: str
) -> Iterator[tuple[int, Path]]:
    """The git gate for `config` on a loopback port, and the agent's clone of its `origin`
    (in tmp_path/agent): (port, clone)."""
    port = free_port()
    args = ["--config", str(write_config(tmp_path / "bundle.json", config))]
    args += ["--listen", "127.0.0.1", "--port", str(port), "--repos-dir", str(tmp_path / "gate")]
    args += ["--allowed-client", "127.0.0.1"]  # the agent's clone runs on loopback
    with service("bottle_engine.bundle.gitgate", [*args, *extra_args], port, tmp_path / "gate.log"):
        agent = tmp_path / "agent"
        subprocess.run(
            ["git", "clone", "-q", f"git://127.0.0.1:{port}/origin", str(agent)],
            check=True,
            capture_output=True,
        )
        yield port, agent


@dataclass
class BottleNetworks:
    """A bottle's two networks, made by a test: internal (agent side) and egress (outside)."""

    run_id: str
    subnet: ipaddress.IPv4Network
    internal: str
    egress: str


@contextmanager
def bottle_networks(client: Any) -> Iterator[BottleNetworks]:
    from bottle_engine.dockerapi.networks import (
        create_egress_network,
        create_internal_network,
        remove_network,
    )

    run_id = uuid.uuid4().hex[:10]
    with ExitStack() as stack:
        subnet = pick_subnet(client)
        internal, egress = f"bb-test-{run_id}-int", f"bb-test-{run_id}-out"
        create_internal_network(client, internal, subnet, str(subnet[1]), TEST_LABELS)
        stack.callback(remove_network, client, internal)
        create_egress_network(client, egress, TEST_LABELS)
        stack.callback(remove_network, client, egress)
        yield BottleNetworks(run_id, subnet, internal, egress)


def start_bundle_and_agent(
    stack: ExitStack,
    client: Any,
    image: str,
    networks: BottleNetworks,
    config: BundleConfig,
    state_dir: Path,
    readonly_files: dict[str, Path] | None = None,
    secret_files: dict[str, Path] | None = None,
) -> tuple[Any, Any]:
    """The bundle (ready) and an agent container on the internal network only; `stack` removes
    both. The agent runs the bundle image, which has git and the MCP SDK. As in a bottle, the
    agent's address is the subnet's .3 (unless `config` names one): the only client the bundle
    answers."""
    from bottle_engine.dockerapi.bundle_container import run_bundle_container, wait_bundle_ready

    config = dataclasses.replace(config, agent_ip=config.agent_ip or str(networks.subnet[3]))
    bundle = run_bundle_container(
        client,
        name=f"bb-test-{networks.run_id}-bundle",
        image=image,
        config=config,
        state_dir=state_dir,
        secret_files=secret_files or {},
        internal_network=networks.internal,
        bundle_ip=config.bundle_ip,
        egress_network=networks.egress,
        labels=TEST_LABELS,
        readonly_files=readonly_files,
    )
    stack.callback(_force_remove, bundle)
    agent = client.containers.run(
        image,
        ["sleep", "infinity"],
        entrypoint=[],
        name=f"bb-test-{networks.run_id}-agent",
        network=networks.internal,
        networking_config={
            networks.internal: client.api.create_endpoint_config(ipv4_address=config.agent_ip)
        },
        labels=TEST_LABELS,
        detach=True,
    )
    stack.callback(_force_remove, agent)
    wait_bundle_ready(bundle, config, 180, state_dir=state_dir)
    return bundle, agent
