"""The relays to the person's terminal: the agent's bytes pass the guard on every one."""

from __future__ import annotations

import io
import os
import sys

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
