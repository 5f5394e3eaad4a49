"""Bottle networks on the daemon: the internal one the agent lives on, and the bundle's way out."""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

import docker.errors
import docker.types

from bottle_engine.dockerapi.client import LABEL_MANAGED, docker_errors

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def subnets_in_use(client: Any) -> list[IPNetwork]:
    """Every subnet of every network the daemon knows, so new bottles can avoid them."""
    found: list[IPNetwork] = []
    with docker_errors("list Docker networks"):
        networks = client.api.networks()
    for network in networks:
        for pool in (network.get("IPAM") or {}).get("Config") or []:
            subnet = pool.get("Subnet")
            if subnet:
                try:
                    found.append(ipaddress.ip_network(subnet, strict=False))
                except ValueError:
                    continue
    return found


def create_internal_network(
    client: Any, name: str, subnet: ipaddress.IPv4Network, gateway: str, labels: dict[str, str]
) -> Any:
    """An `internal` bridge with no route out, and no host address on it either.

    `inhibit_ipv4` keeps the gateway address off the host's bridge, so the agent cannot reach
    services the host exposes on its other addresses through the gateway.
    """
    ipam = docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=gateway)]
    )
    with docker_errors(f"create network {name} ({subnet})"):
        return client.networks.create(
            name,
            driver="bridge",
            internal=True,
            ipam=ipam,
            labels={**labels, LABEL_MANAGED: "1"},
            options={
                "com.docker.network.bridge.inhibit_ipv4": "true",
                "com.docker.network.bridge.enable_icc": "true",
            },
            check_duplicate=True,
        )


def create_egress_network(client: Any, name: str, labels: dict[str, str]) -> Any:
    """A plain bridge with outbound access, joined only by the bundle."""
    with docker_errors(f"create network {name}"):
        return client.networks.create(
            name, driver="bridge", labels={**labels, LABEL_MANAGED: "1"}, check_duplicate=True
        )


def is_subnet_conflict(exc: BaseException) -> bool:
    """Did network creation fail because another network took the subnet meanwhile?"""
    text = str(exc).lower()
    return "overlap" in text or ("pool" in text and "conflict" in text)


def remove_network(client: Any, name_or_id: str) -> None:
    """Remove a network, disconnecting anything still on it; absent is fine."""
    try:
        network = client.networks.get(name_or_id)
    except docker.errors.NotFound:
        return
    with docker_errors(f"remove network {name_or_id}"):
        network.reload()
        for container in network.containers:
            with contextlib.suppress(docker.errors.APIError):
                network.disconnect(container, force=True)
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()


def network_exists(client: Any, name: str) -> bool:
    try:
        client.networks.get(name)
    except docker.errors.NotFound:
        return False
    return True


def networks_with_label(client: Any, label: str, value: str | None = None) -> list[Any]:
    selector = f"{label}={value}" if value is not None else label
    with docker_errors("list Docker networks"):
        return list(client.networks.list(filters={"label": selector}))
