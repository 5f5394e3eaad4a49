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

import fcntl
import json
import math
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from bottle_engine.regular_files import load_json

# ask: held for a person ([egress] ask = true); the answer follows as its own entry.
Verdict = Literal["allow", "deny", "ask"]
# http: a plain-HTTP request (to the proxy, or inside a relayed tunnel: egress_relay); tunnel: a
# CONNECT tunnel passed through without interception (its bytes when relayed as bytes);
# intercepted: a request inside a TLS-terminated tunnel (a host bound to a secret);
# connect: a CONNECT that was refused, a connection refused after resolution, or a relayed
# tunnel closed for the name its first bytes carry (egress_relay);
# ask: a person was asked about a destination (stage "asked"), or answered (stage "answered",
# with who answered and, in duration_ms, how long the request waited).
Kind = Literal["http", "tunnel", "intercepted", "connect", "ask"]
# For tunnels: "open" when the tunnel is set up (written at once, so a tunnel that never closes
# or whose proxy is killed still leaves a record), "close" with its bytes and duration.
Stage = Literal["", "open", "close", "asked", "answered"]

FIELD_LIMIT = 512  # characters per text field
MAX_LOG_BYTES = 16 * 1024 * 1024
BACKUPS = 2


_CUT_MARKER = re.compile(r"\.\.\.\[[1-9][0-9]* more characters cut\]")


def cap(text: str, limit: int = FIELD_LIMIT) -> str:
    """`text`, cut to `limit` characters with a marker naming how many were dropped; a text
    cut so already is returned as it is."""
    if len(text) <= limit or _CUT_MARKER.fullmatch(text, limit):
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
        """The entry a line holds, its texts capped as the proxy writes them: the bundle writes
        the file, and a taken-over one wrote lines of 256 KiB (all the reader takes), whose
        texts the editor's view kept, a row's worth per host."""
        return cls(
            time=cap(str(raw["time"])),
            method=cap(str(raw["method"])),
            host=cap(str(raw["host"])),
            port=int(raw["port"]),
            decision=raw["decision"] if raw["decision"] in ("allow", "ask") else "deny",
            rule=cap(str(raw.get("rule", ""))),
            reason=cap(str(raw.get("reason", ""))),
            kind=raw.get("kind", "http"),
            status=None if raw.get("status") is None else int(raw["status"]),
            bytes_sent=int(raw.get("bytes_sent", 0)),
            bytes_received=int(raw.get("bytes_received", 0)),
            duration_ms=_finite(float(raw.get("duration_ms", 0.0))),
            stage=raw.get("stage", ""),
            request_id=cap(str(raw.get("request_id", ""))),
            answered_by=cap(str(raw.get("answered_by", ""))),
        )


def _finite(number: float) -> float:
    if not math.isfinite(number):  # float() takes "nan" and "inf", and json 1e999
        raise ValueError(f"{number} is no duration")
    return number


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
        rotate(self.path, self.backups)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)


def rotate(path: Path, backups: int) -> None:
    """Move the log at `path` to `path.1` (`path.1` to `path.2`, ..., the oldest of `backups`
    dropped); with no backups, remove it. The writer then opens `path` afresh."""
    for index in range(backups, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        newer = path.with_name(f"{path.name}.{index - 1}") if index > 1 else path
        if newer.exists():
            os.replace(newer, older)
    if backups == 0:
        path.unlink(missing_ok=True)


def append_line(path: Path, line: str, max_bytes: int, backups: int = BACKUPS) -> None:
    """Append one whole `line` to the log at `path` from a process of its own (the git gate's
    hook runs once per push), rotating it as `AuditLog` does: at most (1 + `backups`) x
    `max_bytes` of disk, plus a line per writer racing a rotation. A symbolic link in the
    log's place is refused (`OSError`), never followed."""
    data = (line.rstrip("\n") + "\n").encode()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    descriptor = os.open(path, flags, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        size = os.fstat(descriptor).st_size
        if size and size + len(data) > max_bytes:
            rotate(path, backups)
            os.close(descriptor)
            descriptor = os.open(path, flags, 0o600)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(descriptor, data)
    finally:
        os.close(descriptor)


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
    iterating; a truncated file is read again from its start, and a rotated one to its end
    before its successor.

    The file sits in a dir the bundle writes, so the reader holds at most `READ_CHUNK` plus
    one line of `MAX_LINE_BYTES` (a longer one is skipped), opens no symlink, FIFO or
    directory, never sizes a buffer by what the file claims, and reads at most the last
    `MAX_UNREAD_BYTES` of what is unread (a sparse file of any size costs nothing to make).
    """
    log = _LogReader(path)
    try:
        while True:
            yield from log.read()
            if not follow or (stop is not None and stop.is_set()):
                return
            if stop is not None:
                stop.wait(poll_seconds)
            else:
                time.sleep(poll_seconds)
    finally:
        log.close()


def rotations(path: Path) -> list[Path]:
    """The names the log at `path` rotates to, oldest first (``.BACKUPS`` .. ``.1``)."""
    return [path.with_name(f"{path.name}.{i}") for i in range(BACKUPS, 0, -1)]


def read_kept_audit(
    path: Path, follow: bool = False, *, stop: threading.Event | None = None
) -> Iterator[AuditEntry]:
    """All that is kept of the log at `path`: its rotations, oldest first, then the live log
    (followed as `read_audit` does)."""
    for rotated in rotations(path):
        yield from read_audit(rotated)
    yield from read_audit(path, follow=follow, stop=stop)


class _LogReader:
    """The open log file and what is pending of its last line, from one read to the next."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: BinaryIO | None = None
        self.lines = _Lines()

    def read(self) -> Iterator[AuditEntry]:
        """The entries written since the last read."""
        current = _open_log(self.path)
        if self.handle is not None and current is not None and _same_file(self.handle, current):
            current.close()
            if os.fstat(self.handle.fileno()).st_size < self.handle.tell():  # truncated
                self.handle.seek(0)
                self.lines = _Lines()
        elif current is not None or self.handle is not None:
            if self.handle is not None:  # rotated (or removed): the rest of it first
                yield from self._finish(self.handle)
            self.handle, self.lines = current, _Lines()
        if self.handle is not None:
            yield from self.lines.feed(self.handle)

    def _finish(self, handle: BinaryIO) -> Iterator[AuditEntry]:
        yield from self.lines.feed(handle)
        for between in _rotated_after(self.path, handle):
            with between:
                yield from _Lines().feed(between)
        handle.close()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


READ_CHUNK = 1024 * 1024
MAX_LINE_BYTES = 256 * 1024  # a written line stays under about 4 KiB (every text field capped)
# More unread bytes than the bundle's writer ever leaves in one file (it rotates at
# MAX_LOG_BYTES) is no log of ours but, say, a sparse file of a terabyte of zeros a taken-over
# bundle made to keep `logs --egress` or the editor's view reading for hours.
MAX_UNREAD_BYTES = MAX_LOG_BYTES + MAX_LINE_BYTES


class _Lines:
    """Splits what is read into whole lines, dropping any longer than `MAX_LINE_BYTES`."""

    def __init__(self) -> None:
        self.pending = b""
        self.skipping = False  # inside a line already too long: drop up to its end

    def feed(self, handle: BinaryIO) -> Iterator[AuditEntry]:
        """The entries of whole lines from `handle`'s position to its end as it is now; of a
        file with more than `MAX_UNREAD_BYTES` unread, only the last lines that fit in it."""
        size = os.fstat(handle.fileno()).st_size
        if size - handle.tell() > MAX_UNREAD_BYTES:
            handle.seek(size - MAX_UNREAD_BYTES)
            self.pending, self.skipping = b"", True  # from the next whole line
        # Up to the size seen now: a file grown meanwhile is read on (by `follow`) next time.
        while (left := size - handle.tell()) > 0 and (chunk := handle.read(min(READ_CHUNK, left))):
            *complete, rest = chunk.split(b"\n")
            for line in complete:
                if self.skipping:
                    self.skipping = False
                else:
                    entry = _parse(self.pending + line)
                    if entry is not None:
                        yield entry
                self.pending = b""
            if self.skipping or len(self.pending) + len(rest) > MAX_LINE_BYTES:
                self.pending, self.skipping = b"", True
            else:
                self.pending += rest


def _open_log(path: Path) -> BinaryIO | None:
    """`path` opened for reading when it is a regular file (not through a symlink)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # missing, a symlink (ELOOP), or unreadable
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return os.fdopen(descriptor, "rb")


def _rotated_after(path: Path, old: BinaryIO) -> list[BinaryIO]:
    """The rotated files newer than `old` (which was the live log), oldest first: the log
    may have rotated more than once between two reads."""
    found: list[BinaryIO] = []
    for rotated in rotations(path):
        handle = _open_log(rotated)
        if handle is None:
            continue
        if _same_file(handle, old):  # everything before it is older than what was read
            handle.close()
            for earlier in found:
                earlier.close()
            found = []
        else:
            found.append(handle)
    return found


def _same_file(one: BinaryIO, other: BinaryIO) -> bool:
    a, b = os.fstat(one.fileno()), os.fstat(other.fileno())
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _parse(line: bytes) -> AuditEntry | None:
    if not line.strip():
        return None
    try:
        return AuditEntry.from_dict(load_json(line))
    except (ValueError, KeyError, TypeError, OverflowError):
        # A line cut short by a crash, or not ours: `"port": 1e999` parses as infinity, and
        # int() of it (OverflowError) ended `logs --egress` and the editor's view of the log.
        return None
