"""The person's terminal: the agent's terminal stream reaches it only through `TerminalGuard`.

Three ways the agent's bytes come here, for both backends: an interactive session (a socket to
the container's TTY, or a pseudo-terminal we hold for smolvm's `machine exec -it`), relayed in
raw mode with the guard in INTERACTIVE mode; and a replay or stream (`logs`, a finished agent, a
streamed attach or exec), written through a guard in REPLAY mode. At the end of a session the
guard's `restore()` is written and what the terminal typed meanwhile is discarded, so the
person's shell gets back a usable terminal and no answer to the agent's last query.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, BinaryIO

from bottle_engine.terminal_guard import Mode, TerminalGuard

_READ = 65536


@dataclass(frozen=True)
class Peer:
    """The agent's side of a session: a file descriptor to wait on, how to read (b"" at its
    end) and how to write."""

    fd: int
    read: Callable[[], bytes]
    write: Callable[[bytes], None]
    early: bytes = b""  # what the agent wrote that was read before the session began


def socket_peer(sock: object, early: bytes = b"") -> Peer:
    """A session over a socket (the Docker API's attach or exec) whose first bytes, read with
    the connection's head, are `early`."""
    recv: Callable[[int], bytes] = sock.recv  # type: ignore[attr-defined]
    sendall: Callable[[bytes], None] = sock.sendall  # type: ignore[attr-defined]
    fileno: Callable[[], int] = sock.fileno  # type: ignore[attr-defined]
    return Peer(fileno(), lambda: recv(_READ), sendall, early)


@contextlib.contextmanager
def _signals_end_the_session() -> Iterator[None]:
    """SIGTERM (`kill`) and SIGHUP (the terminal closed) raise SystemExit while the agent's
    stream is shown: their default action would skip the `finally` that restores the person's
    terminal (raw mode, the agent's modes) and ends the agent's side."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread gets signals (and may set their handlers)
        return
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class GuardedOutput:
    """A binary output for the agent's bytes: through a REPLAY guard when `guard` (or when the
    output is a terminal); `close()` writes what undoes the agent's terminal modes."""

    def __init__(self, stream: BinaryIO, *, guard: bool | None = None) -> None:
        self.stream = stream
        wanted = guard if guard is not None else _isatty(stream)
        self.guard = TerminalGuard(Mode.REPLAY) if wanted else None

    def write(self, data: bytes) -> None:
        self.stream.write(self.guard.feed(data) if self.guard else data)
        self.stream.flush()

    def close(self) -> None:
        if self.guard:
            self.stream.write(self.guard.finish())
            self.stream.flush()


def _isatty(stream: BinaryIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError):
        return False


def write_replay(chunks: Iterable[bytes], stream: BinaryIO | None = None) -> None:
    """Write the agent's output (logs, a finished or streamed session) made safe, and at its end
    (or on Ctrl-C) undo what it turned on."""
    output = GuardedOutput(stream or sys.stdout.buffer, guard=True)
    with _signals_end_the_session():
        try:
            for chunk in chunks:
                output.write(chunk)
        finally:
            output.close()


def relay_session(peer: Peer, resize_to: Callable[[int, int], None]) -> None:
    """This terminal <-> an interactive session, in raw mode, the window size forwarded, until
    the session ends; the agent's output through an INTERACTIVE guard."""
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin_fd)
    guard = TerminalGuard(Mode.INTERACTIVE)

    def resize(*_: object) -> None:
        with contextlib.suppress(Exception):  # stdout may be no terminal; the peer may be gone
            columns, rows = os.get_terminal_size(stdout_fd)
            resize_to(rows, columns)

    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        with _signals_end_the_session():
            _relay(peer, guard, stdin_fd, stdout_fd, saved, resize)
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _relay(
    peer: Peer,
    guard: TerminalGuard,
    stdin_fd: int,
    stdout_fd: int,
    saved: list[Any],
    resize: Callable[[], None],
) -> None:
    """The relay loop of `relay_session`; raw mode on, then the terminal given back."""
    try:
        tty.setraw(stdin_fd)
        resize()
        _write_all(stdout_fd, guard.feed(peer.early))
        while True:
            readable, _, _ = select.select([peer.fd, stdin_fd], [], [])
            if peer.fd in readable:
                data = peer.read()
                if not data:
                    return
                _write_all(stdout_fd, guard.feed(data))
            if stdin_fd in readable:
                data = os.read(stdin_fd, _READ)
                if not data:
                    return
                peer.write(data)
    finally:
        try:
            with contextlib.suppress(OSError):
                _write_all(stdout_fd, guard.finish())
                if guard.asked:
                    drain_answers(stdin_fd, stdout_fd)
        finally:  # a signal in the drain's wait (SystemExit) must not leave the terminal raw
            # An answer to the agent's last query must not reach the person's shell.
            with contextlib.suppress(termios.error):  # a terminal that hung up has none
                termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)


_SENTINEL, _SENTINEL_ANSWER = b"\x1b[5n", b"\x1b[0n"
DRAIN_SECONDS = 0.5  # a terminal that does not answer DSR at all costs this much, once


def drain_answers(stdin_fd: int, stdout_fd: int, timeout: float = DRAIN_SECONDS) -> None:
    """Discard the terminal's answers to the agent's queries that are still on their way when
    a session ends (they would be typed into the person's shell): ask one more question
    (DSR) and read up to its answer; terminals answer in order, so nothing is left after it."""
    _write_all(stdout_fd, _SENTINEL)
    deadline = time.monotonic() + timeout
    seen = b""
    while not seen.endswith(_SENTINEL_ANSWER):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stdin_fd], [], [], left)[0]:
            return
        byte = os.read(stdin_fd, 1)  # one at a time: what the person types next stays
        if not byte:
            return
        seen = (seen + byte)[-len(_SENTINEL_ANSWER) :]


def run_in_pty(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run `argv` (smolvm's `machine exec -it`) on a pseudo-terminal of ours and relay it to
    this terminal through an INTERACTIVE guard: without it the agent's bytes would reach the
    person's terminal straight from smolvm. The command's exit code."""
    master, slave = pty.openpty()
    with contextlib.suppress(OSError, termios.error):
        termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(sys.stdin.fileno()))
    with contextlib.suppress(OSError):  # the first screen is laid out for the person's size
        size = fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, bytes(8))
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_take_terminal,  # the pty is its controlling terminal: SIGWINCH reaches it
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    try:
        relay_session(
            Peer(master, lambda: _read_pty(master), lambda d: _write_all(master, d)),
            lambda rows, columns: _set_size(master, rows, columns),
        )
        return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()
        os.close(master)


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_pty(master: int) -> bytes:
    try:
        return os.read(master, _READ)
    except OSError as exc:  # EIO: the last process on the pseudo-terminal is gone
        if exc.errno == errno.EIO:
            return b""
        raise


def _set_size(master: int, rows: int, columns: int) -> None:
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def run_streamed(argv: Sequence[str], env: Mapping[str, str], *, guard: bool | None) -> int:
    """Run `argv` without a terminal, on this stdin, its stdout and stderr each written through
    a REPLAY guard (`guard` None: where that output is a terminal). Its exit code."""
    process = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env)
    )
    assert process.stdout is not None and process.stderr is not None
    with _signals_end_the_session():
        return _copy_streams(process, guard)


def _copy_streams(process: subprocess.Popen[bytes], guard: bool | None) -> int:
    assert process.stdout is not None and process.stderr is not None
    outputs = {
        process.stdout.fileno(): GuardedOutput(sys.stdout.buffer, guard=guard),
        process.stderr.fileno(): GuardedOutput(sys.stderr.buffer, guard=guard),
    }
    try:
        open_fds = list(outputs)
        while open_fds:
            readable, _, _ = select.select(open_fds, [], [])
            for fd in readable:
                data = os.read(fd, _READ)
                if data:
                    outputs[fd].write(data)
                else:
                    open_fds.remove(fd)
        return process.wait()
    finally:
        for output in outputs.values():
            output.close()
        if process.poll() is None:
            process.terminate()
            process.wait()
        process.stdout.close()
        process.stderr.close()
