"""`bottle-lsp`: registers the LSP features; each one adapts LSP types to a pure function.

The pure functions live in `diagnostics`, `completion`, `hover`, `navigation`, `symbols`,
`actions` and `lenses` and take an `Analysis` (one per document version). The commands live in
`commands`, the approvals poller in `approvals`, the bottles list behind the lenses in
`bottles`. `create_server(engine)` builds a server around an `Engine`: `bottle-lsp` passes the
real one, tests a stand-in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from lsprotocol import types
from pygls.workspace import TextDocument

from bottle_engine.manifest.source import Position
from bottle_lsp import activity, commands
from bottle_lsp.actions import code_actions
from bottle_lsp.analysis import Analysis
from bottle_lsp.approvals import poll_approvals
from bottle_lsp.completion import completions
from bottle_lsp.diagnostics import SOURCE, diagnostics
from bottle_lsp.engine import Engine
from bottle_lsp.formatting import formatting_edits
from bottle_lsp.hover import hover
from bottle_lsp.language_server import BottleLanguageServer, manifest_path
from bottle_lsp.lenses import code_lenses
from bottle_lsp.navigation import definition, prepare_rename, references, rename
from bottle_lsp.positions import range_to_server, to_client, to_server
from bottle_lsp.symbols import document_symbols, folding_ranges
from bottle_lsp.trust import offer_trust

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_FEATURES: list[tuple[str, Any, Callable[..., Any]]] = []


def feature(
    name: str, options: Any = None, *, on_error: Callable[[], Any] | None = None
) -> Callable[[F], F]:
    """Register the handler on every server `create_server` builds (pygls registers features
    on a server object; the engine a server holds is only known when it is built).

    A request given `on_error` answers `on_error()` and logs when its handler fails: an editor
    shows a failed request as an error, and a half-typed manifest is no error of the person's."""

    def register(handler: F) -> F:
        registered = handler if on_error is None else _guarded(handler, on_error)
        _FEATURES.append((name, options, registered))
        return registered

    return register


def _guarded(handler: F, on_error: Callable[[], Any]) -> F:
    @functools.wraps(handler)
    def run(ls: BottleLanguageServer, params: Any) -> Any:
        try:
            return handler(ls, params)
        except Exception:
            logger.exception("%s failed", handler.__name__)
            return on_error()

    return cast(F, run)


def create_server(
    engine: Engine,
    *,
    debounce_seconds: float = 0.2,
    bottles_max_age: float = 5.0,
    activity_interval: float = 3.0,
) -> BottleLanguageServer:
    """A server with every feature and command, calling `engine` for bottles and approvals.

    `debounce_seconds`: how long typing must pause before diagnostics are pushed;
    `bottles_max_age`: how old the bottles list behind the lenses may be before a re-read;
    `activity_interval`: how often the bottles are read again for the Egress view."""
    server = BottleLanguageServer(
        engine,
        debounce_seconds=debounce_seconds,
        bottles_max_age=bottles_max_age,
        activity_interval=activity_interval,
    )
    for name, options, handler in _FEATURES:
        server.feature(name, options)(handler)
    for command in commands.COMMANDS:
        server.command(command.name)(command.handler())
    return server


class DocumentParams(Protocol):
    """What every document request's params have (lsprotocol gives them no common base)."""

    @property
    def text_document(self) -> types.TextDocumentIdentifier: ...


class PositionParams(DocumentParams, Protocol):
    @property
    def position(self) -> types.Position: ...


def in_document(
    ls: BottleLanguageServer, params: DocumentParams
) -> tuple[str, TextDocument, Analysis]:
    """The URI, document and analysis a request is about."""
    uri = params.text_document.uri
    return uri, ls.workspace.get_text_document(uri), ls.analysis(uri)


def at_cursor(
    ls: BottleLanguageServer, params: PositionParams
) -> tuple[str, TextDocument, Analysis, Position]:
    """The URI, document, analysis and (engine) position a positional request is about."""
    uri, document, analysis = in_document(ls, params)
    return uri, document, analysis, to_server(document, params.position)


# -- lifecycle ------------------------------------------------------------------------------------


@feature(types.INITIALIZE)
def initialize(ls: BottleLanguageServer, params: types.InitializeParams) -> None:
    options = params.initialization_options
    ls.options = options if isinstance(options, dict) else {}


@feature(types.INITIALIZED)
async def initialized(ls: BottleLanguageServer, params: types.InitializedParams) -> None:
    ls.spawn(ls.refresh_lenses_if_bottles_changed())
    ls.spawn(activity.watch(ls))
    approvals = ls.options.get("approvals", {})
    approvals = approvals if isinstance(approvals, dict) else {}
    if approvals.get("poll", True):
        ls.spawn(poll_approvals(ls, float(approvals.get("interval", 2.0))))


@feature(types.SHUTDOWN)
async def shutdown(ls: BottleLanguageServer, params: None) -> None:
    """Warm gateways this server made and no launch took go with it."""
    await ls.warm.release()


# -- diagnostics ----------------------------------------------------------------------------------


@feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: BottleLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    if ls.pushes_diagnostics:
        ls.publish(params.text_document.uri)
    ls.spawn(offer_trust(ls, manifest_path(params.text_document.uri)))
    ls.spawn(ls.warm.keep(params.text_document.uri))


@feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: BottleLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    if not ls.pushes_diagnostics:
        return
    uri = params.text_document.uri
    previous = ls.debounce_tasks.pop(uri, None)
    if previous is not None:
        previous.cancel()

    async def later() -> None:
        await asyncio.sleep(ls.debounce_seconds)
        ls.debounce_tasks.pop(uri, None)
        ls.publish(uri)

    ls.debounce_tasks[uri] = asyncio.ensure_future(later())


@feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: BottleLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)  # files next to it (prompt_file, Dockerfile) may have changed
    if ls.pushes_diagnostics:
        ls.publish(uri)
    ls.refresh_code_lenses()  # the saved file decides between Launch and Review changes
    ls.spawn(ls.warm.keep(uri))  # a changed bottle may want another kind of warm gateway


@feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def watched_files_changed(
    ls: BottleLanguageServer, params: types.DidChangeWatchedFilesParams
) -> None:
    """A prompt file, Dockerfile or identity appeared or went: re-check every open manifest."""
    ls.analyses.clear()
    if ls.pushes_diagnostics:
        for uri in list(ls.workspace.text_documents):
            ls.publish(uri)


@feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: BottleLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.spawn(ls.warm.release(uri))
    ls.analyses.pop(uri, None)
    task = ls.debounce_tasks.pop(uri, None)
    if task is not None:
        task.cancel()
    if ls.pushes_diagnostics:
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )


@feature(
    types.TEXT_DOCUMENT_DIAGNOSTIC,
    types.DiagnosticOptions(
        identifier=SOURCE, inter_file_dependencies=True, workspace_diagnostics=False
    ),
    on_error=lambda: types.RelatedFullDocumentDiagnosticReport(items=[]),
)
def pull_diagnostics(
    ls: BottleLanguageServer, params: types.DocumentDiagnosticParams
) -> types.RelatedFullDocumentDiagnosticReport:
    _, document, analysis = in_document(ls, params)
    return types.RelatedFullDocumentDiagnosticReport(
        items=to_client(document, diagnostics(analysis))
    )


# -- editing help ---------------------------------------------------------------------------------


@feature(
    types.TEXT_DOCUMENT_COMPLETION,
    types.CompletionOptions(trigger_characters=[".", "[", '"', "="]),
    on_error=lambda: types.CompletionList(is_incomplete=False, items=[]),
)
def completion(ls: BottleLanguageServer, params: types.CompletionParams) -> types.CompletionList:
    _, document, analysis, position = at_cursor(ls, params)
    items = completions(analysis, position)
    return types.CompletionList(is_incomplete=False, items=to_client(document, items))


@feature(types.TEXT_DOCUMENT_HOVER, on_error=lambda: None)
def hover_feature(ls: BottleLanguageServer, params: types.HoverParams) -> types.Hover | None:
    _, document, analysis, position = at_cursor(ls, params)
    return to_client(document, hover(analysis, position))


@feature(types.TEXT_DOCUMENT_DEFINITION, on_error=lambda: None)
def definition_feature(
    ls: BottleLanguageServer, params: types.DefinitionParams
) -> types.Location | None:
    uri, document, analysis, position = at_cursor(ls, params)
    found = definition(analysis, uri, position)
    return to_client(document, found) if found is not None and found.uri == uri else found


@feature(types.TEXT_DOCUMENT_REFERENCES, on_error=list)
def references_feature(
    ls: BottleLanguageServer, params: types.ReferenceParams
) -> list[types.Location]:
    uri, document, analysis, position = at_cursor(ls, params)
    found = references(analysis, uri, position, params.context.include_declaration)
    return to_client(document, found)


@feature(types.TEXT_DOCUMENT_PREPARE_RENAME, on_error=lambda: None)
def prepare_rename_feature(
    ls: BottleLanguageServer, params: types.PrepareRenameParams
) -> types.Range | None:
    _, document, analysis, position = at_cursor(ls, params)
    return to_client(document, prepare_rename(analysis, position))


@feature(
    types.TEXT_DOCUMENT_RENAME, types.RenameOptions(prepare_provider=True), on_error=lambda: None
)
def rename_feature(
    ls: BottleLanguageServer, params: types.RenameParams
) -> types.WorkspaceEdit | None:
    uri, document, analysis, position = at_cursor(ls, params)
    found = rename(analysis, uri, position, params.new_name)
    return to_client(document, found)


@feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL, on_error=list)
def symbols_feature(
    ls: BottleLanguageServer, params: types.DocumentSymbolParams
) -> list[types.DocumentSymbol]:
    _, document, analysis = in_document(ls, params)
    return to_client(document, document_symbols(analysis))


@feature(types.TEXT_DOCUMENT_FOLDING_RANGE, on_error=list)
def folding_feature(
    ls: BottleLanguageServer, params: types.FoldingRangeParams
) -> list[types.FoldingRange]:
    return folding_ranges(ls.analysis(params.text_document.uri).outline)


@feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    on_error=list,
)
def code_action_feature(
    ls: BottleLanguageServer, params: types.CodeActionParams
) -> list[types.CodeAction]:
    uri, document, analysis = in_document(ls, params)
    selection = range_to_server(document, params.range)
    reported = [
        (str(d.code), range_to_server(document, d.range))
        for d in params.context.diagnostics
        if d.source == SOURCE
    ]
    return to_client(document, code_actions(analysis, uri, selection, reported))


@feature(types.TEXT_DOCUMENT_FORMATTING, on_error=list)
def formatting_feature(
    ls: BottleLanguageServer, params: types.DocumentFormattingParams
) -> list[types.TextEdit]:
    document = ls.workspace.get_text_document(params.text_document.uri)
    return to_client(document, formatting_edits(document.source))


@feature(types.TEXT_DOCUMENT_CODE_LENS, on_error=list)
def code_lens_feature(
    ls: BottleLanguageServer, params: types.CodeLensParams
) -> list[types.CodeLens]:
    uri, document, analysis = in_document(ls, params)
    if ls.bottles.claim_stale():
        ls.spawn(ls.refresh_lenses_if_bottles_changed())
    state = ls.engine.trust_state(analysis.path)  # the saved file: what a launch would use
    needs_trust = state is not None and state.needs_trust
    found = code_lenses(
        analysis.outline, uri, analysis.path, ls.bottles.bottles, needs_trust=needs_trust
    )
    return to_client(document, found)
