"""The rules that size a bottle's share of the host (bottle_engine/limits.py), what `doctor`
says of the shares this host cannot bound, and who may use the bundle's services
(bottle_engine/bundle/clients.py)."""

from __future__ import annotations

import pytest

from bottle_engine import doctor
from bottle_engine.bundle.clients import client_allowed
from bottle_engine.dockerapi.client import bounded_log_config
from bottle_engine.limits import (
    CONTAINER_LOG_BYTES,
    GIB,
    MIB,
    agent_disk,
    bundle_limits,
    container_log_options,
    tmpfs_options,
)


@pytest.mark.parametrize(
    ("agent_memory", "bundle_memory"),
    [
        (0, 768 * MIB),
        (512 * MIB, 768 * MIB),  # small bottles still get a bundle that runs
        (4 * GIB, 1 * GIB),  # the default bottle: a quarter
        (6 * GIB, 1536 * MIB),
        (64 * GIB, 2 * GIB),  # a big bottle's bundle stays bounded
    ],
)
def test_bundle_memory_is_a_quarter_of_the_agents_within_bounds(
    agent_memory: int, bundle_memory: int
) -> None:
    assert bundle_limits(agent_memory).memory_bytes == bundle_memory


def test_bundle_cpu_pids_and_tmp_are_fixed_and_tmp_fits_in_memory() -> None:
    limits = bundle_limits(4 * GIB)
    assert (limits.nano_cpus, limits.pids) == (1_000_000_000, 512)
    assert limits.tmp_bytes < limits.memory_bytes


def test_agent_tmp_is_half_its_memory_and_the_layer_bounded_only_where_possible() -> None:
    assert agent_disk(4 * GIB, layer_bounded=False).tmp_bytes == 2 * GIB
    assert agent_disk(4 * GIB, layer_bounded=False).layer_bytes is None
    assert agent_disk(4 * GIB, layer_bounded=True).layer_bytes == 20 * GIB


def test_tmpfs_options_are_sized_private_and_without_devices_or_setuid() -> None:
    options = tmpfs_options(256 * MIB, executable=False).split(",")
    assert {"rw", "noexec", "nosuid", "nodev", f"size={256 * MIB}", "mode=1777"} == set(options)


def test_container_logs_are_json_file_rotated_within_the_bound() -> None:
    options = container_log_options()
    assert int(options["max-size"]) * int(options["max-file"]) == CONTAINER_LOG_BYTES
    assert CONTAINER_LOG_BYTES <= 32 * MIB
    # json-file whatever the daemon's default: `docker logs` and the replay read only a few.
    assert bounded_log_config()["Type"] == "json-file"
    assert bounded_log_config()["Config"] == options


@pytest.mark.parametrize(
    ("peer", "allowed", "expected"),
    [
        ("10.243.0.3", "10.243.0.3", True),
        ("::ffff:10.243.0.3", "10.243.0.3", True),  # a dual-stack socket's view of the agent
        ("10.243.0.4", "10.243.0.3", False),  # a neighbour on the same subnet
        ("10.243.0.2", "10.243.0.3", False),  # the bundle itself
        ("172.18.0.5", "10.243.0.3", False),  # the outbound network
        ("127.0.0.1", "10.243.0.3", False),
        ("", "10.243.0.3", False),
        (None, "10.243.0.3", False),
        ("not an address", "10.243.0.3", False),
        ("10.243.0.3", "", False),  # nobody allowed: fail closed
        ("10.243.0.3", "garbage", False),
    ],
)
def test_only_the_agents_address_is_a_client(
    peer: str | None, allowed: str, expected: bool
) -> None:
    assert client_allowed(peer, allowed) is expected


class DaemonWithCgroup:
    """A `Host` whose daemon reports `version` as its cgroup version."""

    def __init__(self, version: str) -> None:
        self.version = version

    def info(self) -> dict[str, str]:
        return {"CgroupVersion": self.version}


@pytest.mark.parametrize(("version", "counted"), [("1", False), ("2", True)])
def test_doctor_says_whether_connections_count_in_a_bottles_memory(
    monkeypatch: pytest.MonkeyPatch, version: str, counted: bool
) -> None:
    monkeypatch.setattr(doctor, "Host", lambda: DaemonWithCgroup(version))

    check = doctor.check_socket_memory()

    assert (check.ok, check.required) == (counted, False)
    assert f"cgroup v{version}" in check.detail
    assert (check.fix is None) == counted
