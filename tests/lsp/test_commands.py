"""The commands and code lenses the VS Code extension relies on (its contract), and approvals.

Launch and stop run against `tests/lsp/fake_engine.py`, handed to the real server by
`fake_server.py` (a real bottle takes minutes); the manifest validation in front of the
engine, and every error path through `window/showMessage`, are the real ones.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from bottle_engine import state
from bottle_engine.approvals import ApprovalStore, list_requests
from tests.conftest import REPO_ROOT
from tests.lsp.conftest import MANIFEST, ClientFactory, open_document, rng
from tests.lsp.fake_engine import write_state

pytestmark = pytest.mark.asyncio


async def execute(client: LanguageClient, command: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=list(arguments))
    )


async def lenses(client: LanguageClient, uri: str) -> list[tuple[int, str, str, Any]]:
    found = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    return [
        (
            lens.range.start.line,
            lens.command.title,
            lens.command.command,
            list(lens.command.arguments or []),
        )
        for lens in found or []
        if lens.command is not None
    ]


async def eventually(condition: Any, what: str) -> None:
    for _ in range(1500):  # up to 30 s: generous for a loaded CI machine
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def errors(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Error]


async def test_code_lenses_offer_launch_above_each_agent(
    client: LanguageClient, project: Path
) -> None:
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    found = await client.text_document_code_lens_async(
        types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert [lens.range for lens in found or []] == [rng((0, 0), (0, 12)), rng((4, 0), (4, 17))]
    assert await lenses(client, uri) == [
        (0, "▶ Launch", "bottle.launch", [{"uri": uri, "agent": "dev"}]),
        (4, "▶ Launch", "bottle.launch", [{"uri": uri, "agent": "reviewer"}]),
    ]


async def test_launch_reports_progress_per_stage_and_returns_the_slug(
    client: LanguageClient, project: Path
) -> None:
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    result = await execute(client, "bottle.launch", {"uri": uri, "agent": "dev"})
    assert result == {"slug": "dev-1"}
    [reported] = client.progress_reports.values()
    reports: list[Any] = list(reported)  # Begin / Report / End values, as pytest-lsp keeps them
    assert [getattr(r, "kind", None) for r in reports] == ["begin"] + ["report"] * 3 + ["end"]
    assert reports[0].title == "Launching dev"
    assert [r.message for r in reports[1:]] == [
        "build agent image",
        "start bundle",
        "start agent",
        "Launched dev-1",
    ]
    assert client.changed == [{"slug": "dev-1", "event": "launched"}]  # type: ignore[attr-defined]
    await eventually(lambda: client.lens_refreshes >= 1, "a code lens refresh")  # type: ignore[attr-defined]
    assert errors(client) == []


async def test_a_running_bottle_adds_attach_and_stop_lenses_until_stopped(
    client: LanguageClient, project: Path
) -> None:
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await execute(client, "bottle.launch", {"uri": uri, "agent": "reviewer"})
    assert await lenses(client, uri) == [
        (0, "▶ Launch", "bottle.launch", [{"uri": uri, "agent": "dev"}]),
        (4, "▶ Launch", "bottle.launch", [{"uri": uri, "agent": "reviewer"}]),
        (4, "Attach", "bottle.attach", [{"slug": "reviewer-1"}]),
        (4, "Stop", "bottle.stop", [{"slug": "reviewer-1"}]),
    ]
    assert await execute(client, "bottle.stop", {"slug": "reviewer-1"}) == {}
    assert client.changed[-1] == {"slug": "reviewer-1", "event": "stopped"}  # type: ignore[attr-defined]
    assert [title for _, title, _, _ in await lenses(client, uri)] == ["▶ Launch", "▶ Launch"]


async def test_lenses_catch_up_with_bottles_started_elsewhere(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    client = await make_client(bottles_max_age=0)
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    assert len(await lenses(client, uri)) == 2
    record = {  # what `bottle-engine launch dev` in a terminal leaves behind
        "slug": "dev-9",
        "agent": "dev",
        "backend": "docker",
        "status": "running",
        "started_at": "2026-01-01T00:00:00+00:00",
        "manifest": str(project / "bottle.toml"),
    }
    write_state(tmp_path / "fake-engine.json", {"bottles": [record]})
    await lenses(client, uri)  # drawn from the list it has; re-reads the bottles behind it
    await eventually(lambda: client.lens_refreshes >= 1, "a code lens refresh")  # type: ignore[attr-defined]
    assert [title for _, title, _, _ in await lenses(client, uri)] == [
        "▶ Launch",
        "Attach",
        "Stop",
        "▶ Launch",
    ]


async def test_launching_with_unsaved_changes_warns_that_the_saved_file_is_used(
    client: LanguageClient, project: Path
) -> None:
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    (project / "bottle.toml").write_text(MANIFEST + "\n# saved later\n")
    assert await execute(client, "bottle.launch", {"uri": uri, "agent": "dev"}) == {"slug": "dev-1"}
    assert [(m.type, m.message) for m in client.messages] == [
        (
            types.MessageType.Warning,
            f"{project / 'bottle.toml'} has unsaved changes; launching dev from the saved file",
        )
    ]


async def test_a_launch_warning_reaches_the_person_as_a_message_of_its_own(
    client: LanguageClient, project: Path
) -> None:
    """What the launch could not search is not a progress report, which the next one replaces:
    it is a warning message, and a file name the project holds is shown as text, not a link."""
    (project / "[docs](command:workbench.action.terminal.new).zst").write_bytes(b"\x28\xb5\x2f\xfd")
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    assert await execute(client, "bottle.launch", {"uri": uri, "agent": "dev"}) == {"slug": "dev-1"}
    [warning] = [m for m in client.messages if m.type == types.MessageType.Warning]
    assert "not opened to search for real values: /workspace/" in warning.message
    assert "](command:" not in warning.message


async def test_list_returns_every_bottle_with_its_fields(
    client: LanguageClient, project: Path
) -> None:
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await execute(client, "bottle.launch", {"uri": uri, "agent": "dev"})
    assert await execute(client, "bottle.list") == [
        {
            "slug": "dev-1",
            "agent": "dev",
            "bottle": "",
            "backend": "docker",
            "runtime": "",
            "status": "running",
            "started_at": "2026-01-01T00:00:00+00:00",
            "manifest": str(project / "bottle.toml"),
        }
    ]


async def test_attach_and_logs_return_the_command_line_to_run(client: LanguageClient) -> None:
    assert await execute(client, "bottle.attach", {"slug": "dev-1"}) == {
        "command": ["bottle-engine", "attach", "dev-1"]
    }
    assert await execute(client, "bottle.logs", {"slug": "dev-1", "egress": True}) == {
        "command": ["bottle-engine", "logs", "--follow", "--egress", "dev-1"]
    }
    assert await execute(client, "bottle.logs", {"slug": "dev-1"}) == {
        "command": ["bottle-engine", "logs", "--follow", "dev-1"]
    }


async def test_agents_lists_each_agent_with_its_bottle(
    client: LanguageClient, project: Path
) -> None:
    (project / "bottle.toml").write_text('[agents.solo]\n[bottles.only]\nbackend = "docker"\n')
    unopened = (project / "bottle.toml").as_uri()
    assert await execute(client, "bottle.agents", {"uri": unopened}) == [
        {"name": "solo", "bottle": "only"}
    ]
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    assert await execute(client, "bottle.agents", {"uri": uri}) == [
        {"name": "dev", "bottle": "web"},
        {"name": "reviewer", "bottle": "web"},
    ]


async def test_launching_from_an_invalid_manifest_shows_the_errors(
    make_client: ClientFactory, project: Path
) -> None:
    client = await make_client(fake_engine=False)
    uri = open_document(client, project / "bottle.toml", MANIFEST.replace('"web"', '"wbe"', 1))
    result = await execute(client, "bottle.launch", {"uri": uri, "agent": "dev"})
    [message] = errors(client)
    assert result == {"error": message}
    assert message.startswith(f"{project / 'bottle.toml'} has 1 error(s):\n")
    assert "[BB201] agents.dev.bottle: no bottle named 'wbe'" in message
    assert client.changed == []  # type: ignore[attr-defined]


async def test_launching_an_unknown_agent_shows_an_error(
    make_client: ClientFactory, project: Path
) -> None:
    client = await make_client(fake_engine=False)
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    result = await execute(client, "bottle.launch", {"uri": uri, "agent": "ghost"})
    assert errors(client) == [
        f"{project / 'bottle.toml'}: no agent named 'ghost' (defined: dev, reviewer)\n"
        "  fix: pick one of the [agents.NAME] tables, or add one"
    ]
    assert result == {"error": errors(client)[0]}


async def test_engine_errors_are_shown_and_the_server_keeps_serving(
    client: LanguageClient, project: Path
) -> None:
    assert await execute(client, "bottle.stop", {"slug": "nope"}) == {
        "error": "no bottle named 'nope'\n  fix: run `bottle-engine ls` to see them"
    }
    assert (await execute(client, "bottle.attach", "not-an-object"))["error"].startswith(
        "expected one argument {slug}"
    )
    assert len(errors(client)) == 2
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    assert len(await lenses(client, uri)) == 2


async def test_a_port_of_true_is_no_port(client: LanguageClient) -> None:
    """JSON's `true` is no number: cattrs would make it port 1 of an allow or an answer."""
    allow = {"slug": "dev-1", "host": "example.com", "port": True}
    answer = {"slug": "dev-1", "request_id": "r1", "approved": True, "host": "a.test", "port": True}

    assert (await execute(client, "bottle.allowHost", allow))["error"].startswith(
        "expected one argument {slug, host, port}"
    )
    assert (await execute(client, "bottle.answer", answer))["error"].startswith(
        "expected one argument {slug, request_id, approved, host, port}"
    )


async def test_pending_approvals_are_asked_and_answered(make_client: ClientFactory) -> None:
    store = ApprovalStore(state.bottle_dir("dev-1"), "dev-1")  # the server shares BOTTLE_STATE_DIR
    push = store.open_request("push to bot/fix", "tests pass", timeout_seconds=600)
    delete = store.open_request("delete branch main", "cleanup", timeout_seconds=600)
    client = await make_client(approvals={"poll": True, "interval": 0.05})
    asked: list[types.ShowMessageRequestParams] = []

    def ask(params: types.ShowMessageRequestParams) -> types.MessageActionItem:
        asked.append(params)
        return types.MessageActionItem(title="Approve" if "push" in params.message else "Deny")

    client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(ask)

    def statuses() -> dict[str, str]:
        return {r.id: r.status for r in list_requests("dev-1")}

    await eventually(lambda: "pending" not in statuses().values(), "both answers")
    assert statuses() == {push.id: "approved", delete.id: "denied"}
    assert sorted(p.message for p in asked) == [
        "Approval requested by bottle dev-1: delete branch main — cleanup",
        "Approval requested by bottle dev-1: push to bot/fix — tests pass",
    ]
    assert [a.title for a in asked[0].actions or []] == ["Approve", "Deny"]
    await asyncio.sleep(0.2)
    assert len(asked) == 2  # each request is asked once


async def test_no_environment_variable_puts_another_engine_behind_the_server(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """`bottle-lsp` used to import whatever module BOTTLE_LSP_LIFECYCLE_MODULE named (a test
    hook): code running as the person who launches and stops bottles, and answers for them. The
    installed server builds the real engine whatever the environment says."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    imported = tmp_path / "imported"
    (hooks / "swapped_lifecycle.py").write_text(
        f"import pathlib\npathlib.Path({str(imported)!r}).write_text('yes')\n"
        "def list_bottles():\n    return []\n"
    )
    client = await make_client(
        fake_engine=False,
        env={
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{hooks}",
            "BOTTLE_LSP_LIFECYCLE_MODULE": "swapped_lifecycle",
        },
    )
    assert await execute(client, "bottle.list") == []
    assert not imported.exists()
