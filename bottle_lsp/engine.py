"""The language server's one door into the engine: launch, stop, list, attach, logs, approvals.

Everything the editor can make happen goes through these functions, which speak plain values
(slugs, dicts of strings, argv lists) so the server never touches engine objects. Failures come
out as `BottleError` sentences.

`BOTTLE_LSP_LIFECYCLE_MODULE` names a replacement for `bottle_engine.lifecycle` (same
functions); tests use one where a real bottle cannot start in a test's time.
"""

from __future__ import annotations

import getpass
import importlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bottle_engine.display import safe_editor_text
from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress

ENGINE_COMMAND = "bottle-engine"
LIFECYCLE_MODULE = "bottle_engine.lifecycle"
APPROVALS_MODULE = "bottle_engine.approvals"


def _module(default: str, override_variable: str | None, feature: str) -> ModuleType:
    name = (os.environ.get(override_variable) if override_variable else None) or default
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise BottleError(
                f"this bot-bottle installation cannot {feature} yet ({name} is missing)",
                fix="update bot-bottle, or use the bottle-engine CLI",
            ) from exc
        raise


def _lifecycle() -> ModuleType:
    return _module(LIFECYCLE_MODULE, "BOTTLE_LSP_LIFECYCLE_MODULE", "launch or stop bottles")


def launch(manifest_path: Path, agent: str, progress: Progress) -> str:
    """Start a bottle for `agent` (detached); its slug. The engine validates the manifest first.

    The bottle's workspace is a copy of the manifest's directory: an editor has no cwd of its
    own that would mean anything to the user.
    """
    record = _lifecycle().launch(manifest_path, agent, cwd=manifest_path.parent, progress=progress)
    return str(record.slug)


def stop(slug: str) -> None:
    """Stop the bottle; its state stays, so it can be resumed or inspected."""
    _lifecycle().stop(slug)


def list_bottles() -> list[dict[str, str]]:
    """Every bottle the engine knows: slug, agent, bottle, backend, runtime, status, started_at,
    manifest (and `fix`, the command that repairs a degraded one)."""
    return [_record(record) for record in _lifecycle().list_bottles()]


def _record(record: Any) -> dict[str, str]:
    def text(name: str) -> str:
        value = getattr(record, name, None)
        if isinstance(value, datetime):
            return value.isoformat()
        return "" if value is None else str(value)

    summary = {
        name: text(name)
        for name in ("slug", "agent", "bottle", "backend", "status", "started_at", "manifest")
    }
    resources = getattr(record, "resources", None)
    runtime = resources.get("runtime") if isinstance(resources, dict) else None
    summary["runtime"] = str(runtime) if runtime else ""
    if fix := text("fix"):  # a degraded bottle: the Bottles view shows what repairs it
        summary["fix"] = fix
    return summary


def audit_log(slug: str) -> Path:
    """The bottle's egress audit log (the proxy writes it, rotated into `.1`, `.2`)."""
    from bottle_engine import state

    return state.bottle_dir(slug) / "egress.jsonl"


def attach_command(slug: str) -> list[str]:
    """The argv the client runs in a terminal to attach to `slug`."""
    return [ENGINE_COMMAND, "attach", slug]


def logs_command(slug: str, egress: bool) -> list[str]:
    """The argv that follows `slug`'s agent log, or its egress audit log."""
    return [ENGINE_COMMAND, "logs", "--follow", *(["--egress"] if egress else []), slug]


# -- approvals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalRequest:
    """A pending supervise request, as the editor shows it: `summary` (the agent's action and
    reason) is already safe to show, one line with no escape, bidi or link syntax left in it."""

    request_id: str
    slug: str | None
    summary: str
    kind: str = "action"  # "egress": the proxy holds a request; it may be answered --once

    @property
    def egress(self) -> bool:
        return self.kind == "egress"


def approvals_available() -> bool:
    try:
        _approvals()
    except BottleError:
        return False
    return True


def _approvals() -> ModuleType:
    return _module(APPROVALS_MODULE, None, "answer approval requests")


def pending_approvals() -> list[ApprovalRequest]:
    return [
        ApprovalRequest(
            request_id=str(request.id),
            slug=str(request.slug) if request.slug else None,
            summary=" — ".join(
                safe_editor_text(text) for text in (request.action, request.reason) if text
            )
            or "(no details)",
            kind=str(getattr(request, "kind", "action")),
        )
        for request in _approvals().list_requests(slug=None, pending_only=True)
    ]


def answer_approval(
    request: ApprovalRequest, approved: bool, note: str, *, once: bool = False
) -> None:
    _approvals().answer(
        request.request_id,
        approved,
        note,
        slug=request.slug,
        once=once,
        by=f"editor ({_who()})",
    )


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
    from bottle_engine.display import safe_text

    return TrustState(
        manifest=safe_text(review.manifest),
        first_use=bool(review.first_use),
        needs_trust=bool(review.needs_trust),
        fingerprint=str(review.fingerprint),
        changes=tuple((safe_text(c.text), bool(c.widening)) for c in review.changes),
    )


def trust_state(manifest_path: Path) -> TrustState | None:
    """The saved manifest against its trust record; None when it is not a valid manifest."""
    try:
        return _state(_review(manifest_path))
    except BottleError:
        return None


def trust(manifest_path: Path, fingerprint: str) -> TrustState:
    """Record the saved manifest as trusted, if it still is what was reviewed (`fingerprint`)."""
    from bottle_engine import trust_store

    review = _review(manifest_path)
    trust_store.record_if_fingerprint(review, fingerprint)
    return _state(_review(manifest_path))
