"""The approvals poller: each pending request shown once, as a message with Approve / Deny
(an egress ask also offers Approve once), or, too long for a notification, with where to read
and answer it; the answer goes back through the engine.

A bottle's requests are shown no faster than its own store opens them (`ApprovalLimits`: a
burst, then one every 30 s): a bundle the agent's traffic took over writes request files past
those caps, and each got a notification, 60 at once, the server keeping a request open for each
the person never clicked. Those beyond wait, listed by `bottle-engine approvals`."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING

from lsprotocol import types

from bottle_engine.approvals import ApprovalLimits, RateBucket, take_token
from bottle_engine.display import fits_a_notification, safe_editor_text
from bottle_engine.errors import BottleError
from bottle_lsp import activity
from bottle_lsp.engine import ApprovalRequest

if TYPE_CHECKING:
    from bottle_lsp.language_server import BottleLanguageServer

logger = logging.getLogger(__name__)

APPROVE, APPROVE_ONCE, DENY = "Approve", "Approve once", "Deny"


async def poll_approvals(ls: BottleLanguageServer, interval: float) -> None:
    """Every `interval` seconds, ask about the requests not shown yet (runs until shutdown)."""
    last_error: str | None = None
    paces: dict[str, RateBucket] = {}  # per bottle: the store's own rate, kept on this side
    limits = ApprovalLimits()
    while True:
        try:
            pending = await ls.in_thread(ls.engine.pending_approvals)
            last_error = None
        except Exception as exc:
            if str(exc) != last_error:
                logger.warning("listing approval requests failed: %s", exc)
            last_error = str(exc)
            pending = []
        activity.note_pending(ls, pending)
        for request in pending:
            if request.request_id in ls.shown_approvals:
                continue
            slug = request.slug or ""
            paces[slug], wait = take_token(paces.get(slug), time.time(), limits)
            if wait > 0:
                continue  # past what its store opens: shown as the pace allows
            ls.shown_approvals.add(request.request_id)
            ls.spawn(ask_approval(ls, request))
        await asyncio.sleep(interval)


def too_long_to_ask(request: ApprovalRequest, what: str, where: str) -> str:
    """Said instead of the question when it does not fit a notification: the editor would show
    its start only, and an answer there would cover the unread rest (the agent chooses how long
    its texts are)."""
    slug = f" {safe_editor_text(request.slug)}" if request.slug else ""
    return (
        f"{what} requested by {where}, too long for a notification to show whole: read it with "
        f"`bottle-engine approvals{slug}`, then answer with `bottle-engine approve "
        f"{request.request_id}` or `bottle-engine deny {request.request_id}`."
    )


async def ask_approval(ls: BottleLanguageServer, request: ApprovalRequest) -> None:
    # The summary is made safe by the engine adapter; the slug is the state dir's name.
    where = f"bottle {safe_editor_text(request.slug)}" if request.slug else "a bottle"
    what = "Network access" if request.egress else "Approval"
    titles = [APPROVE_ONCE, APPROVE, DENY] if request.egress else [APPROVE, DENY]
    message = f"{what} requested by {where}: {request.summary}"
    if request.egress:
        # A CONNECT's "once" is a tunnel kept as long as the agent likes, not one request.
        message += f" ({APPROVE_ONCE}: for {request.once_scope}; {APPROVE}: until the bottle stops)"
    if not fits_a_notification(message):
        ls.show_message(types.MessageType.Warning, too_long_to_ask(request, what, where))
        return
    try:
        answer = await ls.window_show_message_request_async(
            types.ShowMessageRequestParams(
                type=types.MessageType.Warning,
                message=message,
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
            functools.partial(ls.engine.answer_approval, once=once),
            request,
            approved,
            "answered in the editor",
        )
    except BottleError as exc:
        ls.show_error(str(exc))
    except Exception as exc:
        logger.exception("answering approval %s failed", request.request_id)
        ls.show_error(f"answering approval {request.request_id} failed: {exc}")
