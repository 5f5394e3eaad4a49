"""Claude Code's settings for a launch, so that a session starts ready: no dialog, no extra flag.

Pure: plan -> the two files Claude Code reads, written by `guest.py` into the agent's home.

* `~/.claude.json` (Claude Code's own state): onboarding done, the workspace trusted, the
  launch's placeholder pre-approved as the custom API key (otherwise the first screen asks
  "Do you want to use this API key?" with **No** preselected, and Enter logs the user out), and
  the bundle's supervise server registered.
* `~/.claude/settings.json` (user settings): the supervise tool allowed in `permissions.allow`
  (this version ignores `projects[...].allowedTools`), and non-essential traffic (telemetry,
  feature flags, update checks) off unless the bottle's `env` sets the switch itself: that
  traffic goes to api.anthropic.com too, where the proxy would put the real key into it.

The key names are Claude Code's, not ours, and they change between releases: they were checked
against `CLAUDE_CODE_VERSION`, the version the agent image pins (Dockerfile). A unit test fails
when the two differ, and tests/claude runs the real binary against them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bottle_engine.plan import WORKSPACE, BottlePlan

# The Claude Code release these settings were checked against (the Dockerfile's pin).
CLAUDE_CODE_VERSION = "2.1.197"

# Any non-empty value turns non-essential traffic off (Claude Code tests the variable for
# truth as a string); a bottle's `env` that sets it, even to "", takes the decision back.
NONESSENTIAL_TRAFFIC_SWITCH = "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
# Interactive sessions fetch the official plugin marketplace from downloads.claude.ai even with
# non-essential traffic off; that host is not on a bottle's allowlist, so the fetch could only
# be refused (and logged as such). The bottle's `env` can set it too ("0": fetch).
MARKETPLACE_SWITCH = "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL"
# Claude Code's environment by default; each one a bottle's `env` sets is left to it.
QUIET_ENV = {NONESSENTIAL_TRAFFIC_SWITCH: "1", MARKETPLACE_SWITCH: "1"}

# The bundle's approval tool, as Claude Code names MCP tools: mcp__<server>__<tool>.
SUPERVISE_SERVER = "supervise"
SUPERVISE_TOOLS = (f"mcp__{SUPERVISE_SERVER}__request_approval",)

# Claude Code remembers an approved custom API key by its last 20 characters.
API_KEY_SUFFIX_LENGTH = 20


# Claude Code's flags for one answer, printed, without a session (`claude -p "..."`).
PRINT_FLAGS = frozenset({"-p", "--print"})


def is_print_mode(command: Sequence[str]) -> bool:
    """Does `command` run Claude Code for one printed answer (no terminal UI)?"""
    if not command or os.path.basename(command[0]) != "claude":
        return False
    return any(arg in PRINT_FLAGS for arg in command[1:])


def api_key_fingerprint(key: str) -> str:
    """What `customApiKeyResponses.approved` holds for an approved key."""
    return key[-API_KEY_SUFFIX_LENGTH:]


def user_state(plan: BottlePlan) -> dict[str, Any]:
    """~/.claude.json: onboarding done, the workspace trusted, the launch's key approved."""
    env = plan.guest_env
    state: dict[str, Any] = {
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": CLAUDE_CODE_VERSION,
        "projects": {
            WORKSPACE: {
                "hasTrustDialogAccepted": True,
                "hasCompletedProjectOnboarding": True,
                "allowedTools": list(SUPERVISE_TOOLS) if plan.supervise else [],
            }
        },
    }
    api_key = env.get("ANTHROPIC_API_KEY")
    if api_key:
        # The placeholder, never a real key: the agent's environment only holds placeholders.
        state["customApiKeyResponses"] = {
            "approved": [api_key_fingerprint(api_key)],
            "rejected": [],
        }
    supervise_url = env.get("MCP_SUPERVISE_URL")
    if supervise_url:
        # alwaysLoad: the tool is offered from the first turn, not deferred behind tool search,
        # so the agent knows from the start that it can ask a person.
        state["mcpServers"] = {
            SUPERVISE_SERVER: {"type": "http", "url": supervise_url, "alwaysLoad": True}
        }
    return state


def user_settings(plan: BottlePlan) -> dict[str, Any]:
    """~/.claude/settings.json: the supervise tool allowed, non-essential traffic off."""
    settings: dict[str, Any] = {}
    if plan.supervise:
        settings["permissions"] = {"allow": list(SUPERVISE_TOOLS)}
    env = {name: value for name, value in QUIET_ENV.items() if name not in plan.user_env}
    if env:
        settings["env"] = env
    return settings
