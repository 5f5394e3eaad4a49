"""Human approval requests: one JSON file per request in the bottle's state dir.

The supervise MCP server (inside the bundle, where the bottle's state dir is mounted) creates a
request and waits; a person answers from the host (`bottle-engine approve|deny`, or VS Code
through the language server), both through `ApprovalStore`. Files are replaced atomically under
a lock, so an answer is never half written and survives a bundle restart; every change is also
appended to ``approvals.jsonl`` (the bottle's approval audit log).

Layout: ``<bottle state dir>/approvals/<id>.json`` and ``<bottle state dir>/approvals.jsonl``.
This module imports only the standard library at the top, because the bundle imports it too.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from bottle_engine.errors import BottleError

Status = Literal["pending", "approved", "denied", "timed_out"]

_REQUEST_ID = re.compile(r"[0-9a-f]{8}")
APPROVALS_DIR = "approvals"
AUDIT_LOG = "approvals.jsonl"


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ApprovalRequest:
    """An agent's request for a person's approval, and its answer once there is one."""

    id: str
    slug: str
    action: str
    reason: str
    status: Status
    created_at: str
    expires_at: str
    answered_at: str | None = None
    note: str | None = None
    delivered: bool = False  # the answer has been returned to the agent

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    def expired(self, now: datetime | None = None) -> bool:
        return datetime.fromisoformat(self.expires_at) <= (now or _now())

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> ApprovalRequest:
        fields = cls.__dataclass_fields__
        return cls(**{key: value for key, value in raw.items() if key in fields})  # type: ignore[arg-type]


class ApprovalStore:
    """The approval requests of one bottle, kept under its state dir."""

    def __init__(self, bottle_dir: Path, slug: str) -> None:
        self.slug = slug
        self.directory = bottle_dir / APPROVALS_DIR
        self.audit_log = bottle_dir / AUDIT_LOG

    def all(self) -> list[ApprovalRequest]:
        """Every request, oldest first; unreadable files are skipped, not fatal."""
        found = []
        for path in sorted(self.directory.glob("*.json")):
            request = self._read(path)
            if request is not None:
                found.append(request)
        return sorted(found, key=lambda r: (r.created_at, r.id))

    def get(self, request_id: str) -> ApprovalRequest | None:
        if not _REQUEST_ID.fullmatch(request_id):
            return None  # never a path outside the approvals dir
        return self._read(self._path(request_id))

    def open_request(self, action: str, reason: str, timeout_seconds: float) -> ApprovalRequest:
        """The request an agent is waiting on: a new one, or the same question asked again.

        An agent whose connection dropped (a bundle restart) asks again; it gets back the
        request it asked before, still pending or answered meanwhile, instead of a second one.
        """
        with self._locked():
            for request in self.all():
                same = request.action == action and request.reason == reason
                if same and not request.delivered:
                    self._audit(request, event="asked-again")
                    return request
            now = _now()
            request_id = secrets.token_hex(4)
            while self._path(request_id).exists():
                request_id = secrets.token_hex(4)
            request = ApprovalRequest(
                id=request_id,
                slug=self.slug,
                action=action,
                reason=reason,
                status="pending",
                created_at=_stamp(now),
                expires_at=_stamp(now + timedelta(seconds=timeout_seconds)),
            )
            self._write(request, event="requested")
            return request

    def answer(self, request_id: str, approved: bool, note: str | None) -> ApprovalRequest:
        """Record a person's answer; refuses requests already answered or timed out."""
        with self._locked():
            request = self._require(request_id)
            if request.pending and request.expired():
                request = replace(request, status="timed_out")
                self._write(request, event="timed_out")
            if request.status == "timed_out":
                raise BottleError(
                    f"approval request {request_id} ({request.action!r}) timed out at "
                    f"{request.expires_at} and counts as denied",
                    fix="the agent has to ask again; answer sooner or raise the bottle's "
                    "supervise timeout",
                )
            if not request.pending:
                raise BottleError(
                    f"approval request {request_id} was already answered: {request.status}"
                    + (f" at {request.answered_at}" if request.answered_at else ""),
                    fix="`bottle-engine approvals` lists the requests still waiting",
                )
            answered = replace(
                request,
                status="approved" if approved else "denied",
                answered_at=_stamp(_now()),
                note=note,
            )
            self._write(answered, event="answered")
            return answered

    def expire(self, request_id: str) -> ApprovalRequest:
        """Mark a pending request whose time ran out as timed out (denied); returns it as is
        if a person answered first."""
        with self._locked():
            request = self._require(request_id)
            if request.pending:
                request = replace(request, status="timed_out")
                self._write(request, event="timed_out")
            return request

    def mark_delivered(self, request_id: str) -> ApprovalRequest:
        with self._locked():
            request = replace(self._require(request_id), delivered=True)
            self._write(request, event="delivered")
            return request

    def _path(self, request_id: str) -> Path:
        return self.directory / f"{request_id}.json"

    def _require(self, request_id: str) -> ApprovalRequest:
        request = self.get(request_id)
        if request is None:
            raise BottleError(
                f"no approval request {request_id!r} in bottle {self.slug!r}",
                fix="`bottle-engine approvals` lists the request ids",
            )
        return request

    def _read(self, path: Path) -> ApprovalRequest | None:
        try:
            return ApprovalRequest.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write(self, request: ApprovalRequest, *, event: str) -> None:
        """Replace the request's file atomically, then append the change to the audit log."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            # Readable by the other side: host engine and bundle may run as different users.
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w") as handle:
                json.dump(request.to_dict(), handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self._path(request.id))
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self._audit(request, event=event)

    def _audit(self, request: ApprovalRequest, *, event: str) -> None:
        entry = {"time": _stamp(_now()), "event": event, **request.to_dict()}
        with self.audit_log.open("a") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # One lock file per bottle: the bundle and the host share it through the bind mount.
        self.directory.mkdir(parents=True, exist_ok=True)
        # Read-only is enough for flock, and works whichever side created the file.
        fd = os.open(self.directory / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


# The host-side API (CLI, language server): all bottles under the state dir.


def bottle_stores(slug: str | None = None) -> list[ApprovalStore]:
    """The approval stores of every bottle in the state dir, or of the one named `slug`."""
    from bottle_engine import state  # host only: needs platformdirs

    if slug is not None:
        if not state.bottle_dir(slug).is_dir():
            raise BottleError(
                f"no bottle {slug!r} in {state.state_dir() / 'bottles'}",
                fix="`bottle-engine ls` lists the bottles",
            )
        return [ApprovalStore(state.bottle_dir(slug), slug)]
    root = state.state_dir() / "bottles"
    if not root.is_dir():
        return []
    return [ApprovalStore(path, path.name) for path in sorted(root.iterdir()) if path.is_dir()]


def list_requests(slug: str | None = None, pending_only: bool = False) -> list[ApprovalRequest]:
    """Approval requests of one bottle or all, oldest first; expired ones count as timed out."""
    found = []
    for store in bottle_stores(slug):
        for request in store.all():
            if request.pending and request.expired():
                request = replace(request, status="timed_out")
            if pending_only and not request.pending:
                continue
            found.append(request)
    return sorted(found, key=lambda r: (r.created_at, r.slug, r.id))


def answer(
    request_id: str, approved: bool, note: str | None = None, slug: str | None = None
) -> ApprovalRequest:
    """Approve or deny a pending request, found by id in `slug` or in any bottle."""
    stores = [store for store in bottle_stores(slug) if store.get(request_id) is not None]
    if not stores:
        where = f"bottle {slug!r}" if slug else "any bottle"
        raise BottleError(
            f"no approval request {request_id!r} in {where}",
            fix="`bottle-engine approvals` lists the pending requests and their ids",
        )
    if len(stores) > 1:
        raise BottleError(
            f"approval request id {request_id!r} exists in several bottles: "
            + ", ".join(store.slug for store in stores),
            fix="name the bottle: `bottle-engine approve ID --bottle SLUG`",
        )
    return stores[0].answer(request_id, approved, note)
