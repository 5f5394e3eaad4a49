"""The server object: open documents' analyses, the bottles list, the engine, background work.

Features (registered in `server.py`) and commands (`commands.py`) receive it as `ls`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from bottle_engine.display import safe_editor_text
from bottle_engine.manifest import MANIFEST_NAME, read_manifest_text
from bottle_lsp import __version__
from bottle_lsp.analysis import Analysis, analyze
from bottle_lsp.bottles import BottlesCache
from bottle_lsp.diagnostics import diagnostics
from bottle_lsp.engine import Engine
from bottle_lsp.positions import to_client

T = TypeVar("T")
CHANGED = "bottle/changed"


class BottleLanguageServer(LanguageServer):
    """The server plus per-document analyses, the bottles list for lenses, and the engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        debounce_seconds: float = 0.2,
        bottles_max_age: float = 5.0,
        activity_interval: float = 3.0,
    ) -> None:
        # Whole-text sync: pygls applies a ranged change by `str.splitlines` lines, which also
        # break at U+2028, U+0085 and the like (allowed in TOML comments and strings), so its
        # copy would drift from the editor's, and Allow would edit the wrong lines.
        super().__init__(
            "bottle-lsp", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full
        )
        self.engine = engine
        self.analyses: dict[str, Analysis] = {}
        self.debounce_tasks: dict[str, asyncio.Task[None]] = {}
        self.debounce_seconds = debounce_seconds
        # How often the bottles list is read again for the Egress view and the lenses
        # (bottles also start and stop from the CLI).
        self.activity_interval = activity_interval
        self.bottles = BottlesCache(engine.list_bottles, bottles_max_age)
        self.options: dict[str, Any] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.shown_approvals: set[str] = set()
        from bottle_lsp.warm import WarmKeeper  # it names this class: imported once it exists

        self.warm = WarmKeeper(self)

    # -- documents -------------------------------------------------------------------------------
    def analysis(self, uri: str) -> Analysis:
        document = self.workspace.get_text_document(uri)
        cached = self.analyses.get(uri)
        if cached is not None and cached.text == document.source:
            return cached
        fresh = analyze(document.source, manifest_path(uri))
        self.analyses[uri] = fresh
        return fresh

    def publish(self, uri: str) -> None:
        if uri not in self.workspace.text_documents:
            return
        document = self.workspace.get_text_document(uri)
        analysis = self.analysis(uri)
        found = to_client(document, diagnostics(analysis))
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=found, version=document.version)
        )
        analysis.outline  # noqa: B018 - read now, between keystrokes, not in the next completion

    @property
    def pushes_diagnostics(self) -> bool:
        """Clients that pull diagnostics would show pushed ones twice."""
        text_document = self.client_capabilities.text_document
        return text_document is None or text_document.diagnostic is None

    def has_unsaved_changes(self, uri: str, path: Path) -> bool:
        if uri not in self.workspace.text_documents:
            return False
        try:
            return self.workspace.get_text_document(uri).source != read_manifest_text(path)
        except (OSError, UnicodeDecodeError):
            return False

    # -- background work -------------------------------------------------------------------------
    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def show_error(self, message: str) -> None:
        self.show_message(types.MessageType.Error, message)

    def show_message(self, kind: types.MessageType, message: str) -> None:
        """Every `window/showMessage` goes out here: messages quote manifest text the agent may
        have written, and VS Code makes links of `[x](command:...)` in them."""
        self.window_show_message(types.ShowMessageParams(type=kind, message=editor_lines(message)))

    # -- the bottles behind the lenses -----------------------------------------------------------
    async def refresh_lenses_if_bottles_changed(self) -> None:
        """Bottles also start and stop from the CLI; lenses catch up when they are next drawn."""
        if await self.bottles.refresh():
            self.refresh_code_lenses()

    def refresh_code_lenses(self) -> None:
        workspace = self.client_capabilities.workspace
        if workspace and workspace.code_lens and workspace.code_lens.refresh_support:
            self.workspace_code_lens_refresh(None)

    async def bottles_changed(self, slug: str, event: str) -> None:
        from bottle_lsp import activity

        await self.bottles.refresh()
        activity.hub(self).sync(self.bottles.bottles)
        if event == "launched":
            self.spawn(self.warm.keep_all())  # the launch may have used a warm member up
        self.protocol.notify(CHANGED, {"slug": slug, "event": event})
        self.refresh_code_lenses()


def editor_lines(message: str) -> str:
    """`safe_editor_text` line by line: our own messages keep their line breaks."""
    return "\n".join(safe_editor_text(line) for line in message.split("\n"))


def manifest_path(uri: str) -> Path:
    path = to_fs_path(uri)
    return Path(path) if path else Path.cwd() / MANIFEST_NAME
