"""Asking a person before unlisted egress (`[bottles.NAME.egress] ask = true`).

The proxy holds a request (plain HTTP or CONNECT) to a host name no rule allows and calls
`EgressAsker.ask`, which opens an approval request of kind "egress" in the bottle's approval
store (its caps and rate apply) and polls it without blocking the proxy's event loop (file
reads run in a worker thread) until a person answers with `bottle-engine approve|deny ID` or
the editor, or the timeout passes (a denial).

* Requests held for one host:port at the same time wait on one question.
* `approve ID` / `deny ID` stand for that host:port until the bundle stops: later requests are
  decided at once, without asking. `approve ID --once` / `deny ID --once` are for the held
  request that asked (the one the person was shown) only; the others held with it ask again,
  and so does a request a restarted proxy holds with another method or path than the one
  shown (the store's question is the host:port, so it waits on the request held before).
* A timeout or a refusal by the store's caps ends the wait of every request held for it, and is
  not remembered.

Every ask and every answer (who answered, how long the request waited) goes into the egress
audit log. An approval only lets the destination past the allowlist: the address checks still
apply (`egress_policy.decide_approved`) and it never binds a secret.
This module imports no mitmproxy, so it is tested on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from bottle_engine.approvals import (
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    held_texts,
    kept_path,
    once_scope,
)
from bottle_engine.bundle.audit import AuditEntry, Stage, timestamp
from bottle_engine.bundle.egress_policy import (
    ASK_DENIED,
    ASK_REFUSED,
    ASK_TIMED_OUT,
    Decision,
    EgressPolicy,
)
from bottle_engine.errors import BottleError

POLL_SECONDS = 0.25


@dataclass(frozen=True)
class AskAnswer:
    """What a held request learns: may it go, under which rule, and why."""

    allowed: bool
    rule: str  # "approved:ID" when allowed, else ASK_DENIED / ASK_TIMED_OUT / ASK_REFUSED
    reason: str
    request_id: str = ""
    once: bool = False
    answered_by: str = ""
    waited_seconds: float = 0.0

    def denial(self, policy: EgressPolicy, host: str, port: int) -> Decision:
        entry = host if port in (80, 443) else f"{host}:{port}"
        return Decision(
            False,
            self.rule,
            self.reason,
            f'ask again, or add "{entry}" to [bottles.{policy.bottle_name}.egress] allow in '
            "bottle.toml",
        )


def shows(request: ApprovalRequest, method: str, path: str | None) -> bool:
    """Pure: is `request` what a person was shown of the held request `method` `path`? The
    text they read, how many characters of a cut path were left out included: a path that
    began as the shown one and went on otherwise was taken for it."""
    if request.host is None or request.port is None:
        return False
    action, _ = held_texts(request.host, request.port, method, path)
    return (request.method, request.path, request.action) == (method, kept_path(path), action)


def answer_of(request: ApprovalRequest, waited_seconds: float) -> AskAnswer:
    """Pure: the held request's answer from the approval request's final state."""
    where = f"{request.host}:{request.port}"
    by = request.answered_by or "a person"
    scope = f"for {once_scope(request.method)}" if request.once else "until the bottle stops"
    if request.approved:
        return AskAnswer(
            True,
            f"approved:{request.id}",
            f"{where} was approved by {by} {scope} (request {request.id})",
            request.id,
            request.once,
            request.answered_by or "",
            waited_seconds,
        )
    if request.status == "denied":
        return AskAnswer(
            False,
            ASK_DENIED,
            f"{where} was denied by {by} {scope} (request {request.id})",
            request.id,
            request.once,
            request.answered_by or "",
            waited_seconds,
        )
    return AskAnswer(
        False,
        ASK_TIMED_OUT,
        f"nobody answered the request to reach {where} in time (request {request.id}); "
        "no answer is a denial",
        request.id,
        waited_seconds=waited_seconds,
    )


class EgressAsker:
    """The asks of one proxy: open questions by host:port, and the answers that stand."""

    def __init__(
        self,
        store: ApprovalStore,
        timeout_seconds: float,
        record: Callable[[AuditEntry], None],
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.store = store
        self.timeout_seconds = timeout_seconds
        self.record = record
        self.poll_seconds = poll_seconds
        self.standing: dict[tuple[str, int], AskAnswer] = {}  # answers for the bottle's life
        self._open: dict[tuple[str, int], asyncio.Task[AskAnswer]] = {}

    def standing_answer(self, host: str, port: int) -> AskAnswer | None:
        """The answer that stands for `host`:`port`, if a person gave one without --once."""
        return self.standing.get((host.lower().rstrip("."), port))

    async def ask(self, host: str, port: int, method: str, path: str | None) -> AskAnswer:
        """Wait for a person's answer about `host`:`port` (joining an open question about it).

        The question runs as its own task: a held request whose client goes away leaves it
        open for the others held with it."""
        key = (host.lower().rstrip("."), port)
        while True:
            standing = self.standing.get(key)
            if standing is not None:
                return standing
            question = self._open.get(key)
            mine = question is None or question.done()
            if question is None or question.done():
                question = asyncio.ensure_future(self._ask_person(key[0], key[1], method, path))
                self._open[key] = question
                question.add_done_callback(self._closed(key))
            answer = await asyncio.shield(question)
            if mine or not answer.once:
                return answer
            # A --once answer was for the request the person was shown; this one asks again.

    def _closed(self, key: tuple[str, int]) -> Callable[[asyncio.Task[AskAnswer]], None]:
        def forget(question: asyncio.Task[AskAnswer]) -> None:
            if self._open.get(key) is question:
                del self._open[key]
            if not question.cancelled():
                question.exception()  # retrieved here: its waiters may all have gone

        return forget

    async def _ask_person(self, host: str, port: int, method: str, path: str | None) -> AskAnswer:
        started = time.time()
        answer = await self._answer(host, port, method, path, started)
        self._audit(host, port, method, answer, stage="answered", started=started)
        return answer

    async def _answer(
        self, host: str, port: int, method: str, path: str | None, started: float
    ) -> AskAnswer:
        skipped: str | None = None
        while True:
            try:
                request = await asyncio.to_thread(
                    self.store.open_egress_request, host, port, method, path, self.timeout_seconds
                )
            except ApprovalRefused as refused:
                return AskAnswer(False, ASK_REFUSED, f"{host}:{port}: {refused.message}")
            if request.id == skipped:  # its answer could not be marked delivered: no re-ask
                return AskAnswer(
                    False,
                    ASK_REFUSED,
                    f"{host}:{port}: request {request.id} answered another held request and "
                    "is still open",
                    request.id,
                )
            request = await self._wait(host, port, method, request, started)
            answer = answer_of(request, time.time() - started)
            if answer.once and not shows(request, method, path):
                # The store's question is the host:port, so this held request waited on one a
                # proxy held before a restart, whose method and path the person was shown: a
                # --once answer is that request's alone (an agent sent `POST /upload` after
                # the person was shown `GET /status`). Logged as that request's, and asked anew.
                shown = request.method or method
                self._audit(host, port, shown, answer, stage="answered", started=started)
                skipped = request.id
                continue
            if request.status in ("approved", "denied") and not answer.once:
                self.standing[(host, port)] = answer
            return answer

    async def _wait(
        self, host: str, port: int, method: str, request: ApprovalRequest, started: float
    ) -> ApprovalRequest:
        """Poll `request` until it is answered or times out; its final state, delivered."""
        self._audit(
            host,
            port,
            method,
            AskAnswer(
                False,
                "ask",
                f"held until a person answers `bottle-engine approve|deny {request.id}` "
                f"(at most {self.timeout_seconds:g} s)",
                request.id,
            ),
            stage="asked",
            started=started,
        )
        while request.pending and not request.expired():
            await asyncio.sleep(self.poll_seconds)
            current = await asyncio.to_thread(self.store.get, request.id)
            if current is None:
                # Gone without our delivery (a person cannot remove it): treat it as timed out.
                break
            request = current
        if request.pending:
            request = await asyncio.to_thread(self.store.expire, request.id)
        await asyncio.to_thread(self._deliver, request.id)
        return request

    def _deliver(self, request_id: str) -> None:
        # The answer is known; a file that went missing must not lose it.
        with contextlib.suppress(BottleError, OSError):
            self.store.mark_delivered(request_id)

    def _audit(
        self,
        host: str,
        port: int,
        method: str,
        answer: AskAnswer,
        *,
        stage: Stage,
        started: float,
    ) -> None:
        answered = stage == "answered"
        self.record(
            AuditEntry(
                time=timestamp(time.time() if answered else started),
                method=method,
                host=host,
                port=port,
                decision="ask" if not answered else "allow" if answer.allowed else "deny",
                rule=answer.rule,
                reason=answer.reason,
                kind="ask",
                duration_ms=round(answer.waited_seconds * 1000.0, 3) if answered else 0.0,
                stage="answered" if answered else "asked",
                request_id=answer.request_id,
                answered_by=answer.answered_by,
            )
        )
