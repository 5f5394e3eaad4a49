"""What a command run in the sandbox writes, read within a budget of bytes and of time.

The agent can write into any output of a command that runs as the agent (it opens
/proc/PID/fd/1 of it), hold that output open after the command ended, or stop the command: a
reader that takes all of it, or waits for its end, gives the agent the person's memory or their
terminal. These readers keep the last bytes and stop waiting at a deadline.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bottle_engine.errors import CommandFailed

# The exit code given for a command that was not waited for to its end: no process exits with
# it (timeout(1)'s 124 is what a probe's own attempt gives when it is refused).
UNFINISHED = -1
_READ = 65536
# Why a streamed command's output was not read to its end (`CommandFailed`): it was still open
# at the reader's deadline, empty or not.
HELD_OPEN = "its output was still open at the deadline"


@dataclass
class Tail:
    """The last `keep` bytes written to it."""

    keep: int
    data: bytes = b""

    def write(self, chunk: bytes) -> None:
        self.data = (self.data + chunk)[-self.keep :]


def drain(sinks: Mapping[int, Callable[[bytes], None]], seconds: float) -> bool:
    """Read each file descriptor of `sinks` to its end, handing what comes to its sink; True
    once all ended, False if `seconds` passed first (the rest is left unread)."""
    deadline = time.monotonic() + seconds
    open_fds = set(sinks)
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select(sorted(open_fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, _READ)
            if chunk:
                sinks[fd](chunk)
            else:
                open_fds.discard(fd)
    return True


def receive(sock: socket.socket, seconds: float, sink: Callable[[bytes], None]) -> bool:
    """Hand what `sock` sends to `sink` until its end (True) or until `seconds` passed
    (False)."""
    until = time.monotonic() + seconds
    try:
        while chunk := recv_before(sock, until):
            sink(chunk)
    except CommandFailed:
        return False
    return True


def read_before(fd: int, until: float | None) -> bytes:
    """The next bytes `fd` gives (b"" at its end), or `CommandFailed` (`HELD_OPEN`) once
    `until` (a `time.monotonic()`; None: no deadline) has come, whether or not bytes still
    come: a command that writes without end is not read past it either."""
    if until is not None:
        ready, _, _ = select.select([fd], [], [], _left(until))
        if not ready:
            raise CommandFailed(HELD_OPEN)
    return os.read(fd, _READ)


def recv_before(sock: socket.socket, until: float) -> bytes:
    """`read_before` for a socket: recv with a timeout, not select and os.read: over TLS the
    bytes are the SSL object's to decrypt, and it may hold some that select does not see."""
    sock.settimeout(_left(until))
    try:
        return sock.recv(_READ)
    except TimeoutError:
        raise CommandFailed(HELD_OPEN) from None


def _left(until: float) -> float:
    """The seconds left before `until`; `CommandFailed` (`HELD_OPEN`) once none are."""
    left = until - time.monotonic()
    if left <= 0:
        raise CommandFailed(HELD_OPEN)
    return left


def stopped_waiting(output: bytes, seconds: float) -> bytes:
    """`output` with the note a person reads when a command was not waited for to its end."""
    return output + f"\n(stopped waiting for it after {seconds:g} s)\n".encode()
