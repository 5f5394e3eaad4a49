"""Protocol corners of the gate's daemon beyond a plain clone and push: what a push may carry
besides refs and objects (push options, a push certificate: text the agent chooses, which
would reach the upstream unscanned if forwarded) and services other than upload-pack and
receive-pack (`git archive --remote`). The real gate on loopback, a file:// upstream that
would take and record all of it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.test_gitgate_attacks import SECRET_VALUE, start_gate
from tests.integration.test_gitgate_local import commit_file, git

RECORDER = """#!/bin/sh
env | grep -E '^GIT_PUSH_(OPTION_[0-9]|CERT=)' >> "$GIT_DIR/pushed-extras"
cat > /dev/null
"""


def upstream_records_extras(upstream: Path) -> Path:
    """Make the upstream take push options and certificates and record any it is sent."""
    git(upstream, "config", "receive.advertisePushOptions", "true")
    git(upstream, "config", "receive.certNonceSeed", "upstream-seed")
    hook = upstream / "hooks" / "pre-receive"
    hook.write_text(RECORDER)
    hook.chmod(0o755)
    return upstream / "pushed-extras"


@pytest.mark.parametrize(
    "extra",
    [["-o", f"ci.note={SECRET_VALUE}"], ["--push-option=x"], ["--signed=yes"]],
    ids=["push-option", "push-option-long", "signed"],
)
def test_push_options_and_certificates_never_reach_the_upstream(
    tmp_path: Path, extra: list[str]
) -> None:
    for gate in start_gate(tmp_path):
        record = upstream_records_extras(gate.upstream)
        commit_file(gate.agent, "src/app.py", "print('hi')\n")

        pushed = git(gate.agent, "push", *extra, "origin", "HEAD:refs/heads/agent/x", check=False)

        assert pushed.returncode != 0, pushed.stderr
        assert gate.ref("refs/heads/agent/x") is None
        assert not record.exists()
        # Without them the same push arrives, and the upstream records nothing extra.
        assert gate.push_ok("HEAD:refs/heads/agent/x")
        assert not record.exists() or not record.read_text().strip()


def test_git_archive_is_not_served(tmp_path: Path) -> None:
    for gate in start_gate(tmp_path):
        url = f"git://127.0.0.1:{gate.port}/origin"
        archived = subprocess.run(
            ["git", "archive", f"--remote={url}", "main"], capture_output=True, check=False
        )
        assert archived.returncode != 0
        assert b"service not enabled" in archived.stderr
