"""An agent holding data in TCP connections to itself, against the host's memory.

The kernel keeps what a connection sent and its peer has not read. Under cgroup v2 that memory
counts in the container's limit; under cgroup v1 it counts in none (Docker's KernelMemoryTCP
is ignored by runc 1.1), and every container shares the host's `net.ipv4.tcp_mem`, at which TCP
stalls for every program on the host. Real parts: a container on the daemon with no network
but its loopback and a small memory limit, sending to itself without reading. `doctor` must
say which of the two this host is.
"""

from __future__ import annotations

import json
from typing import Any

from bottle_engine import doctor
from bottle_engine.limits import MIB

LIMIT = 48 * MIB

# Sends on loopback connections whose peers never read, until `target` bytes are queued or
# `cap` connections are open (a send that would block moves on to a new connection).
HOLDER = """
import json, socket, sys
target, cap = int(sys.argv[1]), int(sys.argv[2])
listener = socket.create_server(("127.0.0.1", 0), backlog=cap)
held, queued, chunk = [], 0, b"x" * 65536
while queued < target and len(held) < cap:
    sender = socket.create_connection(listener.getsockname())
    held.append((sender, listener.accept()[0]))
    sender.setblocking(False)
    while queued < target:
        try:
            queued += sender.send(chunk)
        except BlockingIOError:
            break
print(json.dumps({"queued": queued}), flush=True)
"""


def queued_in_connections(client: Any, image: str, target: int) -> int:
    """What a container limited to `LIMIT` queued in its own connections; 0 when its limit
    ended it first."""
    container = client.containers.run(
        image,
        entrypoint=["python3", "-c", HOLDER, str(target), "400"],
        network_mode="none",
        mem_limit=LIMIT,
        memswap_limit=LIMIT,
        user="65534:65534",
        detach=True,
    )
    try:
        container.wait(timeout=120)
        lines = container.logs(stderr=False).decode().splitlines()
    finally:
        container.remove(force=True)
    return int(json.loads(lines[-1])["queued"]) if lines else 0


def test_doctor_says_whether_an_agent_can_hold_host_memory_in_its_connections(
    docker_client: Any, bundle_image: str
) -> None:
    queued = queued_in_connections(docker_client, bundle_image, 3 * LIMIT)

    check = doctor.check_socket_memory()
    assert (queued > LIMIT) == (not check.ok), (queued, check)
    if not check.ok:
        assert "net.ipv4.tcp_mem" in check.detail and check.fix and "cgroup v2" in check.fix
