"""A hostile agent writes escape sequences to its own terminal stream; a person reads it.

The agent of a real bottle prints clipboard writes, title reports, terminal queries, strings
(DCS, APC, tmux passthrough), lying links, VS Code shell-integration marks, window operations
and 8-bit C1 controls. `logs`, `attach` (live, and the replay of a finished agent) and `exec`
(with and without a TTY) run on a real pseudo-terminal here, and what reached that terminal is
checked: none of it, but the text, and the terminal is restored at the end.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import lifecycle
from tests.bottle_fixtures import (
    REPO_ROOT,
    BottleWorld,
    bottle_table,
    running_bottle,
    world_env,
    world_for,
)
from tests.hostile_text import run_in_terminal

MARKER = "agent-done-" + secrets.token_hex(4)
PAYLOAD = (
    b"\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: "rm -rf ~" into the person's clipboard
    b"\x1b]0;sudo: enter your password\x07"  # a window title of the agent's choosing
    b"\x1b[21t"  # title report: the terminal types the title into whatever reads it
    b"\x1b[6n\x1b[c\x1b[>q"  # cursor position, device attributes, XTVERSION
    b"\x1bP$qm\x1b\\\x1bP+q544e\x1b\\"  # DECRQSS, XTGETTCAP
    b"\x1b]11;?\x07"  # background colour query
    b"\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\"  # tmux passthrough of a clipboard write
    b"\x1b_Ga=T,f=100;AAAA\x1b\\"  # kitty graphics (APC)
    b"\x1b]8;;http://evil.invalid/\x1b\\git status\x1b]8;;\x1b\\"  # the link hides its target
    b"\x1b]633;E;rm -rf ~\x07\x1b]133;C\x07"  # VS Code / shell integration: a faked command
    b"\x1b[3;0;0t\x1b[2t\x1b[8;1;1t"  # move, iconify, resize the window
    + "\u009b6n\u009d52;c;eA==\u009c".encode()  # C1 controls, UTF-8 encoded
    + b"\x9b6n"  # and raw
    + b"\x1b[8:0mconcealed-text\x1b[0m"  # conceal with a sub-parameter (xterm.js: hidden)
    + "\u202e~ fr- mr\u202c".encode()  # bidi override: shown reversed where bidi is laid out
    + b"\x1b[3g"  # clear every tab stop of the person's terminal
    # Line drawing saved on entering the alternate screen: leaving it brings it back.
    + b"\x1b(0\x1b[?1049h\x1b(B"
    + b"\x1b[?25l\x1b[?1000h\x1b[31mvisible-text\x1b[0m\r\n"
)
PRINT = f"echo {base64.b64encode(PAYLOAD).decode()} | base64 -d; echo {MARKER}"
MANIFEST = (
    "[agents.scribbler]\n"
    # Prints at start, and again for each line typed to it (a live attach sees it then).
    f'command = ["sh", "-c", "{PRINT}; while read -r line; do {PRINT}; done"]\n'
    "copy_cwd = false\n\n" + bottle_table()
)

# Never on the person's terminal: strings (OSC, DCS, APC), title reports, window operations,
# C1 controls.
NEVER = [
    b"\x1b]",
    b"\x1bP",
    b"\x1b_",
    b"\x1b[21t",
    b"\x1b[3;0;0t",
    b"\x1b[2t",
    b"\x1b[8;1;1t",
    b"\x9b",
    b"\x9d",
    b"\xc2\x9b",
    b"\xc2\x9d",
    b"\x1b[8:",
    "\u202e".encode(),
    b"\x1b[3g",
]
# Not either when the terminal's answer would go to the person's shell (no session).
NOT_IN_A_REPLAY = [b"\x1b[6n", b"\x1b[c", b"\x1b[>q", b"\x1b[?1000h"]


@pytest.fixture(scope="module")
def scribbler_world(bottle_world: BottleWorld, tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory: Path = tmp_path_factory.mktemp("scribbler")
    return world_for(bottle_world, directory, MANIFEST)


@pytest.fixture(scope="module")
def terminals(scribbler_world: BottleWorld) -> Iterator[dict[str, bytes]]:
    """What reached a real terminal on each path, from one bottle whose agent printed PAYLOAD:
    logs, exec with and without a TTY, a live attach, and the attach of the stopped agent."""
    env = {**os.environ, **scribbler_world.env, "PYTHONPATH": str(REPO_ROOT)}
    cli = [sys.executable, "-m", "bottle_engine"]
    shown: dict[str, bytes] = {}
    with running_bottle(scribbler_world, "scribbler") as record:
        slug = record.slug
        shown["logs"] = _wait_for_marker(lambda: run_in_terminal([*cli, "logs", slug], env)[1])
        shown["exec"] = run_in_terminal([*cli, "exec", slug, "--", "sh", "-c", PRINT], env)[1]
        shown["exec-tty"] = run_in_terminal(
            [*cli, "exec", slug, "--", "sh", "-c", PRINT], env, interactive=True
        )[1]
        shown["attach-live"] = run_in_terminal(
            [*cli, "attach", slug],
            env,
            interactive=True,
            interrupt_after=MARKER.encode(),
            type_in=b"\r",
        )[1]
        with world_env(scribbler_world):
            lifecycle.stop(slug)
        shown["attach-finished"] = run_in_terminal([*cli, "attach", slug], env)[1]
        yield shown


def _wait_for_marker(read: Any) -> bytes:
    """`logs` once the agent has printed everything (it starts as the launch returns)."""
    from tests.polling import wait_for

    output: bytes = wait_for(
        lambda: (out := read()) and MARKER.encode() in out and out, "logs", interval=1.0
    )
    return output


REPLAYS = ["logs", "exec", "attach-finished"]
SESSIONS = ["exec-tty", "attach-live"]


@pytest.mark.parametrize("path", REPLAYS + SESSIONS)
def test_no_dangerous_sequence_reaches_the_person_s_terminal(
    terminals: dict[str, bytes], path: str
) -> None:
    output = terminals[path]
    assert MARKER.encode() in output, output  # the stream did reach the terminal
    assert b"visible-text" in output and b"git status" in output  # and its text with it
    assert b"concealed-text" in output
    found = [sequence for sequence in NEVER if sequence in output]
    assert not found, f"{path}: {found} reached the terminal: {output!r}"


@pytest.mark.parametrize("path", REPLAYS)
def test_a_replay_asks_the_terminal_nothing(terminals: dict[str, bytes], path: str) -> None:
    output = terminals[path]
    found = [sequence for sequence in NOT_IN_A_REPLAY if sequence in output]
    assert not found, f"{path}: {found} reached the terminal: {output!r}"


@pytest.mark.parametrize("path", REPLAYS + SESSIONS)
def test_the_terminal_is_restored_at_the_end(terminals: dict[str, bytes], path: str) -> None:
    # The agent hid the cursor and entered the alternate screen; the person gets both back.
    tail = terminals[path].rsplit(b"visible-text", 1)[1]
    assert b"\x1b[?25h" in tail and b"\x1b[?1049l" in tail, tail
    # Back to ASCII after leaving the alternate screen, whose DECRC restores the line drawing.
    assert tail.rindex(b"\x1b(B") > tail.index(b"\x1b[?1049l"), tail
    if path in SESSIONS:
        assert b"\x1b[?1000l" in tail, tail  # mouse reporting off again
