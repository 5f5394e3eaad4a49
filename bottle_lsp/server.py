"""`bottle-lsp`: registers the LSP features; each one adapts LSP types to a pure function.

The pure functions live in `diagnostics`, `completion`, `hover`, `navigation`, `symbols`,
`actions` and `lenses` and take an `Analysis` (one per document version). Commands and the
approvals poller call the engine only through `bottle_lsp.engine`, in worker threads, and turn
every failure into a `window/showMessage` instead of an exception.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import attrs
from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from bottle_engine.display import safe_editor_text
from bottle_engine.errors import BottleError
from bottle_engine.manifest import MANIFEST_NAME
from bottle_engine.manifest.source import Position
from bottle_lsp import __version__, activity, engine
from bottle_lsp.actions import code_actions
from bottle_lsp.analysis import Analysis, analyze
from bottle_lsp.completion import completions
from bottle_lsp.diagnostics import SOURCE, diagnostics
from bottle_lsp.formatting import formatting_edits
from bottle_lsp.hover import hover
from bottle_lsp.lenses import ATTACH, LAUNCH, STOP, TRUST, code_lenses
from bottle_lsp.navigation import definition, prepare_rename, references, rename
from bottle_lsp.symbols import document_symbols, folding_ranges

logger = logging.getLogger(__name__)

LIST, LOGS, AGENTS = "bottle.list", "bottle.logs", "bottle.agents"
TRUST_REVIEW = "bottle.trustReview"
CHANGED = "bottle/changed"
# Seconds a bottles list may be shown in lenses before it is re-read.
BOTTLES_MAX_AGE = float(os.environ.get("BOTTLE_LSP_BOTTLES_MAX_AGE", "5"))
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class BottleLanguageServer(LanguageServer):
    """The server plus per-document analyses, the bottles list for lenses, and the poller."""

    def __init__(self) -> None:
        super().__init__("bottle-lsp", __version__)
        self.analyses: dict[str, Analysis] = {}
        self.debounce_tasks: dict[str, asyncio.Task[None]] = {}
        self.debounce_seconds = float(os.environ.get("BOTTLE_LSP_DEBOUNCE", "0.2"))
        self.bottles: list[dict[str, str]] = []
        self.bottles_read_at = float("-inf")  # monotonic time of the last list_bottles()
        self.bottles_reads_started = 0  # serial of the newest list_bottles() begun
        self.bottles_read_shown = 0  # serial of the read `bottles` holds
        self.options: dict[str, Any] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.shown_approvals: set[str] = set()

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

    async def refresh_bottles(self) -> bool:
        """Re-read the engine's bottles; True when the list changed.

        Reads overlap (a lens request's re-read and a launch's), and one begun before a bottle
        started can finish after one begun later: it is dropped, or the lenses would lose the
        new bottle until something else asked for them again."""
        self.bottles_reads_started += 1
        serial = self.bottles_reads_started
        try:
            current = await self.in_thread(engine.list_bottles)
        except BottleError:
            current = []
        except Exception:
            logger.exception("listing bottles failed")
            current = []
        if serial < self.bottles_read_shown:
            return False
        self.bottles_read_shown = serial
        changed = current != self.bottles
        self.bottles = current
        self.bottles_read_at = time.monotonic()
        return changed

    async def refresh_lenses_if_bottles_changed(self) -> None:
        """Bottles also start and stop from the CLI; lenses catch up when they are next drawn."""
        if await self.refresh_bottles():
            self.refresh_code_lenses()

    def refresh_code_lenses(self) -> None:
        workspace = self.client_capabilities.workspace
        if workspace and workspace.code_lens and workspace.code_lens.refresh_support:
            self.workspace_code_lens_refresh(None)

    async def bottles_changed(self, slug: str, event: str) -> None:
        await self.refresh_bottles()
        activity.hub(self).sync(self.bottles)
        self.protocol.notify(CHANGED, {"slug": slug, "event": event})
        self.refresh_code_lenses()


server = BottleLanguageServer()


def editor_lines(message: str) -> str:
    """`safe_editor_text` line by line: our own messages keep their line breaks."""
    return "\n".join(safe_editor_text(line) for line in message.split("\n"))


def manifest_path(uri: str) -> Path:
    path = to_fs_path(uri)
    return Path(path) if path else Path.cwd() / MANIFEST_NAME


def to_server(document: TextDocument, position: types.Position) -> Position:
    """A client position (UTF-16 by default) as the code-point position the engine uses."""
    converted = document.position_codec.position_from_client_units(document.lines, position)
    return Position(converted.line, converted.character)


def to_client(document: TextDocument, result: T) -> T:
    """Every range in `result` (engine code points) in the client's position encoding."""
    if document.source.isascii():
        return result
    lines = document.lines

    def convert(value: Any) -> Any:
        if isinstance(value, types.Range):
            return document.position_codec.range_to_client_units(lines, value)
        if isinstance(value, list):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if attrs.has(type(value)):
            changes = {f.name: convert(getattr(value, f.name)) for f in attrs.fields(type(value))}
            return attrs.evolve(value, **{k.lstrip("_"): v for k, v in changes.items()})
        return value

    converted: T = convert(result)
    return converted


class PositionParams(Protocol):
    """What every positional request's params have (lsprotocol gives them no common base)."""

    @property
    def text_document(self) -> types.TextDocumentIdentifier: ...

    @property
    def position(self) -> types.Position: ...


def at_cursor(
    ls: BottleLanguageServer, params: PositionParams
) -> tuple[str, TextDocument, Analysis, Position]:
    """The URI, document, analysis and (engine) position a positional request is about."""
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    return uri, document, ls.analysis(uri), to_server(document, params.position)


def guarded(default: Callable[[], Any]) -> Callable[[F], F]:
    """A feature that fails answers `default()` and logs, instead of failing the request."""

    def wrap(handler: F) -> F:
        @functools.wraps(handler)
        def run(ls: BottleLanguageServer, params: Any) -> Any:
            try:
                return handler(ls, params)
            except Exception:
                logger.exception("%s failed", handler.__name__)
                return default()

        return cast(F, run)

    return wrap


# -- lifecycle ------------------------------------------------------------------------------------


@server.feature(types.INITIALIZE)
def initialize(ls: BottleLanguageServer, params: types.InitializeParams) -> None:
    options = params.initialization_options
    ls.options = options if isinstance(options, dict) else {}


@server.feature(types.INITIALIZED)
async def initialized(ls: BottleLanguageServer, params: types.InitializedParams) -> None:
    ls.spawn(ls.refresh_lenses_if_bottles_changed())
    ls.spawn(activity.watch(ls))
    approvals = ls.options.get("approvals", {})
    approvals = approvals if isinstance(approvals, dict) else {}
    if approvals.get("poll", True) and engine.approvals_available():
        ls.spawn(poll_approvals(ls, float(approvals.get("interval", 2.0))))


# -- diagnostics ----------------------------------------------------------------------------------


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: BottleLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    if ls.pushes_diagnostics:
        ls.publish(params.text_document.uri)
    ls.spawn(offer_trust(ls, params.text_document.uri))


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
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


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: BottleLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)  # files next to it (prompt_file, Dockerfile) may have changed
    if ls.pushes_diagnostics:
        ls.publish(uri)
    ls.refresh_code_lenses()  # the saved file decides between Launch and Review changes


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def watched_files_changed(
    ls: BottleLanguageServer, params: types.DidChangeWatchedFilesParams
) -> None:
    """A prompt file, Dockerfile or identity appeared or went: re-check every open manifest."""
    ls.analyses.clear()
    if ls.pushes_diagnostics:
        for uri in list(ls.workspace.text_documents):
            ls.publish(uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: BottleLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)
    task = ls.debounce_tasks.pop(uri, None)
    if task is not None:
        task.cancel()
    if ls.pushes_diagnostics:
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )


@server.feature(
    types.TEXT_DOCUMENT_DIAGNOSTIC,
    types.DiagnosticOptions(
        identifier=SOURCE, inter_file_dependencies=True, workspace_diagnostics=False
    ),
)
@guarded(lambda: types.RelatedFullDocumentDiagnosticReport(items=[]))
def pull_diagnostics(
    ls: BottleLanguageServer, params: types.DocumentDiagnosticParams
) -> types.RelatedFullDocumentDiagnosticReport:
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    found = to_client(document, diagnostics(ls.analysis(uri)))
    return types.RelatedFullDocumentDiagnosticReport(items=found)


# -- editing help ---------------------------------------------------------------------------------


@server.feature(
    types.TEXT_DOCUMENT_COMPLETION,
    types.CompletionOptions(trigger_characters=[".", "[", '"', "="]),
)
@guarded(lambda: types.CompletionList(is_incomplete=False, items=[]))
def completion(ls: BottleLanguageServer, params: types.CompletionParams) -> types.CompletionList:
    _, document, analysis, position = at_cursor(ls, params)
    items = completions(analysis, position)
    return types.CompletionList(is_incomplete=False, items=to_client(document, items))


@server.feature(types.TEXT_DOCUMENT_HOVER)
@guarded(lambda: None)
def hover_feature(ls: BottleLanguageServer, params: types.HoverParams) -> types.Hover | None:
    _, document, analysis, position = at_cursor(ls, params)
    return to_client(document, hover(analysis, position))


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
@guarded(lambda: None)
def definition_feature(
    ls: BottleLanguageServer, params: types.DefinitionParams
) -> types.Location | None:
    uri, document, analysis, position = at_cursor(ls, params)
    found = definition(analysis, uri, position)
    return to_client(document, found) if found is not None and found.uri == uri else found


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
@guarded(list)
def references_feature(
    ls: BottleLanguageServer, params: types.ReferenceParams
) -> list[types.Location]:
    uri, document, analysis, position = at_cursor(ls, params)
    found = references(analysis, uri, position, params.context.include_declaration)
    return to_client(document, found)


@server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
@guarded(lambda: None)
def prepare_rename_feature(
    ls: BottleLanguageServer, params: types.PrepareRenameParams
) -> types.Range | None:
    _, document, analysis, position = at_cursor(ls, params)
    return to_client(document, prepare_rename(analysis, position))


@server.feature(types.TEXT_DOCUMENT_RENAME, types.RenameOptions(prepare_provider=True))
@guarded(lambda: None)
def rename_feature(
    ls: BottleLanguageServer, params: types.RenameParams
) -> types.WorkspaceEdit | None:
    uri, document, analysis, position = at_cursor(ls, params)
    found = rename(analysis, uri, position, params.new_name)
    return to_client(document, found)


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@guarded(list)
def symbols_feature(
    ls: BottleLanguageServer, params: types.DocumentSymbolParams
) -> list[types.DocumentSymbol]:
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    return to_client(document, document_symbols(ls.analysis(uri)))


@server.feature(types.TEXT_DOCUMENT_FOLDING_RANGE)
@guarded(list)
def folding_feature(
    ls: BottleLanguageServer, params: types.FoldingRangeParams
) -> list[types.FoldingRange]:
    return folding_ranges(ls.analysis(params.text_document.uri).outline)


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
)
@guarded(list)
def code_action_feature(
    ls: BottleLanguageServer, params: types.CodeActionParams
) -> list[types.CodeAction]:
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    selection = _server_range(document, params.range)
    reported = [
        (str(d.code), _server_range(document, d.range))
        for d in params.context.diagnostics
        if d.source == SOURCE
    ]
    return to_client(document, code_actions(ls.analysis(uri), uri, selection, reported))


def _server_range(document: TextDocument, client_range: types.Range) -> types.Range:
    return types.Range(
        start=_lsp(to_server(document, client_range.start)),
        end=_lsp(to_server(document, client_range.end)),
    )


def _lsp(position: Position) -> types.Position:
    return types.Position(line=position.line, character=position.character)


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
@guarded(list)
def formatting_feature(
    ls: BottleLanguageServer, params: types.DocumentFormattingParams
) -> list[types.TextEdit]:
    document = ls.workspace.get_text_document(params.text_document.uri)
    return to_client(document, formatting_edits(document.source))


@server.feature(types.TEXT_DOCUMENT_CODE_LENS)
@guarded(list)
def code_lens_feature(
    ls: BottleLanguageServer, params: types.CodeLensParams
) -> list[types.CodeLens]:
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    analysis = ls.analysis(uri)
    if time.monotonic() - ls.bottles_read_at > BOTTLES_MAX_AGE:
        ls.bottles_read_at = time.monotonic()  # one refresh at a time
        ls.spawn(ls.refresh_lenses_if_bottles_changed())
    state = engine.trust_state(analysis.path)  # the saved file: what a launch would use
    needs_trust = state is not None and state.needs_trust
    found = code_lenses(analysis.outline, uri, analysis.path, ls.bottles, needs_trust=needs_trust)
    return to_client(document, found)


# -- commands: the contract with the VS Code extension --------------------------------------------
#
# workspace/executeCommand (each takes one object argument, or none):
#   bottle.launch  {uri, agent} -> {slug}       $/progress per stage, then bottle/changed
#   bottle.attach  {slug}       -> {command: [argv]}   run it in a terminal
#   bottle.stop    {slug}       -> {}           then bottle/changed
#   bottle.list                 -> [{slug, agent, backend, status, started_at, manifest}]
#   bottle.logs    {slug, egress?: bool} -> {command: [argv]}
#   bottle.agents  {uri}        -> [{name, bottle}]
#   bottle.trustReview {uri}    -> {manifest, first_use, trusted, fingerprint,
#                                   changes: [{text, widening}]}   the saved file vs its record
#   bottle.trust   {uri, fingerprint} -> the same, after recording it as trusted (refused when
#                                   the saved file no longer has that fingerprint)
#   bottle.trust   {uri}        -> asks with window/showMessageRequest (the difference, Trust /
#                                   Cancel), records on Trust; {trusted: false} when declined
# A failure is shown with window/showMessage (Error) and answered as {error: message}
# (bottle.list and bottle.agents answer [] instead).
# Notifications to the client: bottle/changed {slug, event: "launched" | "stopped"}, and
# workspace/codeLens/refresh when the client supports it.
# initializationOptions: {"approvals": {"poll": true, "interval": 2.0}} (the defaults).


def _argument(args: tuple[Any, ...], *names: str) -> dict[str, Any]:
    """The single object argument of a command, checked for `names`."""
    if len(args) != 1 or not isinstance(args[0], dict) or any(n not in args[0] for n in names):
        wanted = ", ".join(names)
        raise BottleError(f"expected one argument {{{wanted}}}, got {list(args)!r}")
    return args[0]


class _ClientProgress:
    """The engine's `Progress`, reported as `$/progress` from the engine's worker thread."""

    def __init__(self, ls: BottleLanguageServer, token: str) -> None:
        self.ls = ls
        self.token = token
        self.loop = asyncio.get_running_loop()

    def _report(self, message: str) -> None:
        # Build output quotes the Dockerfile and its context, which the agent may have written.
        self.loop.call_soon_threadsafe(
            self.ls.work_done_progress.report,
            self.token,
            types.WorkDoneProgressReport(message=safe_editor_text(message)),
        )

    def stage(self, name: str) -> None:
        self._report(name)

    def detail(self, text: str) -> None:
        self._report(text)


async def _run_command(
    ls: BottleLanguageServer, name: str, work: Awaitable[T]
) -> T | dict[str, str]:
    """Run a command; an engine failure becomes a showMessage and an `{error}` result."""
    try:
        return await work
    except BottleError as exc:
        message = str(exc)
    except Exception as exc:
        logger.exception("%s failed", name)
        message = f"{name} failed unexpectedly: {exc}"
    ls.show_error(message)
    return {"error": message}


@server.command(LAUNCH)
async def launch_command(ls: BottleLanguageServer, *args: Any) -> dict[str, str]:
    async def work() -> dict[str, str]:
        argument = _argument(args, "uri", "agent")
        uri = str(argument["uri"])
        path = manifest_path(uri)
        agent = str(argument["agent"])
        if has_unsaved_changes(ls, uri, path):
            ls.show_message(
                types.MessageType.Warning,
                f"{path} has unsaved changes; launching {agent} from the saved file",
            )
        token = f"bottle-launch-{uuid.uuid4()}"
        window = ls.client_capabilities.window
        reports = bool(window and window.work_done_progress)
        if reports:
            await ls.work_done_progress.create_async(token)
            ls.work_done_progress.begin(
                token,
                types.WorkDoneProgressBegin(
                    title=f"Launching {safe_editor_text(agent)}", cancellable=False
                ),
            )
        try:
            slug = await ls.in_thread(engine.launch, path, agent, _ClientProgress(ls, token))
        except BaseException:
            if reports:
                ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message="failed"))
            raise
        if reports:
            ls.work_done_progress.end(
                token, types.WorkDoneProgressEnd(message=f"Launched {safe_editor_text(slug)}")
            )
        await ls.bottles_changed(slug, "launched")
        return {"slug": slug}

    return await _run_command(ls, LAUNCH, work())


def has_unsaved_changes(ls: BottleLanguageServer, uri: str, path: Path) -> bool:
    if uri not in ls.workspace.text_documents:
        return False
    try:
        return ls.workspace.get_text_document(uri).source != path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


@server.command(ATTACH)
async def attach_command(ls: BottleLanguageServer, *args: Any) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        return {"command": engine.attach_command(str(_argument(args, "slug")["slug"]))}

    return await _run_command(ls, ATTACH, work())


@server.command(STOP)
async def stop_command(ls: BottleLanguageServer, *args: Any) -> dict[str, str]:
    async def work() -> dict[str, str]:
        slug = str(_argument(args, "slug")["slug"])
        await ls.in_thread(engine.stop, slug)
        await ls.bottles_changed(slug, "stopped")
        return {}

    return await _run_command(ls, STOP, work())


@server.command(LIST)
async def list_command(ls: BottleLanguageServer, *args: Any) -> list[dict[str, str]]:
    result = await _run_command(ls, LIST, ls.in_thread(engine.list_bottles))
    return result if isinstance(result, list) else []


@server.command(LOGS)
async def logs_command(ls: BottleLanguageServer, *args: Any) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        argument = _argument(args, "slug")
        egress = bool(argument.get("egress", False))
        return {"command": engine.logs_command(str(argument["slug"]), egress)}

    return await _run_command(ls, LOGS, work())


@server.command(AGENTS)
async def agents_command(ls: BottleLanguageServer, *args: Any) -> list[dict[str, str]]:
    async def work() -> list[dict[str, str]]:
        uri = str(_argument(args, "uri")["uri"])
        if uri in ls.workspace.text_documents:
            analysis = ls.analysis(uri)
        else:
            path = manifest_path(uri)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise BottleError(f"{path}: cannot read the manifest: {exc}") from exc
            analysis = analyze(text, path)
        return agents_of(analysis)

    result = await _run_command(ls, AGENTS, work())
    return result if isinstance(result, list) else []


def agents_of(analysis: Analysis) -> list[dict[str, str]]:
    """Each agent and the bottle it runs in (the only bottle when it names none)."""
    bottles = analysis.names("bottles")
    found = []
    for name in analysis.names("agents"):
        bottle = analysis.table("agents", name).get("bottle")
        if not isinstance(bottle, str):
            bottle = bottles[0] if len(bottles) == 1 else ""
        found.append({"name": name, "bottle": bottle})
    return found


# -- manifest trust -------------------------------------------------------------------------------

TRUST_ACTION, NOT_NOW = "Trust", "Not now"


def _trust_question(state: engine.TrustState) -> str:
    lines = "\n".join(f"{'+' if wide else '-'} {text}" for text, wide in state.changes)
    return (
        f"{state.manifest} changed since it was last trusted, and the change widens what its "
        f"bottles may do. Launching stays blocked until you trust it.\n{lines}"
    )


async def ask_trust(ls: BottleLanguageServer, path: Path) -> engine.TrustState | None:
    """Show the difference with Trust / Not now; the state after the answer (None: no manifest).

    What is recorded is what was shown: the fingerprint is taken before the question."""
    state = await ls.in_thread(engine.trust_state, path)
    if state is None or not state.needs_trust:
        return state
    answer = await ls.window_show_message_request_async(
        types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=_trust_question(state),
            actions=[
                types.MessageActionItem(title=TRUST_ACTION),
                types.MessageActionItem(title=NOT_NOW),
            ],
        )
    )
    if answer is None or answer.title != TRUST_ACTION:
        return state
    trusted = await ls.in_thread(engine.trust, path, state.fingerprint)
    ls.refresh_code_lenses()
    return trusted


async def offer_trust(ls: BottleLanguageServer, uri: str) -> None:
    """On opening a manifest whose saved content needs trust: the difference and a Trust action."""
    try:
        await ask_trust(ls, manifest_path(uri))
    except BottleError as exc:
        ls.show_error(str(exc))
    except Exception as exc:
        logger.warning("offering to trust %s failed: %s", uri, exc)


@server.command(TRUST_REVIEW)
async def trust_review_command(ls: BottleLanguageServer, *args: Any) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        path = manifest_path(str(_argument(args, "uri")["uri"]))
        state = await ls.in_thread(engine.trust_state, path)
        if state is None:
            raise BottleError(
                f"{path} is not a valid manifest", fix="correct its errors, then review it again"
            )
        return state.to_json()

    return await _run_command(ls, TRUST_REVIEW, work())


@server.command(TRUST)
async def trust_command(ls: BottleLanguageServer, *args: Any) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        argument = _argument(args, "uri")
        uri = str(argument["uri"])
        path = manifest_path(uri)
        if has_unsaved_changes(ls, uri, path):
            raise BottleError(
                f"{path} has unsaved changes", fix="save it, then review the changes again"
            )
        fingerprint = argument.get("fingerprint")
        state: engine.TrustState | None
        if isinstance(fingerprint, str):
            state = await ls.in_thread(engine.trust, path, fingerprint)
            ls.refresh_code_lenses()
        else:
            state = await ask_trust(ls, path)
        if state is None:
            raise BottleError(
                f"{path} is not a valid manifest", fix="correct its errors, then trust it"
            )
        return state.to_json()

    return await _run_command(ls, TRUST, work())


# -- approvals ------------------------------------------------------------------------------------

APPROVE, APPROVE_ONCE, DENY = "Approve", "Approve once", "Deny"


async def poll_approvals(ls: BottleLanguageServer, interval: float) -> None:
    """Show each pending request once, as a message with Approve / Deny (an egress ask also
    offers Approve once)."""
    last_error: str | None = None
    while True:
        try:
            pending = await ls.in_thread(engine.pending_approvals)
            last_error = None
        except Exception as exc:
            if str(exc) != last_error:
                logger.warning("listing approval requests failed: %s", exc)
            last_error = str(exc)
            pending = []
        activity.note_pending(ls, pending)
        for request in pending:
            if request.request_id not in ls.shown_approvals:
                ls.shown_approvals.add(request.request_id)
                ls.spawn(ask_approval(ls, request))
        await asyncio.sleep(interval)


async def ask_approval(ls: BottleLanguageServer, request: engine.ApprovalRequest) -> None:
    # The summary is made safe by the engine adapter; the slug is the state dir's name.
    where = f"bottle {safe_editor_text(request.slug)}" if request.slug else "a bottle"
    what = "Network access" if request.egress else "Approval"
    titles = [APPROVE_ONCE, APPROVE, DENY] if request.egress else [APPROVE, DENY]
    try:
        answer = await ls.window_show_message_request_async(
            types.ShowMessageRequestParams(
                type=types.MessageType.Warning,
                message=f"{what} requested by {where}: {request.summary}",
                actions=[types.MessageActionItem(title=title) for title in titles],
            )
        )
    except Exception as exc:
        logger.warning("asking about approval %s failed: %s", request.request_id, exc)
        return
    if answer is None:
        return  # dismissed: it stays pending and can be answered from the CLI
    approved = answer.title in (APPROVE, APPROVE_ONCE)
    once = answer.title == APPROVE_ONCE
    try:
        await ls.in_thread(
            functools.partial(engine.answer_approval, once=once),
            request,
            approved,
            "answered in the editor",
        )
    except BottleError as exc:
        ls.show_error(str(exc))
    except Exception as exc:
        logger.exception("answering approval %s failed", request.request_id)
        ls.show_error(f"answering approval {request.request_id} failed: {exc}")


activity.register(server, _run_command)  # bottle.activity, bottle.allowHost, bottle.answer
