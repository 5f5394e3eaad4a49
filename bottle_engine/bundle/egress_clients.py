"""The proxy's door: connections from anyone but the agent are closed before a byte is read,
and so is the agent's connection past `MAX_CLIENT_CONNECTIONS` open at once.

mitmproxy addons (run in the proxy venv); the first decision is `clients.client_allowed`.
"""

from __future__ import annotations

import logging

from mitmproxy import connection

from bottle_engine.bundle.clients import client_allowed, refusal

logger = logging.getLogger(__name__)


class OnlyTheAgent:
    """Kills every client connection whose peer is not the agent's address."""

    def __init__(self, agent_address: str) -> None:
        self.agent_address = agent_address

    def client_connected(self, client: connection.Client) -> None:
        peer = client.peername[0] if client.peername else None
        if not client_allowed(str(peer) if peer is not None else None, self.agent_address):
            # Setting `error` makes mitmproxy close the connection before any layer runs.
            client.error = refusal("egress proxy", str(peer) if peer is not None else None)
            logger.warning(client.error)


# Connections the agent may hold open at once. Each may buffer up to a request head's bound
# (egress_guards.MAX_REQUEST_HEAD) before it is refused; 800 connections holding 60 KiB each
# took the proxy from 74 to 181 MiB. Package managers and browsers use tens.
MAX_CLIENT_CONNECTIONS = 256


class ConnectionCap:
    """Closes a client connection when `limit` are open already (counted from the agent's
    accepted ones; a refused one never counts)."""

    def __init__(self, limit: int = MAX_CLIENT_CONNECTIONS) -> None:
        self.limit = limit
        self.open: set[str] = set()
        self.refusing = False  # log once per burst, not once per connection (the agent's flood)

    def client_connected(self, client: connection.Client) -> None:
        if client.error:
            return  # closed by the door already
        if len(self.open) >= self.limit:
            client.error = (
                f"egress proxy: {self.limit} connections from the agent are open already "
                "(MAX_CLIENT_CONNECTIONS); close some before opening more"
            )
            if not self.refusing:
                logger.warning(client.error)
            self.refusing = True
            return
        self.refusing = False
        self.open.add(client.id)

    def client_disconnected(self, client: connection.Client) -> None:
        self.open.discard(client.id)
