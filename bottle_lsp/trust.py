"""Asking a person to trust a manifest whose saved content widens what its bottles may do."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from bottle_engine.display import fits_a_notification
from bottle_engine.errors import BottleError
from bottle_lsp.engine import TrustState

if TYPE_CHECKING:
    from bottle_lsp.language_server import BottleLanguageServer

logger = logging.getLogger(__name__)

TRUST_ACTION, NOT_NOW = "Trust", "Not now"


def trust_question(state: TrustState) -> str:
    lines = "\n".join(f"{'+' if wide else '-'} {text}" for text, wide in state.changes)
    return (
        f"{state.manifest} changed since it was last trusted, and the change widens what its "
        f"bottles may do. Launching stays blocked until you trust it.\n{lines}"
    )


def too_long_to_ask(state: TrustState, path: Path) -> str:
    """What is said instead of the question when the difference does not fit a notification."""
    return (
        f"{path.name} changed since it was last trusted, and the change widens what its bottles "
        f"may do: {len(state.changes)} lines, more than a notification shows whole. Launching "
        "stays blocked until you trust it: read them all with Review changes above an agent, "
        f"or run `bottle-engine trust -f {path.name}` in its directory."
    )


async def ask_trust(ls: BottleLanguageServer, path: Path) -> TrustState | None:
    """Show the difference with Trust / Not now; the state after the answer (None: no manifest).

    What is recorded is what was shown: the fingerprint is taken before the question, and a
    question too long to be shown whole offers no Trust."""
    state = await ls.in_thread(ls.engine.trust_state, path)
    if state is None or not state.needs_trust:
        return state
    question = trust_question(state)
    if not fits_a_notification(question):
        ls.show_message(types.MessageType.Warning, too_long_to_ask(state, path))
        return state
    answer = await ls.window_show_message_request_async(
        types.ShowMessageRequestParams(
            type=types.MessageType.Warning,
            message=question,
            actions=[
                types.MessageActionItem(title=TRUST_ACTION),
                types.MessageActionItem(title=NOT_NOW),
            ],
        )
    )
    if answer is None or answer.title != TRUST_ACTION:
        return state
    trusted = await ls.in_thread(ls.engine.trust, path, state.fingerprint)
    ls.refresh_code_lenses()
    return trusted


async def offer_trust(ls: BottleLanguageServer, path: Path) -> None:
    """On opening a manifest whose saved content needs trust: the difference and a Trust action."""
    try:
        await ask_trust(ls, path)
    except BottleError as exc:
        ls.show_error(str(exc))
    except Exception as exc:
        logger.warning("offering to trust %s failed: %s", path, exc)
