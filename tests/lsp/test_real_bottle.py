"""The editor's whole launch path against the real engine and daemon: `bottle.launch` from the
language server starts a real bottle (progress per stage), lenses and `bottle.list` show it,
`bottle.stop` stops it. Uses the shared bottle world (images built once per test session)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pytest_lsp import LanguageClient

from tests.bottle_fixtures import BottleWorld, world_env
from tests.lsp.conftest import start_client, stop_client
from tests.lsp.test_commands import execute, lenses

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def real_client(bottle_world: BottleWorld, tmp_path: Path) -> AsyncIterator[LanguageClient]:
    (tmp_path / "home").mkdir()
    client = await start_client(tmp_path, fake_engine=False, env=bottle_world.env)
    yield client
    await stop_client(client, tmp_path)


async def test_launch_list_and_stop_a_real_bottle_from_the_editor(
    real_client: LanguageClient, bottle_world: BottleWorld
) -> None:
    uri = bottle_world.manifest.as_uri()
    slug = None
    try:
        result = await execute(real_client, "bottle.launch", {"uri": uri, "agent": "editor"})
        assert [m.message for m in real_client.messages] == []
        slug = result["slug"]
        [reported] = real_client.progress_reports.values()
        reports: list[Any] = list(reported)
        assert reports[0].kind == "begin" and reports[-1].kind == "end"
        assert len(reports) > 3  # the engine's own stages came through as reports
        listed = {b["slug"]: b for b in await execute(real_client, "bottle.list")}
        assert listed[slug]["agent"] == "editor"
        assert listed[slug]["status"] == "running"
        assert listed[slug]["manifest"] == str(bottle_world.manifest)
        # The editor agent is this test's own: no other test's bottle runs for it.
        editor_line = bottle_world.manifest.read_text().splitlines().index("[agents.editor]")
        titles = [(line, title) for line, title, _, _ in await lenses(real_client, uri)]
        assert (editor_line, "Attach") in titles and (editor_line, "Stop") in titles
        assert await execute(real_client, "bottle.stop", {"slug": slug}) == {}
        listed = {b["slug"]: b for b in await execute(real_client, "bottle.list")}
        assert listed[slug]["status"] != "running"
    finally:
        if slug is not None:
            from bottle_engine import lifecycle

            with world_env(bottle_world), contextlib.suppress(Exception):
                lifecycle.stop(slug, remove=True)


async def test_the_egress_view_follows_a_real_bottle_and_allow_edits_its_manifest(
    real_client: LanguageClient, bottle_world: BottleWorld
) -> None:
    """The agent of a real bottle reaches upstream.test (listed) and tries stranger.test (not
    listed); the server's pushed picture shows both from the real proxy's audit log, and Allow
    on the refusal is an edit of that bottle's `allow` in the world's manifest."""
    import tomllib

    from lsprotocol import types

    from bottle_engine import lifecycle
    from bottle_engine.backends import backend_named
    from tests.bottle_fixtures import HTTP_PORT
    from tests.lsp.test_activity import applied, plain
    from tests.lsp.test_commands import eventually

    client = real_client
    pushed: list[Any] = []
    edits: list[types.ApplyWorkspaceEditParams] = []
    client.feature("bottle/activity")(lambda params: pushed.append(params))

    def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    client.feature(types.WORKSPACE_APPLY_EDIT)(apply)

    def picture(slug: str) -> dict[str, Any]:
        shown = {b["slug"]: b for b in plain(pushed[-1])["bottles"]} if pushed else {}
        found: dict[str, Any] = shown.get(slug, {})
        return found

    uri = bottle_world.manifest.as_uri()
    slug = None
    try:
        slug = (await execute(client, "bottle.launch", {"uri": uri, "agent": "editor"}))["slug"]
        with world_env(bottle_world):
            record = lifecycle.find(slug)
            for host in ("upstream.test", "stranger.test"):
                backend_named("docker").exec_as_agent(
                    record,
                    [
                        "sh",
                        "-c",
                        'curl -sS -m 30 -x "$HTTP_PROXY" -o /dev/null "$0"',
                        f"http://{host}:{HTTP_PORT}/",
                    ],
                )

        def hosts() -> dict[tuple[str, str], Any]:
            return {(h["decision"], h["host"]): h for h in picture(slug).get("hosts", [])}

        await eventually(
            lambda: {("allow", "upstream.test"), ("deny", "stranger.test")} <= set(hosts()),
            "both requests in the pushed picture",
        )
        shown = picture(slug)
        assert (shown["state"], shown["agent"], shown["denied"]) == ("running", "editor", 1)
        assert shown["runtime"] in ("runc", "runsc")
        allowed, denied = hosts()[("allow", "upstream.test")], hosts()[("deny", "stranger.test")]
        assert allowed["count"] == 1 and allowed["bytes"] > 0 and allowed["allow"] is None
        assert denied["rule"] == "default-deny" and denied["allow"] == f"stranger.test:{HTTP_PORT}"

        answer = await execute(
            client, "bottle.allowHost", {"slug": slug, "host": "stranger.test", "port": HTTP_PORT}
        )
        assert answer["applied"] is True and answer["entry"] == f"stranger.test:{HTTP_PORT}"
        (params,) = edits
        edited = tomllib.loads(applied(params, bottle_world.manifest.read_text()))
        bottle = edited["agents"]["editor"].get("bottle", "default")
        assert f"stranger.test:{HTTP_PORT}" in edited["bottles"][bottle]["egress"]["allow"]
    finally:
        if slug is not None:
            with world_env(bottle_world), contextlib.suppress(Exception):
                lifecycle.stop(slug, remove=True)
