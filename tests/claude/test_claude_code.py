"""The real Claude Code (the agent image's pinned `claude`) in a real bottle, end to end.

Its API is our stub `api.anthropic.com` (conftest.py), reached only through the bundle: the
proxy trusts the stub's CA through `[egress] upstream_ca` and puts the real credentials into the
requests. One bottle runs `claude` interactively (as `bottle-engine launch` would) for most
tests, which also run `claude -p` in it; a second one runs `claude -p --output-format json` as
its command, detached.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bottle_engine.backends.docker import agent_user_of
from bottle_engine.claude_code import CLAUDE_CODE_VERSION, QUIET_ENV
from tests.bottle_fixtures import (
    REPO_ROOT,
    TEST_SECONDS,
    BottleWorld,
    audit_log,
    running_bottle,
    world_env,
)
from tests.claude.anthropic_stub import APPROVAL_ACTION, REPLY_PREFIX
from tests.claude.conftest import PROMPT_MARKER, AnthropicStub
from tests.polling import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLAUDE_TIMEOUT = 180  # seconds one run in the bottle may take before `timeout` ends it
DIALOGS = (
    "Do you want to use this API key",
    "Not logged in",
    "Do you trust the files",
    "Choose the text style",
    "Select login method",
)


@pytest.fixture(scope="module")
def claude_bottle(claude_world: BottleWorld) -> Iterator[Any]:
    with running_bottle(claude_world, "claude") as record:
        yield record


def engine(
    world: BottleWorld, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`bottle-engine ARGS` in a new process, in the world's environment."""
    env = {**os.environ, **world.env, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bottle_engine", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_in_bottle(
    docker_client: Any, record: Any, argv: list[str], env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `argv` in the bottle as the agent (its environment, plus `env`)."""
    container = docker_client.containers.get(record.name)
    result = container.exec_run(
        ["timeout", str(CLAUDE_TIMEOUT), *argv],
        user=agent_user_of(container),
        environment=env or {},
    )
    return result.exit_code, result.output.decode("utf-8", "replace")


def placeholder(record: Any, name: str, docker_client: Any) -> str:
    container = docker_client.containers.get(record.name)
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    return env[name]


def message_requests(stub: AnthropicStub) -> list[dict[str, Any]]:
    return [r for r in stub.requests() if r["path"].split("?")[0] == "/v1/messages"]


def system_text(request: dict[str, Any]) -> str:
    system = (request.get("body") or {}).get("system") or ""
    if isinstance(system, list):
        return "\n".join(str(block.get("text", "")) for block in system)
    return str(system)


# -- the image pins the version the settings were written for -----------------------------------


def test_the_bottle_runs_the_claude_code_version_the_settings_were_checked_against(
    docker_client: Any, claude_bottle: Any
) -> None:
    code, output = run_in_bottle(docker_client, claude_bottle, ["claude", "--version"])
    assert code == 0, output
    assert output.split()[0] == CLAUDE_CODE_VERSION


# -- claude -p ------------------------------------------------------------------------------------


def test_claude_print_answers_with_the_real_key_on_the_wire_only(
    docker_client: Any, claude_bottle: Any, anthropic_stub: AnthropicStub
) -> None:
    before = len(anthropic_stub.requests())
    code, output = run_in_bottle(docker_client, claude_bottle, ["claude", "-p", "ping"])
    assert code == 0, output
    assert f"{REPLY_PREFIX} pong" in output

    seen = anthropic_stub.requests()[before:]
    messages = [r for r in seen if r["path"].split("?")[0] == "/v1/messages"]
    assert messages, seen
    assert all(r["headers"].get("x-api-key") == anthropic_stub.api_key for r in messages)
    assert any((r.get("body") or {}).get("stream") for r in messages), "no streamed request"
    key_placeholder = placeholder(claude_bottle, "ANTHROPIC_API_KEY", docker_client)
    assert key_placeholder not in json.dumps(seen)


def test_a_request_without_streaming_gets_a_json_message(
    docker_client: Any, claude_bottle: Any, anthropic_stub: AnthropicStub
) -> None:
    body = json.dumps(
        {
            "model": "claude-stub",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "ping"}],
        }
    )
    code, output = run_in_bottle(
        docker_client,
        claude_bottle,
        [
            "sh",
            "-c",
            'curl -sS https://api.anthropic.com/v1/messages -H "x-api-key: $ANTHROPIC_API_KEY" '
            '-H "content-type: application/json" -d "$0"',
            body,
        ],
    )
    assert code == 0, output
    message = json.loads(output)
    assert message["type"] == "message"
    assert message["content"][0]["text"] == f"{REPLY_PREFIX} pong"


def test_the_subscription_token_goes_out_as_a_bearer_token(
    docker_client: Any, claude_bottle: Any, anthropic_stub: AnthropicStub
) -> None:
    before = len(anthropic_stub.requests())
    code, output = run_in_bottle(
        docker_client,
        claude_bottle,
        ["env", "-u", "ANTHROPIC_API_KEY", "claude", "-p", "ping"],
    )
    assert code == 0, output
    assert f"{REPLY_PREFIX} pong" in output
    seen = [
        r for r in anthropic_stub.requests()[before:] if r["path"].split("?")[0] == "/v1/messages"
    ]
    assert seen
    assert all(
        r["headers"].get("Authorization") == f"Bearer {anthropic_stub.oauth_token}" for r in seen
    )
    token_placeholder = placeholder(claude_bottle, "CLAUDE_CODE_OAUTH_TOKEN", docker_client)
    assert token_placeholder not in json.dumps(anthropic_stub.requests())


# -- supervise ------------------------------------------------------------------------------------


def test_claude_mcp_list_shows_supervise_connected(docker_client: Any, claude_bottle: Any) -> None:
    code, output = run_in_bottle(docker_client, claude_bottle, ["claude", "mcp", "list"])
    assert code == 0, output
    line = next((row for row in output.splitlines() if row.startswith("supervise")), "")
    assert "Connected" in line, output


def test_a_scripted_approval_reaches_the_person_and_the_answer_comes_back(
    docker_client: Any, claude_bottle: Any, claude_world: BottleWorld, anthropic_stub: AnthropicStub
) -> None:
    result: dict[str, tuple[int, str]] = {}

    def ask() -> None:
        result["run"] = run_in_bottle(
            docker_client, claude_bottle, ["claude", "-p", "REQUEST_APPROVAL for the deploy"]
        )

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()

    def pending() -> dict[str, Any] | None:
        listing = engine(claude_world, "approvals", claude_bottle.slug, "--json")
        assert listing.returncode == 0, listing.stderr
        return next(
            (r for r in json.loads(listing.stdout) if r.get("action") == APPROVAL_ACTION), None
        )

    request = wait_for(
        lambda: pending() or (not asker.is_alive() and result), "the request", interval=0.5
    )
    tools = [
        [tool.get("name") for tool in (r["body"] or {}).get("tools") or []]
        for r in message_requests(anthropic_stub)
    ]
    assert isinstance(request, dict) and "id" in request, f"no approval request: {result} {tools}"
    note = "go ahead " + uuid.uuid4().hex[:6]
    answered = engine(
        claude_world,
        "approve",
        request["id"],
        "--note",
        note,
        "--fingerprint",
        request["fingerprint"],
    )
    assert answered.returncode == 0, answered.stderr
    asker.join(CLAUDE_TIMEOUT + 10)

    code, output = result["run"]
    assert code == 0, output
    assert f"{REPLY_PREFIX} the supervisor answered" in output
    assert note in output


# -- the agent's own session ----------------------------------------------------------------------


def test_the_agent_never_holds_a_real_credential(
    docker_client: Any, claude_bottle: Any, claude_world: BottleWorld, anthropic_stub: AnthropicStub
) -> None:
    from bottle_engine import lifecycle
    from bottle_engine.backends import backend_named
    from bottle_engine.probes import find_secret_leaks

    run_in_bottle(docker_client, claude_bottle, ["claude", "-p", "ping"])
    with world_env(claude_world):
        record = lifecycle.find(claude_bottle.slug)
        haystacks = {
            place: b"".join(chunks)
            for place, chunks in backend_named("docker").secret_haystacks(record, TEST_SECONDS)
        }
    assert len(haystacks["/home/agent"]) > 0
    searched = [(place, [data]) for place, data in haystacks.items()]
    assert find_secret_leaks([anthropic_stub.api_key, anthropic_stub.oauth_token], searched) == []


@pytest.fixture(scope="module")
def interactive_session(
    claude_bottle: Any, claude_world: BottleWorld, anthropic_stub: AnthropicStub
) -> Iterator[dict[str, str]]:
    """`bottle-engine attach` in a real terminal (tmux): the screen before and after a question."""
    if shutil.which("tmux") is None:
        pytest.fail("the interactive Claude Code test needs tmux (scripts/setup installs it)")
    socket = f"bbtest-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **claude_world.env, "PYTHONPATH": str(REPO_ROOT), "TERM": "xterm-256color"}
    attach = f"{sys.executable} -m bottle_engine attach {claude_bottle.slug}"
    tmux = ["tmux", "-L", socket]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "claude", "-x", "150", "-y", "45", attach],
        env=env,
        check=True,
    )

    def screen() -> str:
        shown = subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", "claude"], env=env, capture_output=True, text=True
        )
        return shown.stdout

    try:

        def at_prompt_or_dialog() -> str | None:
            shown = screen()
            stopped = "for shortcuts" in shown or any(dialog in shown for dialog in DIALOGS)
            return shown if stopped else None

        ready = wait_for(at_prompt_or_dialog, "Claude Code's prompt or a dialog", interval=0.5)
        if any(dialog in ready for dialog in DIALOGS):
            yield {"ready": ready, "answered": ""}
            return
        for keys in (["-l", "hello from tmux"], ["Enter"]):
            subprocess.run([*tmux, "send-keys", "-t", "claude", *keys], check=True, env=env)
        answered = wait_for(
            lambda: f"{REPLY_PREFIX} pong" in screen() and screen(), "the answer", interval=0.5
        )
        yield {"ready": ready, "answered": answered}
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, check=False)


def test_an_interactive_session_starts_at_the_prompt_without_a_dialog(
    interactive_session: dict[str, str],
) -> None:
    for dialog in DIALOGS:
        assert dialog not in interactive_session["ready"], interactive_session["ready"]


def test_an_interactive_session_answers(interactive_session: dict[str, str]) -> None:
    assert f"{REPLY_PREFIX} pong" in interactive_session["answered"]
    for dialog in DIALOGS:
        assert dialog not in interactive_session["answered"]


def test_the_manifest_prompt_is_in_the_agent_system_prompt(
    interactive_session: dict[str, str], anthropic_stub: AnthropicStub
) -> None:
    # The agent's own turns (those offering tools), not side requests such as a session title.
    asked = [
        r
        for r in message_requests(anthropic_stub)
        if "hello from tmux" in json.dumps(r["body"]) and r["body"].get("tools")
    ]
    assert asked
    assert all(PROMPT_MARKER in system_text(r) for r in asked), [system_text(r) for r in asked]


def test_no_host_is_refused_and_no_telemetry_leaves_by_default(
    interactive_session: dict[str, str],
    claude_bottle: Any,
    claude_world: BottleWorld,
    anthropic_stub: AnthropicStub,
    docker_client: Any,
) -> None:
    code, settings = run_in_bottle(
        docker_client, claude_bottle, ["cat", "/home/agent/.claude/settings.json"]
    )
    assert code == 0, settings
    assert json.loads(settings)["env"] == QUIET_ENV
    log = audit_log(claude_world, claude_bottle)
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert entries
    refused = [(e["host"], e["port"], e["reason"]) for e in entries if e["decision"] != "allow"]
    assert refused == []
    paths = {r["path"].split("?")[0] for r in anthropic_stub.requests()}
    assert not {p for p in paths if "event_logging" in p or "/api/eval" in p}, paths


# -- a printing agent gets no TTY -----------------------------------------------------------------


def test_a_detached_print_agent_writes_clean_json_to_its_logs(
    claude_world: BottleWorld, anthropic_stub: AnthropicStub, docker_client: Any
) -> None:
    with running_bottle(claude_world, "printer") as record:
        container = docker_client.containers.get(record.name)
        container.wait(timeout=CLAUDE_TIMEOUT)
        assert container.attrs["Config"]["Tty"] is False
        logs = engine(claude_world, "logs", record.slug)
        attached = engine(claude_world, "attach", record.slug)
    assert logs.returncode == 0, logs.stderr
    assert "\r" not in logs.stdout and "\x1b" not in logs.stdout
    answer = json.loads(logs.stdout)
    assert answer["result"] == f"{REPLY_PREFIX} pong"
    assert attached.stdout == logs.stdout
    printed = [r for r in message_requests(anthropic_stub) if "say pong" in json.dumps(r["body"])]
    assert printed and all(PROMPT_MARKER in system_text(r) for r in printed)


# Sequences of Claude Code's own TUI the terminal guard drops in a session, and why that is
# fine: its window title (OSC 0/2) is the agent's text.
_GUARD_MAY_DROP = re.compile(rb"\x1b\][02];[^\x07\x1b]*(\x07|\x1b\\)")
_SEQUENCE = re.compile(rb"\x1b\[[\x20-\x3f]*[\x40-\x7e]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.")


def test_claude_code_s_tui_passes_the_terminal_guard_whole(
    interactive_session: dict[str, str], claude_bottle: Any, claude_world: BottleWorld
) -> None:
    from bottle_engine import lifecycle
    from bottle_engine.terminal_guard import Mode, TerminalGuard

    with world_env(claude_world):
        raw = b"".join(lifecycle.logs(claude_bottle.slug))  # the TUI's own bytes, unfiltered
    guarded = TerminalGuard(Mode.INTERACTIVE).feed(raw)
    used = set(_SEQUENCE.findall(_GUARD_MAY_DROP.sub(b"", raw)))
    kept = set(_SEQUENCE.findall(guarded))
    assert REPLY_PREFIX.encode() in guarded
    assert used - kept == set(), sorted(used - kept)
