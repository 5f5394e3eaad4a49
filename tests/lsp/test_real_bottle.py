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
