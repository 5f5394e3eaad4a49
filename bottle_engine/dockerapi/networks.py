"""Bottle networks on the daemon: the internal one the agent lives on, and the bundle's way out."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from typing import Any

import docker.errors
import docker.types

from bottle_engine.dockerapi.client import LABEL_MANAGED, docker_errors, with_label
from bottle_engine.errors import BottleError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkNameTaken(BottleError):
    """A network of that name exists (another launch may have just made it)."""


class SubnetTaken(BottleError):
    """Another network holds the subnet, or one overlapping it."""


@contextlib.contextmanager
def _conflicts(name: str, subnet: str | None = None) -> Iterator[None]:
    """Translate the daemon's refusals of a network's name or subnet into their own types, so
    that a launch that lost a race moves on to the next candidate and matches no text."""
    try:
        yield
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # the daemon's "network with name ... already exists"
            raise NetworkNameTaken(
                f"network {name} exists", fix=f"`docker network rm {name}` if it is a leftover"
            ) from exc
        # No status of its own (403 "Pool overlaps ..." today, once a 500 naming a "conflict"
        # of pools): the one place the daemon's words are read.
        text = str(exc.explanation or exc).lower()
        if subnet is not None and ("overlap" in text or ("pool" in text and "conflict" in text)):
            raise SubnetTaken(
                f"subnet {subnet} of network {name} is taken by another network",
                fix="`docker network ls` shows the networks; launch again to take another one",
            ) from exc
        raise


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
    with docker_errors(f"create network {name} ({subnet})"), _conflicts(name, str(subnet)):
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
    with docker_errors(f"create network {name}"), _conflicts(name):
        return client.networks.create(
            name, driver="bridge", labels={**labels, LABEL_MANAGED: "1"}, check_duplicate=True
        )


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
    return with_label(client.networks, label, value, "list Docker networks")
