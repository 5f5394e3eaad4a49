"""Claude Code's settings for a launch (pure), the agent's TTY decision, and `init --auth`.

The settings' effect on the real binary is tested in tests/claude (a real bottle, a real
`claude`); these tests pin what is written and which Claude Code release it was checked against.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bottle_engine import claude_code
from bottle_engine.backends.base import wants_tty
from bottle_engine.claude_code import (
    CLAUDE_CODE_VERSION,
    MARKETPLACE_SWITCH,
    NONESSENTIAL_TRAFFIC_SWITCH,
    SUPERVISE_TOOLS,
    is_print_mode,
)
from bottle_engine.guest import guest_files
from bottle_engine.manifest import load_manifest
from bottle_engine.plan import AGENT_HOME, AGENT_UID, BottlePlan, plan_bottle
from tests.conftest import REPO_ROOT

MANIFEST = """\
[agents.dev]
command = ["claude"]

[bottles.default]
supervise = {supervise}
env = {env}

[bottles.default.secrets.ANTHROPIC_API_KEY]
from_env = "ANTHROPIC_API_KEY"
hosts = ["api.anthropic.com"]
"""


def make_plan(tmp_path: Path, *, supervise: bool = True, env: str = "{}") -> BottlePlan:
    manifest = tmp_path / "bottle.toml"
    manifest.write_text(MANIFEST.format(supervise=str(supervise).lower(), env=env))
    return plan_bottle(load_manifest(manifest), "dev", launch_token="t" * 32)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "bottle_engine/templates/Dockerfile"])
def test_the_settings_were_checked_against_the_claude_code_the_image_pins(dockerfile: str) -> None:
    pinned = re.search(
        r"^ARG CLAUDE_CODE_VERSION=(\S+)$", (REPO_ROOT / dockerfile).read_text(), re.M
    )
    assert pinned, f"{dockerfile} pins no CLAUDE_CODE_VERSION"
    assert pinned.group(1) == CLAUDE_CODE_VERSION, (
        f"{dockerfile} pins Claude Code {pinned.group(1)}, but bottle_engine/claude_code.py was "
        f"checked against {CLAUDE_CODE_VERSION}: run tests/claude against the new version, fix "
        "the settings it needs, then update CLAUDE_CODE_VERSION"
    )


def test_the_placeholder_is_pre_approved_as_the_custom_api_key(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    placeholder = plan.guest_env["ANTHROPIC_API_KEY"]
    state = claude_code.user_state(plan)
    assert state["customApiKeyResponses"] == {"approved": [placeholder[-20:]], "rejected": []}
    assert state["hasCompletedOnboarding"] is True
    assert state["projects"]["/workspace"]["hasTrustDialogAccepted"] is True


def test_no_api_key_means_no_key_response(tmp_path: Path) -> None:
    manifest = tmp_path / "bottle.toml"
    manifest.write_text('[agents.dev]\ncommand = ["claude"]\n\n[bottles.default]\n')
    plan = plan_bottle(load_manifest(manifest), "dev")
    assert "customApiKeyResponses" not in claude_code.user_state(plan)


def test_supervise_is_registered_loaded_up_front_and_allowed(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    server = claude_code.user_state(plan)["mcpServers"]["supervise"]
    assert server == {
        "type": "http",
        "url": plan.guest_env["MCP_SUPERVISE_URL"],
        "alwaysLoad": True,
    }
    assert claude_code.user_settings(plan)["permissions"] == {"allow": list(SUPERVISE_TOOLS)}


def test_without_supervise_nothing_is_allowed_or_registered(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, supervise=False)
    assert "mcpServers" not in claude_code.user_state(plan)
    assert "permissions" not in claude_code.user_settings(plan)


def test_non_essential_traffic_is_off_by_default(tmp_path: Path) -> None:
    settings = claude_code.user_settings(make_plan(tmp_path))
    assert settings["env"] == {NONESSENTIAL_TRAFFIC_SWITCH: "1", MARKETPLACE_SWITCH: "1"}


def test_the_bottle_env_takes_the_traffic_switch_back(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, env=f'{{ {NONESSENTIAL_TRAFFIC_SWITCH} = "" }}')
    assert claude_code.user_settings(plan)["env"] == {MARKETPLACE_SWITCH: "1"}
    assert plan.guest_env[NONESSENTIAL_TRAFFIC_SWITCH] == ""


def test_guest_files_hold_both_settings_files_private_to_the_agent(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    files = {f.path: f for f in guest_files(plan, bottle_ca=b"ca", system_cas=None, prompt=None)}
    for path in (f"{AGENT_HOME}/.claude.json", f"{AGENT_HOME}/.claude/settings.json"):
        written: Any = files[path]
        assert (written.mode, written.uid) == (0o600, AGENT_UID)
        json.loads(written.data)
    settings = json.loads(files[f"{AGENT_HOME}/.claude/settings.json"].data or b"")
    assert settings == claude_code.user_settings(plan)


@pytest.mark.parametrize(
    ("command", "printing"),
    [
        (["claude"], False),
        (["claude", "-p", "hi"], True),
        (["/usr/local/bin/claude", "--print", "--output-format", "json", "hi"], True),
        (["claude", "--model", "x"], False),
        (["bash"], False),
        (["sh", "-c", "claude -p hi"], False),  # unknown: treated as interactive
        ([], False),
    ],
)
def test_print_mode_is_recognised(command: list[str], printing: bool) -> None:
    assert is_print_mode(command) is printing


@pytest.mark.parametrize(
    ("command", "terminal", "tty"),
    [
        (["claude"], True, True),
        (["claude"], False, True),  # detached: someone may attach later
        (["claude"], None, True),
        (["claude", "-p", "hi"], True, True),  # a person watches it on a terminal
        (["claude", "-p", "hi"], False, False),  # detached or piped: clean output
        (["claude", "-p", "hi"], None, False),
        (["bash"], False, True),
    ],
)
def test_the_agent_gets_a_tty_only_when_someone_may_type_to_it(
    command: list[str], terminal: bool | None, tty: bool
) -> None:
    assert wants_tty(command, terminal=terminal) is tty
