"""The terminal guard on the smolmachines backend: `machine exec` (with `-it`, on a pty of
ours) never writes the agent's bytes to the person's terminal itself.

The microVM is the smolvm contract fake's stand-in (every argv checked by the real smolvm
1.32.2; `machine exec -it` becomes `docker exec -it`, which insists on a real terminal, so the
relay's pseudo-terminal is exercised for real).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.bottle_fixtures import REPO_ROOT
from tests.escape.test_terminal_stream import MARKER, NEVER, NOT_IN_A_REPLAY, PRINT
from tests.fakes.fixtures import FakeSmolvm
from tests.hostile_text import run_in_terminal
from tests.integration.test_pack_launch import images_ready, launched, project  # noqa: F401


def test_smolvm_exec_output_reaches_the_terminal_only_through_the_guard(
    project: Path,  # noqa: F811
    fake_smolvm: FakeSmolvm,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cli = [sys.executable, "-m", "bottle_engine"]
    with launched(project) as record:
        command = [*cli, "exec", record.slug, "--", "sh", "-c", PRINT]
        _, session = run_in_terminal(command, env, interactive=True)
        _, streamed = run_in_terminal(command, env)
    interactive = [a for a in fake_smolvm.commands() if a[:2] == ["machine", "exec"]]
    assert any("--tty" in argv for argv in interactive)  # the session really had a terminal
    for output in (session, streamed):
        assert MARKER.encode() in output and b"visible-text" in output, output
        assert not [s for s in NEVER if s in output], output
        assert b"\x1b[?25h" in output.rsplit(b"visible-text", 1)[1], output
    assert not [s for s in NOT_IN_A_REPLAY if s in streamed], streamed
