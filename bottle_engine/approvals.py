"""Human approval requests: one JSON file per open request in the bottle's state dir.

The supervise MCP server (inside the bundle, where the bottle's state dir is mounted) creates a
request and waits; a person answers from the host (`bottle-engine approve|deny`, or VS Code
through the language server), both through `ApprovalStore`. Files are replaced atomically under
a lock, so an answer is never half written and survives a bundle restart; every change is also
appended to ``approvals.jsonl`` (the bottle's approval audit log, rotated once at a size cap).

The agent is hostile and may flood a person with requests, so a bottle has at most
`ApprovalLimits.max_pending` requests waiting and a token-bucket rate of new ones; beyond either,
`open_request` raises `ApprovalRefused` and nothing is written. A request's file is removed once
its answer reached the agent, or a while after an answer nobody picked up: the audit log keeps
the history, the directory only what is open. Opening a request reads no earlier request (an
index by question finds a re-ask; the rest of the directory is read only to sweep it when the
pending cap is reached, and then holds at most the cap plus the answers kept for a re-ask).

Two kinds of request share the store, its caps and its audit log: ``action`` (the agent asked
through the supervise tool) and ``egress`` (the bundle's proxy holds a request to a host no rule
allows, `[bottles.NAME.egress] ask = true`). Concurrent egress asks for one ``host:port`` are
one question, so they find one request; an egress answer may be for that request only
(`once`).

Layout: ``<bottle state dir>/approvals/<id>.json``, ``approvals/.q-<question hash>`` (the open
request asking that question), ``approvals/.rate.json`` (the rate bucket) and
``<bottle state dir>/approvals.jsonl``.

That dir is mounted read-write into the bundle, which parses the agent's traffic, while the
person's `approve` (often as root) writes there: every file is opened relative to the approvals
dir opened without following a link, never through a symbolic link, only as a regular file, and
read up to a bound. A link planted there made an answer append a line of agent text to any host
file (`~/.bashrc`: its `$(...)` ran in the person's next shell) or chmod and chown one
(tests/unit/test_approvals_dir_attacks.py).
This module imports only the standard library at the top, because the bundle imports it too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import re
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from bottle_engine.bundle.config import APPROVALS_DIR_NAME, APPROVALS_LOG_NAME
from bottle_engine.errors import BottleError
from bottle_engine.manifest.egress_rules import is_host_name
from bottle_engine.regular_files import load_json, read_open_regular

Status = Literal["pending", "approved", "denied", "timed_out"]
RequestKind = Literal["action", "egress"]

_REQUEST_ID = re.compile(r"[0-9a-f]{8}")
_REQUEST_FILE = re.compile(r"[0-9a-f]{8}\.json")
AUDIT_LOG = APPROVALS_LOG_NAME  # the name tests and callers know it by
_RATE_FILE = ".rate.json"
_QUESTION_PREFIX = ".q-"
_RECENTLY_DELIVERED = 64  # answers remembered in memory for a second waiter on the same request
MAX_EGRESS_PATH_CHARS = 1000  # of a held request's path, kept for the person to read
# A request file holds two texts cut at 2000 characters and a path at 1000, each at most six
# bytes a character as JSON: a larger file is not one this store wrote, and is skipped unread.
MAX_REQUEST_FILE_BYTES = 64 * 1024
# Request files the host reads of one bottle. Its bundle keeps at most `max_pending` waiting
# and the answers nobody picked up for an hour (at most the burst and an hour's rate); a dir
# holding more was not written by this store, and the host reads none of it: a taken-over
# bundle wrote 20,000 and the person's listing read them all, every 2 s in the editor.
MAX_OPEN_REQUEST_FILES = 256
# Entries of any name the host reads of that dir: beside each request file its store keeps at
# most one index (`.q-`), then the rate file, the lock and the temp files of writes under way.
# A taken-over bundle filled it with other names, and every listing walked them all.
MAX_APPROVALS_DIR_ENTRIES = 2 * MAX_OPEN_REQUEST_FILES + 16
_NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO never hangs open()
# The lock is held for a moment per change; a holder past this is no store's: a taken-over
# bundle kept it, and each answer (one of the language server's few worker threads) waited.
LOCK_WAIT_SECONDS = 10.0


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ApprovalLimits:
    """How much of a person's attention and of the host's disk one bottle's agent may take.

    The defaults are documented in the README's security model; tests pass smaller ones."""

    max_pending: int = 10  # requests waiting for a person at once
    burst: int = 10  # new requests the agent may make back to back
    refill_seconds: float = 30.0  # then one more every this many seconds
    keep_answered_seconds: float = 3600.0  # an answer the agent never picked up, kept for a re-ask
    audit_log_max_bytes: int = 8 * 1024 * 1024  # then approvals.jsonl becomes approvals.jsonl.1


class ApprovalsFlooded(BottleError):
    """A bottle's approvals dir holds more request files than its bundle keeps: none is read."""


class ApprovalRefused(BottleError):
    """The bottle asked for more than its limits allow; nothing was recorded."""

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class RateBucket:
    """A token bucket: `tokens` left at epoch second `at`."""

    tokens: float
    at: float


def take_token(
    bucket: RateBucket | None, now: float, limits: ApprovalLimits
) -> tuple[RateBucket, float]:
    """Pure: the bucket after one request at `now`, and 0.0 when the request may go ahead, or
    else the seconds until it may (the bucket is then returned unchanged but refilled)."""
    if bucket is None:
        bucket = RateBucket(tokens=float(limits.burst), at=now)
    elapsed = max(0.0, now - bucket.at)  # a clock that went back refills nothing
    tokens = min(float(limits.burst), bucket.tokens + elapsed / limits.refill_seconds)
    if tokens >= 1.0:
        return RateBucket(tokens=tokens - 1.0, at=now), 0.0
    return RateBucket(tokens=tokens, at=now), (1.0 - tokens) * limits.refill_seconds


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
    kind: RequestKind = "action"
    # For kind "egress": the destination the proxy holds a request for, and that request.
    host: str | None = None
    port: int | None = None
    method: str | None = None
    path: str | None = None  # plain HTTP only: inside a CONNECT the proxy sees no path
    once: bool = False  # the answer is for this request only, not for the host:port
    answered_by: str | None = None  # who answered: "cli (user)", "editor (user)"

    @property
    def question(self) -> str:
        """A file-name-safe key for what is asked; the same question always gives the same key.

        An egress ask is about its host:port, whatever method and path the request that raised
        it had: concurrent requests to one destination make one question for a person."""
        if self.kind == "egress":
            return egress_question(self.host, self.port)
        return question_key(self.action, self.reason)

    @property
    def fingerprint(self) -> str:
        """What a person reads of the request, as a key: its bottle, kind and both texts (an
        egress ask's action names its method, destination and path). `approvals --json` gives
        it, and an answer naming it is refused once the request says anything else. 128 bits:
        the bundle writes both the request read and its rewrite, so it needs no more than a
        collision, which a shorter key would make cheap."""
        return _hash_key(["shown", self.slug, self.kind, self.action, self.reason])

    @property
    def answer_key(self) -> str:
        """What a person's answer decided, as a key: the request, its question and the answer
        (the host keeps the keys of the answers people gave, `config_seal.vouch_answer`)."""
        return _hash_key(["answer", self.id, self.question, self.status, self.once])

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    def expired(self, now: datetime | None = None) -> bool:
        return datetime.fromisoformat(self.expires_at) <= (now or _now())

    def settled_at(self) -> datetime:
        """When the request stopped waiting: its answer, or its time running out."""
        return datetime.fromisoformat(self.answered_at or self.expires_at)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> ApprovalRequest:
        """The request `raw` holds; ValueError or TypeError when it is not one this store
        writes (the file may be a bundle's own): every reader then compares, sorts and prints
        its fields without a check, and one bad field failed the listing of every bottle."""
        fields = cls.__dataclass_fields__
        request = cls(**{key: value for key, value in raw.items() if key in fields})  # type: ignore[arg-type]
        request._check_types()
        return request

    def _check_types(self) -> None:
        texts = ("id", "slug", "action", "reason", "created_at", "expires_at")
        optional = ("answered_at", "note", "host", "method", "path", "answered_by")
        if not all(isinstance(getattr(self, name), str) for name in texts) or not all(
            isinstance(getattr(self, name), str | None) for name in optional
        ):
            raise TypeError("an approval request's texts are strings")
        if type(self.delivered) is not bool or type(self.once) is not bool:
            raise TypeError("an approval request's flags are booleans")
        if self.port is not None and type(self.port) is not int:
            raise TypeError("an approval request's port is an integer")
        if self.status not in get_args(Status) or self.kind not in get_args(RequestKind):
            raise ValueError("an approval request's status or kind is not one it can have")
        if self.kind == "egress" and not _shows_its_destination(self):
            raise ValueError("an egress ask's action and reason name another destination")
        for stamp in (self.created_at, self.expires_at, self.answered_at):
            if stamp is not None and datetime.fromisoformat(stamp).utcoffset() is None:
                raise ValueError("an approval request's times are in UTC")


def kept_path(path: str | None) -> str | None:
    """Pure: what the store keeps of a held request's path, for the person to read."""
    return None if path is None else path[:MAX_EGRESS_PATH_CHARS]


def held_texts(host: str, port: int, method: str, path: str | None) -> tuple[str, str]:
    """Pure: the action and reason a person reads of an egress ask for the held request
    `method` `path` (its whole path: what is kept of it, and how much was cut)."""
    cut = 0 if path is None else max(0, len(path) - MAX_EGRESS_PATH_CHARS)
    return egress_texts(host, port, method, kept_path(path), cut)


def once_scope(method: str | None) -> str:
    """Pure: what an egress answer `--once` lets through, as a person is told it. A CONNECT's
    is its tunnel, which the proxy relays unread for as long as the agent keeps it open: "this
    request only" read as one request, and gave the agent a lasting pipe to the host."""
    if method is not None and method.upper() == "CONNECT":
        return (
            "this one tunnel only, and every request the agent sends through it for as long "
            "as it keeps it open"
        )
    return "this request only"


def egress_texts(
    host: str, port: int, method: str, path: str | None, cut: int = 0
) -> tuple[str, str]:
    """Pure: the action and reason a person reads of an egress ask (`path` as kept, `cut` the
    characters of it left out)."""
    target = f"http://{host}:{port}{path}" if path is not None else f"{host}:{port}"
    if cut:
        # Said where the person reads it: a cut path looked like the whole URL, and an answer
        # --once let the request with the rest (`?leak=...`) go.
        target += f" …[{cut} more characters cut by bot-bottle]"
    reason = (
        f"{host}:{port} is not on the bottle's egress allowlist; the proxy holds the request "
        "until a person answers"
    )
    return f"egress: {method} {target}", reason


_CUT_MARKER = re.compile(r" …\[([1-9][0-9]*) more characters cut by bot-bottle\]")


def _shows_its_destination(request: ApprovalRequest) -> bool:
    """Does the text a person reads of egress ask `request` name the destination its fields
    (what the proxy obeys, and the engine vouches for) hold? The bundle writes the file: an ask
    that read `docs.example:443` and held `collector.example` was approved as the one, vouched
    for, kept by a resume, and let the fresh bundle reach the other."""
    host, port, method = request.host, request.port, request.method
    if host is None or port is None or method is None or not is_host_name(host):
        return False  # a host with ':' or '/' in it could make another's text
    cut = 0
    marker = _CUT_MARKER.search(request.action)
    if marker is not None and marker.end() == len(request.action):
        cut = int(marker.group(1))
    expected = egress_texts(host, port, method, request.path, cut)
    return (request.action, request.reason) == expected


def question_key(action: str, reason: str) -> str:
    """A file-name-safe key for one question; the same text always gives the same key."""
    return _hash_key([action, reason])


def egress_question(host: str | None, port: int | None) -> str:
    """The question key of an egress ask about `host`:`port` (what the Egress view shows)."""
    # Three parts: never the key of an agent's (action, reason), whatever it writes.
    return _hash_key(["egress", host, port])


def _hash_key(parts: list[object]) -> str:
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:32]


class ApprovalStore:
    """The approval requests of one bottle, kept under its state dir."""

    def __init__(self, bottle_dir: Path, slug: str, limits: ApprovalLimits | None = None) -> None:
        self.slug = slug
        self.limits = limits or ApprovalLimits()
        self.directory = bottle_dir / APPROVALS_DIR_NAME
        self.audit_log = bottle_dir / APPROVALS_LOG_NAME
        self._delivered: OrderedDict[str, ApprovalRequest] = OrderedDict()

    def all(self) -> list[ApprovalRequest]:
        """Every open request (waiting, or answered and not yet returned to the agent), oldest
        first; unreadable files are skipped, not fatal, and so is a dir the bundle closed to its
        owner (an engine not running as root shares its user with the bundle): the listing of
        every bottle failed on it. `ApprovalsFlooded` when the dir holds more request files
        than a bundle keeps (`MAX_OPEN_REQUEST_FILES`): then none is read."""
        try:
            paths = self._host_request_files()
        except PermissionError:
            return []
        found = []
        for path in paths:
            request = self._read(path)
            if request is not None:
                found.append(request)
        return sorted(found, key=lambda r: (r.created_at, r.id))

    def get(self, request_id: str) -> ApprovalRequest | None:
        if not _REQUEST_ID.fullmatch(request_id):
            return None  # never a path outside the approvals dir
        return self._read(self._path(request_id))

    def history(self, request_id: str) -> ApprovalRequest | None:
        """The last state the audit log holds of a request (for one that left the store)."""
        if not _REQUEST_ID.fullmatch(request_id):
            return None
        last = None
        bound = 2 * self.limits.audit_log_max_bytes  # one append may pass the rotation size
        for log in (self.audit_log.with_name(AUDIT_LOG + ".1"), self.audit_log):
            try:
                raw = read_open_regular(os.open(log, os.O_RDONLY | _NO_FOLLOW), bound)
            except OSError:
                continue
            lines = raw.decode("utf-8", errors="replace").splitlines()
            for line in lines:
                if f'"id": "{request_id}"' not in line:
                    continue
                try:
                    last = ApprovalRequest.from_dict(load_json(line))
                except (ValueError, TypeError):
                    continue
        return last

    def delivered(self, request_id: str) -> ApprovalRequest | None:
        """The answer this store returned to an agent lately, after its file is gone."""
        return self._delivered.get(request_id)

    def open_request(self, action: str, reason: str, timeout_seconds: float) -> ApprovalRequest:
        """The request an agent is waiting on: a new one, or the same question asked again.

        An agent whose connection dropped (a bundle restart) asks again; it gets back the
        request it asked before, still pending or answered meanwhile, instead of a second one.
        A new request beyond the bottle's pending cap or rate raises `ApprovalRefused`.
        """
        return self._open(self._asking(action, reason), timeout_seconds)

    def open_egress_request(
        self, host: str, port: int, method: str, path: str | None, timeout_seconds: float
    ) -> ApprovalRequest:
        """The proxy holds a request to `host`:`port`, which no egress rule allows: the open
        question about that destination (one for all the requests held for it), or a new one.
        Beyond the bottle's pending cap or rate, raises `ApprovalRefused`."""
        shown_path = kept_path(path)
        action, reason = held_texts(host, port, method, path)
        asked = replace(
            self._asking(action, reason),
            kind="egress",
            host=host,
            port=port,
            method=method,
            path=shown_path,
        )
        return self._open(asked, timeout_seconds)

    def _asking(self, action: str, reason: str) -> ApprovalRequest:
        """A question not yet opened: `_open` gives it its id and times."""
        return ApprovalRequest(
            id="",
            slug=self.slug,
            action=action,
            reason=reason,
            status="pending",
            created_at="",
            expires_at="",
        )

    def _open(self, asked: ApprovalRequest, timeout_seconds: float) -> ApprovalRequest:
        self._check_readable(asked)
        with self._locked():
            key = asked.question
            before = self._asked_before(key)
            if before is not None:
                # Logged only while the rate allows a request: each line holds the request's
                # texts, and re-asks beyond the rate pushed the person's answers out of the log.
                if self._rate_wait() == 0:
                    self._audit(before, event="asked-again")
                return before
            self._check_pending_cap()
            self._take_rate_token()
            now = _now()
            request_id = secrets.token_hex(4)
            while os.path.lexists(self._path(request_id)):
                request_id = secrets.token_hex(4)
            request = replace(
                asked,
                id=request_id,
                created_at=_stamp(now),
                expires_at=_stamp(now + timedelta(seconds=timeout_seconds)),
            )
            self._write(request, event="requested")
            self._replace_file(self._question_path(key), request.id)
            return request

    def answer(
        self,
        request_id: str,
        approved: bool,
        note: str | None,
        *,
        once: bool = False,
        by: str | None = None,
        question: str | None = None,
        fingerprint: str | None = None,
    ) -> ApprovalRequest:
        """Record a person's answer; refuses requests already answered or timed out.

        `once` (egress asks only): the answer is for the held request alone; otherwise it
        stands for its host:port for the rest of the bottle's life. `by` names who answered.
        `question` (the key of the question the person was shown) and `fingerprint` (of the
        request as read, `ApprovalRequest.fingerprint`): the answer is refused if the request
        asks another by now (its bundle rewrote the file meanwhile)."""
        with self._locked():
            request = self._require(request_id)
            if (question is not None and request.question != question) or (
                fingerprint is not None and request.fingerprint != fingerprint
            ):
                raise self._not_what_was_read(request)
            if once and request.kind != "egress":
                raise BottleError(
                    f"approval request {request_id} is the agent's own request, which is "
                    "answered once anyway; --once is for egress asks",
                    fix=f"answer it without --once: `bottle-engine approve {request_id}`",
                )
            if request.pending and request.expired():
                request = replace(request, status="timed_out")
                self._write(request, event="timed_out")
            if request.status == "timed_out":
                raise BottleError(
                    f"approval request {request_id} timed out at "
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
                once=once,
                answered_by=by,
            )
            self._write(answered, event="answered")
            return answered

    def _not_what_was_read(self, request: ApprovalRequest) -> BottleError:
        # An egress ask's host passed `is_host_name`: safe to name; an agent's text is not.
        now = (
            f"; it now asks about {request.host}:{request.port}" if request.kind == "egress" else ""
        )
        return BottleError(
            f"approval request {request.id} of bottle {self.slug} no longer asks what was read "
            f"(its bundle, which can write the bottle's state dir, rewrote it{now}): nothing "
            "was answered",
            fix=f"read it again with `bottle-engine approve {request.id}` in a terminal (it "
            "shows the request before answering) or `bottle-engine approvals "
            f"{self.slug} --json`; its bundle may have been taken over by the agent's traffic",
        )

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
        """The answer reached the agent: audit it and remove the request's file (the audit log
        keeps the request and its answer)."""
        with self._locked():
            request = self.delivered(request_id)
            if request is not None:
                return request  # a second waiter on the same request
            request = replace(self._require(request_id), delivered=True)
            self._audit(request, event="delivered")
            self._remove(request)
            self._delivered[request.id] = request
            while len(self._delivered) > _RECENTLY_DELIVERED:
                self._delivered.popitem(last=False)
            return request

    def drop_approvals(self, vouched: Callable[[ApprovalRequest], bool]) -> list[ApprovalRequest]:
        """Remove each approval in the dir that `vouched` does not confirm, each audited; the
        requests removed. The bundle can write this dir: a taken-over one can write an approval
        no person gave, which the fresh bundle `resume` starts would obey."""
        dropped: list[ApprovalRequest] = []
        try:
            if not self._host_request_files():
                return dropped  # not even the dir: the lock would make it, as the engine's user
        except PermissionError as exc:  # closed by the bundle, which shares the engine's user
            raise BottleError(
                f"bottle {self.slug}: its approvals dir {self.directory} cannot be read "
                "(its bundle, which may have been taken over by the agent's traffic, closed it)",
                fix=f"remove the bottle (`bottle-engine stop --rm {self.slug}`), then launch again",
            ) from exc
        with self._locked():
            for path in self._host_request_files():
                request = self._read(path)
                if request is None or not request.approved or vouched(request):
                    continue
                self._audit(request, event="dropped-unvouched")
                self._remove(request)
                dropped.append(request)
        return dropped

    # -- limits ------------------------------------------------------------------------------

    def _asked_before(self, key: str) -> ApprovalRequest | None:
        """The open request asking this very question, through the index (one file read)."""
        try:
            request_id = self._read_file(self._question_path(key).name).decode().strip()
        except (OSError, UnicodeDecodeError):
            return None
        request = self.get(request_id)
        if request is None or request.question != key:
            self._question_path(key).unlink(missing_ok=True)  # stale: its request is gone
            return None
        return None if request.delivered else request

    def _check_pending_cap(self) -> None:
        """Refuse a new request while `max_pending` wait. Below the cap in open files nothing
        is read; at the cap the open files are swept (expired ones time out, answers nobody
        picked up in `keep_answered_seconds` are removed) and the pending ones counted."""
        if len(self._request_files()) < self.limits.max_pending:
            return
        pending = self._sweep()
        if pending >= self.limits.max_pending:
            raise ApprovalRefused(
                f"{pending} approval requests of bottle {self.slug} are already waiting for a "
                f"person (at most {self.limits.max_pending}); this one was not recorded",
                retry_after_seconds=self.limits.refill_seconds,
            )

    def _sweep(self) -> int:
        """Time out expired requests and prune stale answers; the number still pending."""
        now = _now()
        keep = timedelta(seconds=self.limits.keep_answered_seconds)
        pending = 0
        for path in self._request_files():
            request = self._read(path)
            if request is None:
                continue
            if request.pending and request.expired(now):
                request = replace(request, status="timed_out")
                self._write(request, event="timed_out")
            if request.pending:
                pending += 1
            elif request.settled_at() + keep <= now:
                self._audit(request, event="pruned")
                self._remove(request)
        return pending

    def _check_readable(self, asked: ApprovalRequest) -> None:
        """Refuse a request whose file would be larger than this store reads back: nobody
        would be shown it, no sweep would count or prune it, and an agent asking about a
        40,000-letter HTTP method left one more such file per ask, until the host read none
        of the bottle's requests (`MAX_OPEN_REQUEST_FILES`)."""
        stamp = _stamp(_now())  # the times it will hold are as long as these
        written = replace(asked, id="0" * 8, created_at=stamp, expires_at=stamp)
        size = len(_file_text(written).encode("utf-8"))
        if size > MAX_REQUEST_FILE_BYTES:
            raise ApprovalRefused(
                f"this approval request of bottle {self.slug} would be {size} bytes, more than "
                f"a person's listing reads ({MAX_REQUEST_FILE_BYTES}); it was not recorded",
                retry_after_seconds=self.limits.refill_seconds,
            )

    def _rate_wait(self) -> float:
        """Take one token of the bottle's rate: 0.0, or the seconds until one is there."""
        path = self.directory / _RATE_FILE
        try:
            raw = load_json(self._read_file(_RATE_FILE))
            bucket: RateBucket | None = RateBucket(float(raw["tokens"]), float(raw["at"]))
        except (OSError, ValueError, KeyError, TypeError):
            bucket = None  # first request, or a damaged file: a full bucket
        bucket, wait = take_token(bucket, _now().timestamp(), self.limits)
        self._replace_file(path, json.dumps(asdict(bucket)))
        return wait

    def _take_rate_token(self) -> None:
        wait = self._rate_wait()
        if wait > 0:
            per_hour = round(3600 / self.limits.refill_seconds)
            raise ApprovalRefused(
                f"bottle {self.slug} asked for approval too often (at most {self.limits.burst} "
                f"requests at once, then {per_hour} an hour); this one was not recorded",
                retry_after_seconds=wait,
            )

    # -- files -------------------------------------------------------------------------------

    def _path(self, request_id: str) -> Path:
        return self.directory / f"{request_id}.json"

    def _question_path(self, key: str) -> Path:
        return self.directory / f"{_QUESTION_PREFIX}{key}"

    def _request_files(self) -> list[Path]:
        """The open requests' files, by name only (temp files and the index are not listed)."""
        return self._request_paths(self._entry_names())

    def _request_paths(self, names: list[str]) -> list[Path]:
        return [self.directory / name for name in sorted(names) if _REQUEST_FILE.fullmatch(name)]

    def _entry_names(self, max_entries: int | None = None) -> list[str]:
        """The names in the approvals dir, in its own order, at most `max_entries` of them."""
        try:
            with self._opened_dir(create=False) as directory, os.scandir(directory) as entries:
                return [entry.name for entry in itertools.islice(entries, max_entries)]
        except (FileNotFoundError, BottleError):
            return []  # no requests yet, or a link in the dir's place: none of ours

    def _host_request_files(self) -> list[Path]:
        """`_request_files` for the host, which reads no more than a bundle keeps: a dir
        holding more than `MAX_OPEN_REQUEST_FILES` request files, or more than
        `MAX_APPROVALS_DIR_ENTRIES` entries of any name, raises `ApprovalsFlooded`, none of
        it read (a taken-over bundle can put any number of names in the dir)."""
        names = self._entry_names(MAX_APPROVALS_DIR_ENTRIES + 1)
        paths = self._request_paths(names)
        if len(paths) > MAX_OPEN_REQUEST_FILES:
            raise self._flooded(f"more than {MAX_OPEN_REQUEST_FILES} request files")
        if len(names) > MAX_APPROVALS_DIR_ENTRIES:
            raise self._flooded(f"more than {MAX_APPROVALS_DIR_ENTRIES} entries")
        return paths

    def _flooded(self, holding: str) -> ApprovalsFlooded:
        return ApprovalsFlooded(
            f"bottle {self.slug}: its approvals dir {self.directory} holds {holding}, far more "
            f"than its bundle keeps (at most {self.limits.max_pending} waiting); none of them "
            "was read",
            fix=f"its bundle may have been taken over by the agent's traffic: remove the "
            f"bottle (`bottle-engine stop --rm {self.slug}`)",
        )

    def _require(self, request_id: str) -> ApprovalRequest:
        request = self.get(request_id)
        if request is None:
            raise BottleError(
                f"no open approval request {request_id!r} in bottle {self.slug!r}",
                fix="`bottle-engine approvals` lists the request ids; answered requests are "
                f"in {self.audit_log}",
            )
        return request

    def _read(self, path: Path) -> ApprovalRequest | None:
        """The request in `path`, as of this store's bottle: the bundle writes the file, and
        one naming another bottle was listed, answered and vouched for as that bottle's."""
        try:
            request = ApprovalRequest.from_dict(load_json(self._read_file(path.name)))
        except (OSError, BottleError, ValueError, TypeError):
            return None  # a link, a FIFO, an oversized or damaged file: not a request of ours
        if request.id != path.stem:
            return None  # a file naming another request than its own: not one of ours
        return replace(request, slug=self.slug)

    def _read_file(self, name: str) -> bytes:
        """The regular file `name` in the approvals dir, never through a link; OSError when it
        is not one, or larger than a request file can be."""
        with self._opened_dir(create=False) as directory:
            descriptor = os.open(name, os.O_RDONLY | _NO_FOLLOW, dir_fd=directory)
        return read_open_regular(descriptor, MAX_REQUEST_FILE_BYTES)

    def _write(self, request: ApprovalRequest, *, event: str) -> None:
        """Append the change to the audit log, then replace the request's file atomically (the
        log first: a log the store refuses to write to leaves the request as it was)."""
        self._audit(request, event=event)
        self._replace_file(self._path(request.id), _file_text(request))

    def _remove(self, request: ApprovalRequest) -> None:
        index = self._question_path(request.question).name
        with self._opened_dir(create=False) as directory:
            with suppress_missing():
                os.unlink(self._path(request.id).name, dir_fd=directory)
            try:
                if self._read_file(index).decode(errors="replace").strip() == request.id:
                    with suppress_missing():
                        os.unlink(index, dir_fd=directory)
            except OSError:
                pass

    def _replace_file(self, path: Path, text: str) -> None:
        with self._opened_dir(create=True) as directory:
            temp = f".tmp-{secrets.token_hex(8)}.json"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW
            fd = os.open(temp, flags, 0o600, dir_fd=directory)
            try:
                self._hand_to_directory_owner(fd, directory)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, path.name, src_dir_fd=directory, dst_dir_fd=directory)
            except BaseException:
                with suppress_missing():
                    os.unlink(temp, dir_fd=directory)
                raise

    def _hand_to_directory_owner(self, fd: int, directory: int) -> None:
        """Private to the bottle: 0600 and owned by whoever owns the approvals dir (the bundle's
        own uid when the engine runs as root), so the host engine and the bundle both read the
        file and no other account does. `fd` is a regular file opened without following a
        link, `directory` the approvals dir opened the same way: nothing else is changed."""
        os.fchmod(fd, 0o600)
        if os.geteuid() == 0:
            owner = os.fstat(directory)
            os.fchown(fd, owner.st_uid, owner.st_gid)

    def _audit(self, request: ApprovalRequest, *, event: str) -> None:
        entry = {"time": _stamp(_now()), "event": event, **request.to_dict()}
        line = json.dumps(entry, sort_keys=True) + "\n"
        try:
            if os.lstat(self.audit_log).st_size + len(line) > self.limits.audit_log_max_bytes:
                # One old generation is kept: the log's disk use stays under twice the cap.
                os.replace(self.audit_log, self.audit_log.with_name(AUDIT_LOG + ".1"))
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NO_FOLLOW
        fd = self._open_regular(self.audit_log, flags)
        with os.fdopen(fd, "w") as log:
            # The engine (root) rotating the log made the new one its own: the bundle could
            # open no request after that answer.
            bottle_dir = os.open(self.audit_log.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                self._hand_to_directory_owner(log.fileno(), bottle_dir)
            finally:
                os.close(bottle_dir)
            log.write(line)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # One lock file per bottle: the bundle and the host share it through the bind mount.
        with self._opened_dir(create=True) as directory:
            # Read-only is enough for flock, and works whichever side created the file.
            flags = os.O_RDONLY | os.O_CREAT | _NO_FOLLOW
            fd = self._open_regular(self.directory / ".lock", flags, directory)
            try:
                self._hand_to_directory_owner(fd, directory)
                self._take_lock(fd)
                yield
            finally:
                os.close(fd)  # releases the lock

    def _take_lock(self, fd: int) -> None:
        """The lock on `fd`, waited for `LOCK_WAIT_SECONDS` at most (`BottleError` then)."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BottleError(
                        f"bottle {self.slug}: the lock of its approvals ({self.directory}/.lock) "
                        f"was held for over {LOCK_WAIT_SECONDS:g} s, which its store never does: "
                        "nothing was written",
                        fix=f"its bundle may have been taken over by the agent's traffic: remove "
                        f"the bottle (`bottle-engine stop --rm {self.slug}`)",
                    ) from None
                time.sleep(0.02)

    @contextmanager
    def _opened_dir(self, *, create: bool) -> Iterator[int]:
        """The approvals dir as a descriptor, opened without following a link (the bundle can
        put one in its place at any time; every file is then opened relative to this)."""
        if create:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            with suppress_missing(FileExistsError):
                os.mkdir(self.directory, 0o700)
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._tampered(self.directory) from exc
            raise
        try:
            yield fd
        finally:
            os.close(fd)

    def _open_regular(self, path: Path, flags: int, directory: int | None = None) -> int:
        """Open `path` (by name in `directory` when given) with `flags`, which hold
        `_NO_FOLLOW`: a link, FIFO or device in its place is a `BottleError` naming it."""
        try:
            if directory is None:
                fd = os.open(path, flags, 0o600)
            else:
                fd = os.open(path.name, flags, 0o600, dir_fd=directory)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.ENODEV):
                raise self._tampered(path) from exc
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._tampered(path)
        return fd

    def _tampered(self, path: Path) -> BottleError:
        return BottleError(
            f"{path} is a symbolic link or not a regular file, not a file bot-bottle wrote: "
            "nothing written (the bottle's bundle, which can write its state dir, put it there)",
            fix=f"remove the bottle (`bottle-engine stop --rm {self.slug}`); its bundle may "
            "have been taken over by the agent's traffic",
        )


def _file_text(request: ApprovalRequest) -> str:
    """What a request's file holds."""
    return json.dumps(request.to_dict(), indent=2, sort_keys=True)


def suppress_missing(*also: type[OSError]) -> contextlib.suppress:
    """Ignore a file that is already gone (and the errors in `also`)."""
    return contextlib.suppress(FileNotFoundError, *also)


# The host-side API (CLI, language server): all bottles under the state dir.


def bottle_stores(slug: str | None = None) -> list[ApprovalStore]:
    """The approval stores of every bottle in the state dir, or of the one named `slug`."""
    from bottle_engine import state  # host only: needs platformdirs
    from bottle_engine.bottle_dir import BottleDir

    if slug is not None:
        bottle_dir = BottleDir.of(slug)
        if not bottle_dir.path.is_dir():
            raise BottleError(
                f"no bottle {slug!r} in {state.state_dir() / 'bottles'}",
                fix="`bottle-engine ls` lists the bottles",
            )
        return [ApprovalStore(bottle_dir.path, slug)]
    root = state.state_dir() / "bottles"
    if not root.is_dir():
        return []
    return [ApprovalStore(path, path.name) for path in sorted(root.iterdir()) if path.is_dir()]


def list_requests(
    slug: str | None = None,
    pending_only: bool = False,
    problems: list[BottleError] | None = None,
) -> list[ApprovalRequest]:
    """Approval requests of one bottle or all, oldest first; expired ones count as timed out.
    A bottle whose dir is flooded (`ApprovalsFlooded`) is left out, and the error appended to
    `problems`: one bundle's files must not hide every other bottle's requests."""
    found = []
    for store in bottle_stores(slug):
        try:
            requests = store.all()
        except ApprovalsFlooded as flooded:
            if problems is not None:
                problems.append(flooded)
            continue
        for request in requests:
            if request.pending and request.expired():
                request = replace(request, status="timed_out")
            if pending_only and not request.pending:
                continue
            found.append(request)
    return sorted(found, key=lambda r: (r.created_at, r.slug, r.id))


def answer(
    request_id: str,
    approved: bool,
    note: str | None = None,
    slug: str | None = None,
    *,
    once: bool = False,
    by: str | None = None,
    question: str | None = None,
    fingerprint: str | None = None,
) -> ApprovalRequest:
    """Approve or deny a pending request, found by id in `slug` or in any bottle (`question`
    and `fingerprint`: what the person was shown, `ApprovalStore.answer`)."""
    store, _ = find(request_id, slug)
    answered = store.answer(
        request_id,
        approved,
        note,
        once=once,
        by=by,
        question=question,
        fingerprint=fingerprint,
    )
    from bottle_engine import config_seal  # host only: the records dir

    config_seal.vouch_answer(answered.slug, answered)
    return answered


def find(request_id: str, slug: str | None = None) -> tuple[ApprovalStore, ApprovalRequest]:
    """The open request `request_id` in `slug` or in any bottle, and its bottle's store; a
    `BottleError` naming the way on when no bottle, or more than one, has it open."""
    found = [
        (store, request)
        for store in bottle_stores(slug)
        if (request := store.get(request_id)) is not None
    ]
    stores = [store for store, _ in found]
    if not stores:
        for store in bottle_stores(slug):
            ended = store.history(request_id)
            if ended is not None and not ended.pending:
                raise BottleError(
                    f"approval request {request_id} of bottle {store.slug} has ended: "
                    f"{ended.status}"
                    + (", and the agent has the answer" if ended.delivered else ""),
                    fix="the agent has to ask again; `bottle-engine approvals` lists the "
                    "requests still waiting",
                )
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
    return found[0]
