"""The language server's one door into the engine: launch, stop, list, attach, logs, approvals.

Everything the editor can make happen goes through an `Engine`, whose methods speak plain values
(slugs, dicts of strings, argv lists) so the server never touches engine objects. Failures come
out as `BottleError` sentences. `bottle-lsp` hands the server the real one; tests hand it one
whose `Lifecycle` is a stand-in (a real bottle takes minutes to start).
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bottle_engine.display import safe_editor_text, safe_text
from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress

ENGINE_COMMAND = "bottle-engine"

logger = logging.getLogger(__name__)


class Lifecycle(Protocol):
    """What the server needs of `bottle_engine.lifecycle` (which satisfies it as a module)."""

    def launch(
        self, manifest_path: Path, agent: str, *, cwd: Path | None = ..., progress: Progress
    ) -> Any: ...

    def stop(self, slug: str) -> None: ...

    def list_bottles(self) -> Sequence[Any]: ...

    def pool_fill(
        self, manifest_path: Path, agent: str, count: int, *, up_to: bool = ...
    ) -> Sequence[Any]: ...

    def pool_release(self, member_ids: Sequence[str]) -> Sequence[str]: ...


class Engine:
    """The engine as the editor sees it. Methods block: the server calls them in threads."""

    def __init__(self, lifecycle: Lifecycle | None = None) -> None:
        if lifecycle is None:
            from bottle_engine import lifecycle as real  # heavy: loaded when a server is made

            lifecycle = real
        self.lifecycle = lifecycle

    def launch(self, manifest_path: Path, agent: str, progress: Progress) -> str:
        """Start a bottle for `agent` (detached); its slug. The engine validates the manifest
        first. The bottle's workspace is a copy of the manifest's directory: an editor has no
        cwd of its own that would mean anything to the user."""
        record = self.lifecycle.launch(
            manifest_path, agent, cwd=manifest_path.parent, progress=progress
        )
        return str(record.slug)

    def stop(self, slug: str) -> None:
        """Stop the bottle; its state stays, so it can be resumed or inspected."""
        self.lifecycle.stop(slug)

    def list_bottles(self) -> list[dict[str, str]]:
        """Every bottle the engine knows: slug, agent, backend, status, started_at, manifest."""
        return [_record(record) for record in self.lifecycle.list_bottles()]

    def keep_warm(self, manifest_path: Path, agents: Sequence[str]) -> list[str]:
        """A warm gateway ready for each of these agents' bottles (the warm pool; agents of
        other backends, or whose manifest does not validate, are skipped); the ids made."""
        made: list[str] = []
        for agent in agents:
            try:
                members = self.lifecycle.pool_fill(manifest_path, agent, 1, up_to=True)
            except BottleError:
                continue
            made += [str(member.id) for member in members]
        return made

    def release_warm(self, member_ids: Sequence[str]) -> list[str]:
        """Remove these warm gateways unless a launch took them; the ids removed."""
        return [str(member_id) for member_id in self.lifecycle.pool_release(member_ids)]

    def attach_command(self, slug: str) -> list[str]:
        """The argv the client runs in a terminal to attach to `slug`."""
        return [ENGINE_COMMAND, "attach", slug]

    def audit_log(self, slug: str) -> Path:
        """The bottle's egress audit log (the proxy writes it, rotated into `.1`, `.2`)."""
        from bottle_engine.bottle_dir import BottleDir

        return BottleDir.of(slug).egress_log

    def logs_command(self, slug: str, egress: bool) -> list[str]:
        """The argv that follows `slug`'s agent log, or its egress audit log."""
        return [ENGINE_COMMAND, "logs", "--follow", *(["--egress"] if egress else []), slug]

    def pending_approvals(self) -> list[ApprovalRequest]:
        """The pending requests of every bottle; a bottle whose bundle flooded its approvals
        dir is left out and named in the server's log."""
        from bottle_engine import approvals

        problems: list[BottleError] = []
        listed = approvals.list_requests(slug=None, pending_only=True, problems=problems)
        for problem in problems:
            logger.warning("%s", safe_text(problem))
        return [
            ApprovalRequest(
                request_id=str(request.id),
                slug=str(request.slug) if request.slug else None,
                summary=" — ".join(
                    safe_editor_text(text) for text in (request.action, request.reason) if text
                )
                or "(no details)",
                kind=str(getattr(request, "kind", "action")),
                question=request.question,
                fingerprint=request.fingerprint,
                once_scope=approvals.once_scope(request.method) if request.kind == "egress" else "",
            )
            for request in listed
        ]

    def answer_approval(
        self, request: ApprovalRequest, approved: bool, note: str, *, once: bool = False
    ) -> None:
        from bottle_engine import approvals

        approvals.answer(
            request.request_id,
            approved,
            note,
            slug=request.slug,
            once=once,
            by=f"editor ({_who()})",
            question=request.question or None,
            fingerprint=request.fingerprint or None,
        )

    def trust_state(self, manifest_path: Path) -> TrustState | None:
        """The saved manifest against its trust record; None when it is not a valid manifest."""
        try:
            return _state(_review(manifest_path))
        except BottleError:
            return None

    def trust(self, manifest_path: Path, fingerprint: str) -> TrustState:
        """Record the saved manifest as trusted, if it still is what was reviewed
        (`fingerprint`)."""
        from bottle_engine import trust_store

        review = _review(manifest_path)
        trust_store.record_if_fingerprint(review, fingerprint)
        return _state(_review(manifest_path))


def _record(record: Any) -> dict[str, str]:
    """A bottle as the extension lists it; `fix` only for a degraded one (the Bottles view
    shows what repairs it)."""

    def text(value: Any) -> str:
        if isinstance(value, datetime):
            return value.isoformat()
        return "" if value is None else str(value)

    summary = {
        name: text(getattr(record, name, None))
        for name in ("slug", "agent", "bottle", "backend", "started_at", "manifest")
    }
    status = getattr(record, "status", None)
    summary["status"] = text(getattr(status, "text", status))
    resources = getattr(record, "resources", None)
    runtime = (
        resources.get("runtime")
        if isinstance(resources, dict)
        else getattr(resources, "runtime", None)
    )
    summary["runtime"] = text(runtime)
    if fix := text(getattr(record, "fix", None)):
        summary["fix"] = fix
    return summary


# -- approvals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalRequest:
    """A pending supervise request, as the editor shows it: `summary` (the agent's action and
    reason) is already safe to show, one line with no escape, bidi or link syntax left in it."""

    request_id: str
    slug: str | None
    summary: str
    kind: str = "action"  # "egress": the proxy holds a request; it may be answered --once
    # The key of the question shown (`ApprovalRequest.question`); an answer is refused if the
    # request's file asks another by then. "" when nothing was shown (an answer by id).
    question: str = ""
    # The fingerprint of the request as shown (`ApprovalRequest.fingerprint`: its bottle, kind
    # and texts); "" when only the question was shown (the Egress view's row).
    fingerprint: str = ""
    # What "Approve once" lets through (`approvals.once_scope`); "" for an agent's own request.
    once_scope: str = ""

    @property
    def egress(self) -> bool:
        return self.kind == "egress"


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


# -- manifest trust -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustState:
    """How a saved manifest compares with what was last trusted for its path.

    `needs_trust`: a launch would stop until the person trusts it. Change texts are made safe
    to display here (they quote the manifest, which an agent may have written)."""

    manifest: str
    first_use: bool
    needs_trust: bool
    fingerprint: str
    changes: tuple[tuple[str, bool], ...]  # (text, widening)

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "first_use": self.first_use,
            "trusted": not self.needs_trust,
            "fingerprint": self.fingerprint,
            "changes": [{"text": text, "widening": wide} for text, wide in self.changes],
        }


def _review(manifest_path: Path) -> Any:
    from bottle_engine import trust_store
    from bottle_engine.manifest import load_manifest_file

    return trust_store.review(load_manifest_file(manifest_path).require())


def _state(review: Any) -> TrustState:
    return TrustState(
        # Shown in notifications (the question, and the extension's own), where `](` makes a link.
        manifest=safe_editor_text(review.manifest),
        first_use=bool(review.first_use),
        needs_trust=bool(review.needs_trust),
        fingerprint=str(review.fingerprint),
        changes=tuple((safe_editor_text(c.text), bool(c.widening)) for c in review.changes),
    )
