"""A warm gateway kept ready while a manifest is open (`pool.keepWarm`, off by default).

With the option on, opening or saving a manifest asks the engine for one warm pool member per
bottle its agents run in (`Engine.keep_warm`: only what is missing is made), so a launch from
the editor starts only its agent. A launch uses the member up; the next launch's refill makes
another. Closing the manifest, or the editor shutting the server down, removes the members this
server made that no launch took. Making a member builds the bottle's images when they are not
cached yet and starts a bundle container: that is why it is off by default, and why it acts
only for a manifest already trusted as it is saved (trust_store: launched or trusted before,
not widened since). Opening a bottle.toml someone else wrote (a cloned repository, an agent's
change) never builds its Dockerfile; trusting it, or launching it, does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bottle_lsp.language_server import manifest_path

if TYPE_CHECKING:
    from bottle_lsp.language_server import BottleLanguageServer

logger = logging.getLogger(__name__)


class WarmKeeper:
    """The warm members one server made, per manifest URI.

    Fills and releases take turns (`_turn`): a fill still running when its manifest closes
    would otherwise record its members after the release had looked, and leave running bundle
    containers nobody removes. Taking turns also keeps two fills from both finding a member
    missing and making two."""

    def __init__(self, ls: BottleLanguageServer) -> None:
        self.ls = ls
        self.made: dict[str, list[str]] = {}
        self._turn = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        options = self.ls.options.get("pool")
        return isinstance(options, dict) and options.get("keepWarm") is True

    async def keep(self, uri: str) -> None:
        """One warm member per bottle of the manifest's agents, made when missing; only for a
        manifest trusted as it is saved (making a member builds what the manifest names)."""
        async with self._turn:
            await self._keep(uri)

    async def _keep(self, uri: str) -> None:
        if not self.enabled or uri not in self.ls.workspace.text_documents:
            return  # off, or closed before its turn came
        path = manifest_path(uri)
        state = await self.ls.in_thread(self.ls.engine.trust_state, path)
        if state is None or state.first_use or state.needs_trust:
            return  # never launched from here, or widened since: a person decides first
        agents = self.ls.analysis(uri).names("agents")
        try:
            made = await self.ls.in_thread(self.ls.engine.keep_warm, path, agents)
        except Exception:  # a daemon that is down, a build that fails: the launch says why
            logger.warning("keeping a warm gateway for %s failed", uri, exc_info=True)
            return
        self.made.setdefault(uri, []).extend(made)

    async def keep_all(self) -> None:
        """After a launch (which may have used a member up): refill for every open manifest."""
        for uri in list(self.ls.workspace.text_documents):
            await self.keep(uri)

    async def release(self, uri: str | None = None) -> None:
        """Remove what was made for `uri` (every manifest: None) that no launch took."""
        async with self._turn:
            await self._release(uri)

    async def _release(self, uri: str | None) -> None:
        uris = [uri] if uri is not None else list(self.made)
        ids = [member for u in uris for member in self.made.pop(u, [])]
        if not ids:
            return
        try:
            await self.ls.in_thread(self.ls.engine.release_warm, ids)
        except Exception:
            logger.warning("removing warm gateways %s failed", ids, exc_info=True)
