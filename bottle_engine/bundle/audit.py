"""The egress audit log: one JSON line per proxy decision, in the bottle's state dir.

The proxy appends with `AuditLog.write`; `bottle-engine logs SLUG --egress [-f]` reads with
`read_audit`. Lines are written whole with one `write` on an ``O_APPEND`` file, so a reader never
sees half an entry from a finished write, and a line cut short by a crash is skipped.
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

Verdict = Literal["allow", "deny"]
# http: a plain-HTTP request; tunnel: a CONNECT tunnel passed through without interception;
# intercepted: a request inside a TLS-terminated tunnel (a host bound to a secret);
# connect: a CONNECT that was refused, or a connection refused after resolution.
Kind = Literal["http", "tunnel", "intercepted", "connect"]


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

    @property
    def bytes(self) -> int:
        return self.bytes_sent + self.bytes_received

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "bytes": self.bytes}, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AuditEntry:
        return cls(
            time=str(raw["time"]),
            method=str(raw["method"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            decision="allow" if raw["decision"] == "allow" else "deny",
            rule=str(raw.get("rule", "")),
            reason=str(raw.get("reason", "")),
            kind=raw.get("kind", "http"),
            status=None if raw.get("status") is None else int(raw["status"]),
            bytes_sent=int(raw.get("bytes_sent", 0)),
            bytes_received=int(raw.get("bytes_received", 0)),
            duration_ms=float(raw.get("duration_ms", 0.0)),
        )


def timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class AuditLog:
    """Appends entries to the log file (created with mode 0600 if missing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def write(self, entry: AuditEntry) -> None:
        line = (entry.to_json() + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

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
