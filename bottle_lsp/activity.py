"""What each bottle is doing, pushed to the editor: status, egress, pending approvals.

The server follows the audit log (`egress.jsonl`) of every running or degraded bottle in a
thread of its own (the engine's `read_kept_audit`), folds it (`egress_view`), and pushes the whole
picture as `bottle/activity` whenever it changes, at most every `PUSH_SECONDS`; the extension
never polls. Commands: `bottle.activity` (the picture now, for a client that just started),
`bottle.allowHost` (the Allow edit, applied with `workspace/applyEdit`) and `bottle.answer`
(Approve / Deny of a pending ask, in place).

Wire format of `bottle/activity` (and of `bottle.activity`'s answer), every text display-safe:
  {bottles: [{slug, agent, bottle, backend, runtime, status, state, fix, started_at, manifest,
              pending, denied, allowed, hidden,
              hosts: [{decision, host, port, count, bytes, last, rule, reason,
                       pending: [request id], allow: entry | null}]}]}
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from bottle_engine.bundle.audit import read_kept_audit
from bottle_engine.display import safe_editor_text, safe_text
from bottle_engine.errors import BottleError
from bottle_engine.manifest import MAX_MANIFEST_BYTES, read_manifest_text, too_large
from bottle_lsp.allow_edit import line_edit, with_allowed
from bottle_lsp.egress_view import EgressActivity
from bottle_lsp.engine import ApprovalRequest
from bottle_lsp.lenses import STOPPED, bottle_state

if TYPE_CHECKING:
    from bottle_lsp.language_server import BottleLanguageServer

logger = logging.getLogger(__name__)

NOTIFICATION = "bottle/activity"
PUSH_SECONDS = 0.3


class AuditFollower:
    """Follows one bottle's audit log in a daemon thread, folding it into `activity`."""

    def __init__(self, path: Path, changed: Callable[[], None]) -> None:
        self.path = path
        self.activity = EgressActivity()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.changed = changed
        self.thread = threading.Thread(target=self._run, name=f"audit {path}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            # Older entries first: the rotated files, then the live one, followed.
            self._fold(read_kept_audit(self.path, follow=True, stop=self.stop_event))
            logger.info("stopped following %s", self.path)
        except Exception:
            logger.exception("following %s failed", self.path)

    def _fold(self, entries: Any) -> None:
        for entry in entries:
            with self.lock:
                self.activity.add(entry)
            self.changed()

    def snapshot(self, pending: Mapping[str, str]) -> dict[str, Any]:
        with self.lock:
            return self.activity.to_json(pending)

    def stop(self) -> None:
        self.stop_event.set()


_SUMMARY_FIELDS = (
    *("slug", "agent", "bottle", "backend", "runtime", "status", "fix"),
    *("started_at", "manifest"),
)


class ActivityHub:
    """The followers of one server, the pending approvals, and the pushes."""

    def __init__(self, ls: BottleLanguageServer) -> None:
        self.ls = ls
        self.loop = asyncio.get_running_loop()
        self.followers: dict[str, AuditFollower] = {}
        # slug -> pending approval request id -> the key of its question
        self.pending: dict[str, dict[str, str]] = {}
        self.push_scheduled = False
        self.last_pushed: str | None = None

    def changed(self) -> None:
        """Called from any thread: schedule one push soon."""
        self.loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        if not self.push_scheduled:
            self.push_scheduled = True
            self.loop.call_later(PUSH_SECONDS, self._push)

    def _push(self) -> None:
        self.push_scheduled = False
        if getattr(self.ls.protocol, "_shutdown", False):
            return  # the client asked the server to shut down; stdout may be closed already
        picture = self.picture()
        text = json.dumps(picture, sort_keys=True)
        if text != self.last_pushed:
            self.last_pushed = text
            self.ls.protocol.notify(NOTIFICATION, picture)

    def sync(self, bottles: list[dict[str, str]]) -> None:
        """Follow the bottles that run (or are degraded: their log says why), drop the rest."""
        wanted = {
            b["slug"] for b in bottles if bottle_state(b.get("status", "")) != STOPPED and b["slug"]
        }
        for slug in set(self.followers) - wanted:
            logger.info("bottle %s stopped: no longer following its audit log", slug)
            self.followers.pop(slug).stop()
        for slug in wanted - set(self.followers):
            try:
                path = self.ls.engine.audit_log(slug)
            except BottleError as exc:
                logger.info("bottle %s: no audit log to follow yet: %s", slug, safe_text(exc))
                continue
            logger.info("bottle %s: following %s", slug, path)
            self.followers[slug] = AuditFollower(path, self.changed)
        self.changed()

    def note_pending(self, requests: list[ApprovalRequest]) -> None:
        pending: dict[str, dict[str, str]] = {}
        for request in requests:
            pending.setdefault(request.slug or "", {})[request.request_id] = request.question
        if pending != self.pending:
            self.pending = pending
            self.changed()

    def picture(self) -> dict[str, Any]:
        shown = []
        for record in self.ls.bottles.bottles:
            state = bottle_state(record.get("status", ""))
            if state == STOPPED:
                continue
            slug = record.get("slug", "")
            pending = self.pending.get(slug, {})
            follower = self.followers.get(slug)
            egress = follower.snapshot(pending) if follower else EgressActivity().to_json(pending)
            summary: dict[str, Any] = {
                name: safe_editor_text(record.get(name, "")) for name in _SUMMARY_FIELDS
            }
            summary.update(state=state, pending=len(pending), **egress)
            shown.append(summary)
        return {"bottles": shown}

    def close(self) -> None:
        for follower in self.followers.values():
            follower.stop()
        self.followers.clear()


def hub(ls: BottleLanguageServer) -> ActivityHub:
    found = getattr(ls, "activity_hub", None)
    if found is None:
        found = ActivityHub(ls)
        ls.activity_hub = found  # type: ignore[attr-defined]
    return found


async def watch(ls: BottleLanguageServer) -> None:
    """Keep the followers (and the lenses) in step with the bottles list for the server's
    life: this read is also the one that notices bottles started or stopped elsewhere."""
    activity = hub(ls)
    while not getattr(ls.protocol, "_shutdown", False):
        try:
            if await ls.bottles.refresh():
                ls.refresh_code_lenses()  # a bottle started or stopped from the CLI
            activity.sync(ls.bottles.bottles)
        except Exception:  # one bad round must not end the view's updates for good
            logger.warning("following the bottles failed", exc_info=True)
        await asyncio.sleep(ls.activity_interval)


def note_pending(ls: BottleLanguageServer, requests: list[ApprovalRequest]) -> None:
    hub(ls).note_pending(requests)


# -- commands -------------------------------------------------------------------------------------


def _record(ls: BottleLanguageServer, slug: str) -> dict[str, str]:
    for record in ls.bottles.bottles:
        if record.get("slug") == slug:
            return record
    raise BottleError(f"no bottle named '{slug}'", fix="run `bottle-engine ls` to see them")


async def allow_host(ls: BottleLanguageServer, slug: str, host: str, port: int) -> dict[str, Any]:
    """Add `host`:`port` to the allowlist of the bottle `slug` was launched from, in its
    bottle.toml (the open document when it is open, unsaved changes included)."""
    from pygls.uris import from_fs_path

    await ls.bottles.refresh()
    record = _record(ls, slug)
    bottle, manifest = record.get("bottle", ""), record.get("manifest", "")
    if not bottle or not manifest:
        raise BottleError(f"bottle {slug} does not record its manifest and bottle name")
    from bottle_lsp.egress_view import allow_entry

    entry = allow_entry(host, port)
    if entry is None:
        raise BottleError(
            f"cannot allow '{host}:{port}' from the editor: only an exact host name is added",
            fix="edit `allow` in bottle.toml by hand",
        )
    uri = from_fs_path(str(Path(manifest).resolve())) or manifest
    document = ls.workspace.text_documents.get(uri)
    text: str | None
    if document is not None:
        text, version = document.source, document.version
    else:
        try:
            text, version = read_manifest_text(Path(manifest)), None
        except (OSError, UnicodeDecodeError) as exc:
            raise BottleError(f"{manifest}: cannot read the manifest: {exc}") from exc
    if text is None or too_large(text):  # tomlkit would read it whole
        raise BottleError(
            f"{manifest} is larger than {MAX_MANIFEST_BYTES} bytes, more than bot-bottle reads",
            fix="edit `allow` in bottle.toml by hand",
        )
    new = with_allowed(text, bottle, entry)
    if new is None:
        return {"uri": uri, "entry": entry, "applied": False, "already": True}
    change = line_edit(text, new)
    edit = types.WorkspaceEdit(
        document_changes=[
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(
                    uri=uri, version=version
                ),
                edits=[
                    types.TextEdit(
                        range=types.Range(
                            start=types.Position(line=change.start, character=0),
                            end=types.Position(line=change.end, character=0),
                        ),
                        new_text=change.text,
                    )
                ],
            )
        ]
    )
    await _show(ls, uri)
    result = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"Allow {entry}")
    )
    if not result.applied:
        raise BottleError(
            f"the editor did not apply the edit to {manifest}"
            + (f": {result.failure_reason}" if result.failure_reason else ""),
            fix="try Allow again",
        )
    return {"uri": uri, "entry": entry, "applied": True, "already": False}


async def _show(ls: BottleLanguageServer, uri: str) -> None:
    """Put the manifest in an editor before the edit lands in it: a widened allowlist waits
    there for the person to read and save. An edit to a file no editor shows is saved by the
    editor itself (VS Code's `files.refactoring.autoSave`), unseen."""
    window = ls.client_capabilities.window
    if window is None or window.show_document is None or not window.show_document.support:
        return
    try:
        await ls.window_show_document_async(types.ShowDocumentParams(uri=uri, take_focus=True))
    except Exception:  # the edit is still worth making; the extension opens it after
        logger.warning("showing %s before the Allow edit failed", uri, exc_info=True)


async def answer(
    ls: BottleLanguageServer,
    slug: str,
    request_id: str,
    approved: bool,
    shown: tuple[str, int],
    *,
    once: bool,
) -> dict[str, Any]:
    """Approve (optionally once) or deny a pending ask of bottle `slug`, as the row showing
    `shown` (host, port) asks it. The row and its ids come from the audit log, which the bundle
    writes: an ask logged for one host under the id of an ask about another approved the
    other; the store now refuses an answer whose request asks about another host:port."""
    from bottle_engine.approvals import egress_question

    request = ApprovalRequest(
        request_id=request_id,
        slug=slug,
        summary="",
        kind="egress",
        question=egress_question(*shown),
    )
    await ls.in_thread(
        functools.partial(ls.engine.answer_approval, once=once),
        request,
        approved,
        "answered in the editor's Egress view",
    )
    ls.shown_approvals.add(request.request_id)
    return {}
