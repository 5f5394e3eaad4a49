"""The proxy's door: connections from anyone but the agent are closed before a byte is read.

A mitmproxy addon (runs in the proxy venv); the decision is `clients.client_allowed`.
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
