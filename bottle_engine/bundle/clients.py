"""Who may use the bundle's services: the bottle's agent, and nobody else.

Every service (proxy 8888, git gate 9418, supervise 9100) listens on the bundle's internal
address only, which neither the host (the internal bridge has no host address, so no route) nor
the bundle's outbound network can reach. Each service also checks the peer of every connection
against the agent's address: that holds even where someone routes packets for the internal
address through the bundle's outbound side (a TCP handshake with the agent's address as a forged
source cannot complete: the answers go to the real agent).

Pure: the services call `client_allowed` with the peer address they see.
"""

from __future__ import annotations

import ipaddress

# The git daemon hands the allowed client to its access hook through the environment.
ALLOWED_CLIENT_ENV = "BOTTLE_ALLOWED_CLIENT"


def _canonical(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return parsed


def client_allowed(peer: str | None, allowed: str) -> bool:
    """Is `peer` (an address as a socket reports it) the one allowed client?

    An unparsable or missing peer is refused, and so is everything when `allowed` is not an
    address: the check fails closed.
    """
    if not peer:
        return False
    wanted = _canonical(allowed)
    return wanted is not None and _canonical(peer) == wanted


def refusal(service: str, peer: str | None) -> str:
    """The one line a service logs (and, where it can, answers) for a refused client."""
    return (
        f"{service}: refused a connection from {peer or 'an unknown address'}: only the agent"
        " of this bottle may use the bundle"
    )
