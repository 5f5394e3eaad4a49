"""The egress audit log: one JSON line per proxy decision, in the bottle's state dir.

The proxy appends with `AuditLog.write`; `bottle-engine logs SLUG --egress [-f]` reads with
`read_audit`. Lines are written whole with one `write` on an ``O_APPEND`` file, so a reader never
sees half an entry from a finished write, and a line cut short by a crash is skipped.

The agent chooses much of what is logged (method, host, the text of refusals), so the log is
bounded: every text field is cut to `FIELD_LIMIT` characters with a marker saying how much was
cut (a line stays under about 4 KiB), and the file is rotated at `MAX_LOG_BYTES` into
``egress.jsonl.1`` .. ``egress.jsonl.{BACKUPS}`` (the oldest is dropped): at most
(1 + BACKUPS) x MAX_LOG_BYTES of the host's disk per bottle.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

# ask: held for a person ([egress] ask = true); the answer follows as its own entry.
Verdict = Literal["allow", "deny", "ask"]
# http: a plain-HTTP request; tunnel: a CONNECT tunnel passed through without interception;
# intercepted: a request inside a TLS-terminated tunnel (a host bound to a secret);
# connect: a CONNECT that was refused, or a connection refused after resolution;
# ask: a person was asked about a destination (stage "asked"), or answered (stage "answered",
# with who answered and, in duration_ms, how long the request waited).
Kind = Literal["http", "tunnel", "intercepted", "connect", "ask"]
# For tunnels: "open" when the tunnel is set up (written at once, so a tunnel that never closes
# or whose proxy is killed still leaves a record), "close" with its bytes and duration.
Stage = Literal["", "open", "close", "asked", "answered"]

FIELD_LIMIT = 512  # characters per text field
MAX_LOG_BYTES = 16 * 1024 * 1024
BACKUPS = 2


def cap(text: str, limit: int = FIELD_LIMIT) -> str:
    """`text`, cut to `limit` characters with a marker naming how many were dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters cut]"


@dataclass(frozen=True)
class AuditEntry:
    """One decision of the egress proxy."""

    time: str  # ISO 8601, UTC, when the request arrived
    method: str
    host: str
    port: int
    decision: Verdict
    rule: str  # the allowlist entry that allowed it, or the built-in rule that refused it
    reason: str
    kind: Kind
    status: int | None = None  # the HTTP status the client got, when there was one
    bytes_sent: int = 0  # client -> upstream
    bytes_received: int = 0  # upstream -> client
    duration_ms: float = 0.0
    stage: Stage = ""
    request_id: str = ""  # kind "ask": the approval request (`bottle-engine approve ID`)
    answered_by: str = ""  # kind "ask", stage "answered": who answered, when a person did

    @property
    def bytes(self) -> int:
        return self.bytes_sent + self.bytes_received

    def to_json(self) -> str:
        """One JSON line, every text field capped (`cap`)."""
        fields = {
            key: cap(value) if isinstance(value, str) else value
            for key, value in asdict(self).items()
        }
        return json.dumps({**fields, "bytes": self.bytes}, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AuditEntry:
        return cls(
            time=str(raw["time"]),
            method=str(raw["method"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            decision=raw["decision"] if raw["decision"] in ("allow", "ask") else "deny",
            rule=str(raw.get("rule", "")),
            reason=str(raw.get("reason", "")),
            kind=raw.get("kind", "http"),
            status=None if raw.get("status") is None else int(raw["status"]),
            bytes_sent=int(raw.get("bytes_sent", 0)),
            bytes_received=int(raw.get("bytes_received", 0)),
            duration_ms=float(raw.get("duration_ms", 0.0)),
            stage=raw.get("stage", ""),
            request_id=str(raw.get("request_id", "")),
            answered_by=str(raw.get("answered_by", "")),
        )


def timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class AuditLog:
    """Appends entries to the log file (created with mode 0600 if missing), rotating it when it
    would grow past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int = MAX_LOG_BYTES, backups: int = BACKUPS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, entry: AuditEntry) -> None:
        line = (entry.to_json() + "\n").encode()
        with self._lock:
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            os.write(self._fd, line)
            self._size += len(line)

    def _rotate(self) -> None:
        os.close(self._fd)
        for index in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


def read_audit(
    path: Path,
    follow: bool = False,
    *,
    poll_seconds: float = 0.2,
    stop: threading.Event | None = None,
) -> Iterator[AuditEntry]:
    """The entries of the audit log at `path`, oldest first.

    Without `follow`, ends at the end of the file (nothing if there is none yet). With `follow`,
    waits for new entries (and for the file to appear) until `stop` is set or the caller stops
    iterating; a truncated or replaced file is read again from its start.
    """
    pending = b""
    position = 0
    inode: int | None = None
    while True:
        try:
            stat = path.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None:
            if inode != stat.st_ino or stat.st_size < position:
                inode, position, pending = stat.st_ino, 0, b""
            if stat.st_size > position:
                with path.open("rb") as handle:
                    handle.seek(position)
                    chunk = handle.read(stat.st_size - position)
                position += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    entry = _parse(line)
                    if entry is not None:
                        yield entry
        if not follow or (stop is not None and stop.is_set()):
            return
        if stop is not None:
            stop.wait(poll_seconds)
        else:
            time.sleep(poll_seconds)


def _parse(line: bytes) -> AuditEntry | None:
    if not line.strip():
        return None
    try:
        return AuditEntry.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a crash, or not ours
