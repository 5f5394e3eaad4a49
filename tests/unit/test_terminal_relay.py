"""The relays to the person's terminal: the agent's bytes pass the guard on every one."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bottle_engine import terminal
from bottle_engine.terminal import GuardedOutput, drain_answers, write_replay
from bottle_engine.terminal_guard import Mode, TerminalGuard
from tests.bottle_fixtures import REPO_ROOT
from tests.hostile_text import run_in_terminal

HOSTILE = b"\x1b]52;c;cm0gLXJmIH4=\x07\x1b[21t\x1b[6nshown\x1b[?25l"


def test_a_replay_is_guarded_even_into_a_file() -> None:
    out = io.BytesIO()
    write_replay([HOSTILE[:5], HOSTILE[5:]], out)
    assert out.getvalue() == b"shown\x1b[?25l\x1b[?25h"  # and the cursor shown again


def test_output_that_is_no_terminal_keeps_its_bytes() -> None:
    # `exec … cat file > copy` copies the file; only a terminal gets the guard by default.
    out = io.BytesIO()
    output = GuardedOutput(out)
    output.write(HOSTILE)
    output.close()
    assert out.getvalue() == HOSTILE


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_pty_session_reaches_the_terminal_through_the_guard_with_its_size() -> None:
    # smolvm's `machine exec -it` runs on a pty of ours: here `sh` in its place.
    script = (
        "import os, sys\n"
        "from bottle_engine.terminal import run_in_pty\n"
        "sys.exit(run_in_pty(['sh', '-c', "
        r"'printf \"\\033]52;c;eA==\\007\\033[21t\"; stty size; exit 3'], os.environ))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code, output = run_in_terminal(_python(script), env, columns=123, interactive=True)
    assert code == 3
    assert b"50 123" in output  # the window size reached the session
    assert b"\x1b]" not in output and b"\x1b[21t" not in output, output


def test_answers_on_their_way_at_the_end_of_a_session_are_discarded() -> None:
    # The terminal answered the agent's last queries after the session's end, then our DSR.
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    try:
        os.write(stdin_write, b"\x1b[12;40R\x1b[?62;22c\x1b[0nnext")
        drain_answers(stdin_read, stdout_write)
        assert os.read(stdout_read, 100) == b"\x1b[5n"  # the one question asked
        assert os.read(stdin_read, 100) == b"next"  # what came after the answer stays
    finally:
        for fd in (stdin_read, stdin_write, stdout_read, stdout_write):
            os.close(fd)


def test_a_query_in_a_session_is_noted_for_the_drain() -> None:
    guard = TerminalGuard(Mode.INTERACTIVE)
    guard.feed(b"\x1b[31m\x1b[?25l")
    assert not guard.asked
    guard.feed(b"\x1b[6n")
    assert guard.asked


def _read_until(master: int, wanted: bytes, output: bytearray, seconds: float = 30.0) -> None:
    """Read the pseudo-terminal into `output` until `wanted` shows (or its end, or time)."""
    deadline = time.monotonic() + seconds
    while wanted not in output and time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer is gone
                return
            if not chunk:
                return
            output += chunk


@dataclass
class _OnATerminal:
    process: subprocess.Popen[bytes]
    master: int  # the terminal's side: what the process writes is read here
    keep: int  # the process's side, kept to read the terminal's settings when it is done
    cooked: list[Any]  # the settings before the process started (not raw)


@contextlib.contextmanager
def _on_a_terminal(script: str) -> Iterator[_OnATerminal]:
    """Python `script` run on a new pseudo-terminal, its session's controlling one; killed
    if still running at the end, the terminal closed."""
    master, slave = pty.openpty()
    keep = os.dup(slave)
    cooked = termios.tcgetattr(slave)
    process = subprocess.Popen(
        _python(script),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
    )
    os.close(slave)
    try:
        yield _OnATerminal(process, master, keep, cooked)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(keep)
        os.close(master)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_session_ended_by_a_signal_gives_the_terminal_back(signum: int) -> None:
    # `kill` (SIGTERM) or a closed terminal tab (SIGHUP) ends `attach` / `exec -it` while the
    # agent holds the alternate screen and mouse reporting: the default action would leave
    # the person's terminal raw, reporting mouse moves, with the agent's process running.
    script = (
        "import os, sys\n"
        "from bottle_engine.terminal import run_in_pty\n"
        "sys.exit(run_in_pty(['sh', '-c', "
        r"'printf \"\\033[?1049h\\033[?1000hpid=%s.\" $$; exec sleep 60'], os.environ))"
    )
    output = bytearray()
    with _on_a_terminal(script) as run:
        _read_until(run.master, b".", output)
        pid = int(re.search(rb"pid=(\d+)\.", output).group(1))  # type: ignore[union-attr]
        assert termios.tcgetattr(run.keep)[3] & termios.ICANON == 0  # raw during the session
        run.process.send_signal(signum)
        run.process.wait(timeout=30)
        _read_until(run.master, b"\x1b[?1049l", output, seconds=5)
        tail = bytes(output).rsplit(b"pid=", 1)[1]
        assert b"\x1b[?1000l" in tail and b"\x1b[?1049l" in tail, tail
        assert termios.tcgetattr(run.keep)[3] == run.cooked[3]  # echo and line editing back
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the agent's side was ended and reaped, not left behind


def test_a_pty_session_starts_with_the_person_s_window_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A TUI lays out its first screen from the size it finds at start: it must be the
    # person's, not 0x0 until the relay's first resize reaches it.
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    read: list[bytes] = []

    def relay_without_resize(peer: terminal.Peer, resize_to: object) -> None:
        while data := peer.read():
            read.append(data)

    monkeypatch.setattr(terminal, "relay_session", relay_without_resize)
    with open(slave, "rb", buffering=0) as stdin, open(os.dup(slave), "wb") as stdout:
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", stdout)
        try:
            assert terminal.run_in_pty(["stty", "size"], os.environ) == 0
        finally:
            os.close(master)
    assert b"33 111" in b"".join(read), read


def test_a_signal_while_the_answers_are_drained_still_gives_the_terminal_back() -> None:
    # The agent asked the terminal something (cursor position), then ended: the relay asks its
    # own question (DSR) and waits up to DRAIN_SECONDS for the answer. A `kill` (SIGTERM) in
    # that wait left the person's terminal raw: no echo, no line editing, Ctrl-C typed as text.
    script = (
        "import os, sys\n"
        "from bottle_engine.terminal import run_in_pty\n"
        "sys.exit(run_in_pty(['sh', '-c', r'printf \"\\033[6nasked.\"'], os.environ))"
    )
    output = bytearray()
    with _on_a_terminal(script) as run:
        _read_until(run.master, b"\x1b[5n", output)  # the drain's question; nobody answers it
        assert b"asked." in output
        run.process.send_signal(signal.SIGTERM)
        run.process.wait(timeout=30)
        assert termios.tcgetattr(run.keep)[3] == run.cooked[3]  # echo and line editing back
