"""The commands the VS Code extension calls (`workspace/executeCommand`): the contract.

Each command takes one object argument, typed below, or none:
  bottle.launch  LaunchArgs {uri, agent} -> {slug}   $/progress per stage, then bottle/changed
  bottle.attach  SlugArgs {slug}         -> {command: [argv]}   run it in a terminal
  bottle.stop    SlugArgs {slug}         -> {}                  then bottle/changed
  bottle.list                            -> [{slug, agent, bottle, backend, runtime, status,
                                             started_at, manifest, fix?}]
  bottle.logs    LogsArgs {slug, egress?} -> {command: [argv]}
  bottle.agents  UriArgs {uri}           -> [{name, bottle}]
  bottle.trustReview UriArgs {uri}       -> {manifest, first_use, trusted, fingerprint,
                                             changes: [{text, widening}]}   saved file vs record
  bottle.trust   TrustArgs {uri, fingerprint} -> the same, after recording it as trusted (refused
                                             when the saved file no longer has that fingerprint)
  bottle.trust   TrustArgs {uri}         -> asks with window/showMessageRequest (the difference,
                                             Trust / Not now), records on Trust; a difference
                                             longer than a notification shows is not asked about
  bottle.activity                        -> the egress picture (activity.py), also pushed as
                                             bottle/activity whenever it changes
  bottle.allowHost AllowHostArgs {slug, host, port} -> {uri, entry, applied, already}: the
                                             host added to its bottle's allow (workspace/applyEdit)
  bottle.answer  AnswerArgs {slug, request_id, approved, host, port, once?} -> {}: refused
                                             when the request asks about another host:port
A failure (a malformed argument included) is shown with window/showMessage (Error) and answered
as {error: message}; bottle.list and bottle.agents answer [] instead. pygls's own argument
conversion would answer a JSON-RPC error the extension does not show, so arguments are converted
here, with pygls's converter. Notifications to the client: bottle/changed {slug, event:
"launched" | "stopped"}, and workspace/codeLens/refresh when the client supports it.
The extension's copy of the names and argument types (editors/vscode/src/contract.ts) is
generated from this module (`contract.py`, scripts/update-contract).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lsprotocol import types
from pygls.protocol import default_converter

from bottle_engine.display import safe_editor_text
from bottle_engine.errors import BottleError
from bottle_engine.manifest import MAX_MANIFEST_BYTES, read_manifest_text, schema
from bottle_lsp import activity
from bottle_lsp.analysis import Analysis, analyze
from bottle_lsp.engine import TrustState
from bottle_lsp.language_server import BottleLanguageServer, manifest_path
from bottle_lsp.lenses import ATTACH, LAUNCH, STOP, TRUST
from bottle_lsp.trust import ask_trust

logger = logging.getLogger(__name__)

LIST, LOGS, AGENTS = "bottle.list", "bottle.logs", "bottle.agents"
ACTIVITY, ALLOW_HOST, ANSWER = "bottle.activity", "bottle.allowHost", "bottle.answer"
TRUST_REVIEW = "bottle.trustReview"
A = TypeVar("A")


def _doc(text: str) -> Any:
    """A field's documentation, carried into the extension's generated contract."""
    return {"doc": text}


URI_DOC = "`file://` URI of the bottle.toml."


@dataclass(frozen=True)
class LaunchArgs:
    """Which agent of which manifest to launch."""

    uri: str = field(metadata=_doc("`file://` URI of the bottle.toml that declares the agent."))
    agent: str = field(metadata=_doc("The NAME of an `[agents.NAME]` table in it."))


@dataclass(frozen=True)
class SlugArgs:
    """Which running bottle."""

    slug: str = field(metadata=_doc("The bottle's slug, as `bottle.list` names it."))


@dataclass(frozen=True)
class LogsArgs:
    """Which bottle's log to follow."""

    slug: str = field(metadata=_doc("The bottle's slug, as `bottle.list` names it."))
    egress: bool = field(
        default=False,
        metadata=_doc("true: the egress proxy's audit log; false: the agent's own output."),
    )


@dataclass(frozen=True)
class UriArgs:
    """Which manifest."""

    uri: str = field(metadata=_doc(URI_DOC))


@dataclass(frozen=True)
class AllowHostArgs:
    """A refused host to add to its bottle's allowlist in bottle.toml."""

    slug: str = field(metadata=_doc("The bottle that was refused, as `bottle.list` names it."))
    host: str = field(metadata=_doc("The refused host name, as `bottle/activity` shows it."))
    port: int = field(metadata=_doc("The refused port."))


@dataclass(frozen=True)
class AnswerArgs:
    """A pending approval request of a bottle, and the answer."""

    slug: str = field(metadata=_doc("The bottle that asked, as `bottle.list` names it."))
    request_id: str = field(metadata=_doc("The request's id, from `bottle/activity`."))
    approved: bool = field(metadata=_doc("true: approve; false: deny."))
    host: str = field(
        metadata=_doc(
            "The host its row shows: the answer is refused when the request asks about another."
        )
    )
    port: int = field(metadata=_doc("The port its row shows."))
    once: bool = field(default=False, metadata=_doc("Approve this one request only."))


@dataclass(frozen=True)
class TrustArgs:
    """Which manifest to trust, and the content that was reviewed."""

    uri: str = field(metadata=_doc(URI_DOC))
    fingerprint: str | None = field(
        default=None,
        metadata=_doc(
            "From `bottle.trustReview`: records only that content. Absent: the server asks."
        ),
    )


_converter = default_converter()  # type: ignore[no-untyped-call]  # the one pygls uses


def _whole_number(value: Any, _: type) -> int:
    """cattrs makes an int of anything `int()` takes, `true` included: a port of `true` would
    be port 1. JSON's booleans are no numbers here."""
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not a number")
    return int(value)


# bool is an int to the hook dispatch: it keeps its own hook, as it was.
_converter.register_structure_hook(bool, _converter.get_structure_hook(bool))
_converter.register_structure_hook(int, _whole_number)


@dataclass(frozen=True)
class Command(Generic[A]):
    """A command: its name, the type of its one argument (None: it takes none), and its work."""

    name: str
    argument: type[A] | None
    run: Callable[[BottleLanguageServer, A], Awaitable[Any]]
    answers_list: bool = False  # a failure answers [] instead of {error}

    @property
    def shape(self) -> str:
        """The argument as the error message names it: its required keys."""
        assert self.argument is not None
        required = [
            f.name
            for f in dataclasses.fields(self.argument)  # type: ignore[arg-type]
            if f.default is dataclasses.MISSING
        ]
        return "{" + ", ".join(required) + "}"

    def parse(self, args: tuple[Any, ...]) -> A:
        if self.argument is None:
            return None  # type: ignore[return-value]  # A is None for these
        if len(args) == 1 and isinstance(args[0], dict):
            try:
                parsed: A = _converter.structure(args[0], self.argument)
                return parsed
            except Exception:  # a missing key or a value of no usable type: said below
                pass
        raise BottleError(f"expected one argument {self.shape}, got {list(args)!r}")

    def handler(self) -> Callable[..., Awaitable[Any]]:
        """The function pygls calls; it receives the arguments as sent."""

        async def execute(ls: BottleLanguageServer, *args: Any) -> Any:
            try:
                return await self.run(ls, self.parse(args))
            except BottleError as exc:
                message = str(exc)
            except Exception as exc:
                logger.exception("%s failed", self.name)
                message = f"{self.name} failed unexpectedly: {exc}"
            ls.show_error(message)
            return [] if self.answers_list else {"error": message}

        return execute


# -- progress -------------------------------------------------------------------------------------


class ClientProgress:
    """The engine's `Progress`, reported as `$/progress` from the engine's worker thread (when the
    client supports work-done progress)."""

    def __init__(self, ls: BottleLanguageServer, title: str) -> None:
        self.ls = ls
        self.token = f"bottle-{uuid.uuid4()}"
        self.title = title
        self.loop = asyncio.get_running_loop()
        window = ls.client_capabilities.window
        self.reports = bool(window and window.work_done_progress)

    async def begin(self) -> None:
        if self.reports:
            await self.ls.work_done_progress.create_async(self.token)
            self.ls.work_done_progress.begin(
                self.token, types.WorkDoneProgressBegin(title=self.title, cancellable=False)
            )

    def end(self, message: str) -> None:
        if self.reports:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))

    def _report(self, message: str) -> None:
        if not self.reports:
            return
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

    def warn(self, text: str) -> None:
        # A progress report is replaced by the next one: a warning is a message of its own
        # (`show_message` makes the text safe for the editor).
        self.loop.call_soon_threadsafe(self.ls.show_message, types.MessageType.Warning, text)


# -- the commands ---------------------------------------------------------------------------------


async def launch(ls: BottleLanguageServer, args: LaunchArgs) -> dict[str, str]:
    path = manifest_path(args.uri)
    if ls.has_unsaved_changes(args.uri, path):
        ls.show_message(
            types.MessageType.Warning,
            f"{path} has unsaved changes; launching {args.agent} from the saved file",
        )
    progress = ClientProgress(ls, f"Launching {safe_editor_text(args.agent)}")
    await progress.begin()
    try:
        slug = await ls.in_thread(ls.engine.launch, path, args.agent, progress)
    except BaseException:
        progress.end("failed")
        raise
    progress.end(f"Launched {safe_editor_text(slug)}")
    await ls.bottles_changed(slug, "launched")
    return {"slug": slug}


async def attach(ls: BottleLanguageServer, args: SlugArgs) -> dict[str, Any]:
    return {"command": ls.engine.attach_command(args.slug)}


async def stop(ls: BottleLanguageServer, args: SlugArgs) -> dict[str, str]:
    await ls.in_thread(ls.engine.stop, args.slug)
    await ls.bottles_changed(args.slug, "stopped")
    return {}


async def list_bottles(ls: BottleLanguageServer, args: None) -> list[dict[str, str]]:
    return await ls.in_thread(ls.engine.list_bottles)


async def logs(ls: BottleLanguageServer, args: LogsArgs) -> dict[str, Any]:
    return {"command": ls.engine.logs_command(args.slug, args.egress)}


async def agents(ls: BottleLanguageServer, args: UriArgs) -> list[dict[str, str]]:
    if args.uri in ls.workspace.text_documents:
        return agents_of(ls.analysis(args.uri))
    path = manifest_path(args.uri)
    try:
        text = read_manifest_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise BottleError(f"{path}: cannot read the manifest: {exc}") from exc
    if text is None:
        raise BottleError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes, more than it reads")
    return agents_of(analyze(text, path))


def agents_of(analysis: Analysis) -> list[dict[str, str]]:
    """Each agent and the bottle it runs in ("" when that is not decided)."""
    bottles = analysis.names("bottles")
    return [
        {
            "name": name,
            "bottle": schema.implied_bottle(analysis.table("agents", name), bottles) or "",
        }
        for name in analysis.names("agents")
    ]


async def trust_review(ls: BottleLanguageServer, args: UriArgs) -> dict[str, Any]:
    path = manifest_path(args.uri)
    state = await ls.in_thread(ls.engine.trust_state, path)
    if state is None:
        raise BottleError(
            f"{path} is not a valid manifest", fix="correct its errors, then review it again"
        )
    return state.to_json()


async def trust(ls: BottleLanguageServer, args: TrustArgs) -> dict[str, Any]:
    path = manifest_path(args.uri)
    if ls.has_unsaved_changes(args.uri, path):
        raise BottleError(
            f"{path} has unsaved changes", fix="save it, then review the changes again"
        )
    state: TrustState | None
    if args.fingerprint is not None:
        state = await ls.in_thread(ls.engine.trust, path, args.fingerprint)
        ls.refresh_code_lenses()
    else:
        state = await ask_trust(ls, path)
    if state is None:
        raise BottleError(
            f"{path} is not a valid manifest", fix="correct its errors, then trust it"
        )
    if not state.needs_trust:
        ls.spawn(ls.warm.keep(args.uri))  # trusted now: a warm gateway may be made for it
    return state.to_json()


async def activity_picture(ls: BottleLanguageServer, args: None) -> dict[str, Any]:
    return activity.hub(ls).picture()


async def allow_host(ls: BottleLanguageServer, args: AllowHostArgs) -> dict[str, Any]:
    return await activity.allow_host(ls, args.slug, args.host, args.port)


async def answer(ls: BottleLanguageServer, args: AnswerArgs) -> dict[str, Any]:
    return await activity.answer(
        ls, args.slug, args.request_id, args.approved, (args.host, args.port), once=args.once
    )


COMMANDS: tuple[Command[Any], ...] = (
    Command(LAUNCH, LaunchArgs, launch),
    Command(ATTACH, SlugArgs, attach),
    Command(STOP, SlugArgs, stop),
    Command(LIST, None, list_bottles, answers_list=True),
    Command(LOGS, LogsArgs, logs),
    Command(AGENTS, UriArgs, agents, answers_list=True),
    Command(TRUST, TrustArgs, trust),
    Command(TRUST_REVIEW, UriArgs, trust_review),
    Command(ACTIVITY, None, activity_picture),
    Command(ALLOW_HOST, AllowHostArgs, allow_host),
    Command(ANSWER, AnswerArgs, answer),
)
