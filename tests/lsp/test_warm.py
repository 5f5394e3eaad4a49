"""The language server keeps a warm gateway ready while a manifest is open (`pool.keepWarm`):
made on open, one per agent's bottle and only when missing, refilled after a launch, removed on
close and on shutdown; never made without the option, and never for a manifest that is not
trusted as saved (making one builds what the manifest names)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.lsp.conftest import MANIFEST, ClientFactory, open_document
from tests.lsp.fake_engine import write_state
from tests.lsp.test_commands import eventually, execute

pytestmark = pytest.mark.asyncio


def warm(tmp_path: Path) -> list[dict[str, Any]]:
    """The fake engine's warm members that were made and not released."""
    try:
        state = json.loads((tmp_path / "fake-engine.json").read_text())
    except FileNotFoundError:
        return []
    members: list[dict[str, Any]] = state.get("warm", [])
    return members


async def settle() -> None:
    """Time for a warm fill the server should not make, to show up if it were made (the fake
    engine's fill is instant; the server reads the trust record in a thread first)."""
    await asyncio.sleep(1.5)


async def trust(client: Any, uri: str) -> None:
    review = await execute(client, "bottle.trustReview", {"uri": uri})
    await execute(client, "bottle.trust", {"uri": uri, "fingerprint": review["fingerprint"]})


async def test_an_open_manifest_gets_one_warm_gateway_per_agent_and_closing_removes_them(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    client = await make_client(pool={"keepWarm": True})
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await trust(client, uri)
    await eventually(lambda: len(warm(tmp_path)) == 2, "a warm gateway for dev and reviewer")
    assert sorted(m["agent"] for m in warm(tmp_path)) == ["dev", "reviewer"]

    # Saving again makes nothing more: what is warm already is enough.
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    # A launch from the editor uses the member up (the fake forgets it); the server refills.
    state = json.loads((tmp_path / "fake-engine.json").read_text())
    state["warm"] = [m for m in state["warm"] if m["agent"] != "dev"]
    write_state(tmp_path / "fake-engine.json", state)
    await execute(client, "bottle.launch", {"uri": uri, "agent": "dev"})
    await eventually(
        lambda: sorted(m["agent"] for m in warm(tmp_path)) == ["dev", "reviewer"],
        "the used-up warm gateway made again",
    )
    assert len(warm(tmp_path)) == 2

    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await eventually(lambda: warm(tmp_path) == [], "the warm gateways removed on close")


async def test_closing_a_manifest_while_its_warm_gateways_are_being_made_removes_them(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    """A fill takes seconds (it starts a bundle container). Closed half way, the members it
    goes on to make must still be removed, not left running with nobody to remove them."""
    write_state(tmp_path / "fake-engine.json", {"fill_seconds": 1.0})
    client = await make_client(pool={"keepWarm": True})
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await trust(client, uri)  # the fill starts now and takes 2 s (two agents)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await asyncio.sleep(3)  # the fill has finished
    await eventually(lambda: warm(tmp_path) == [], "the late warm gateways removed")


async def test_the_editor_shutting_the_server_down_removes_its_warm_gateways(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    client = await make_client(pool={"keepWarm": True})
    await trust(client, open_document(client, project / "bottle.toml", MANIFEST))
    await eventually(lambda: len(warm(tmp_path)) == 2, "the warm gateways")
    await client.shutdown_session()
    assert warm(tmp_path) == []


async def test_without_the_option_no_warm_gateway_is_made(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    client = await make_client()
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await execute(client, "bottle.agents", {"uri": uri})  # the open has been handled
    assert warm(tmp_path) == []


async def test_a_manifest_never_trusted_or_widened_since_gets_no_warm_gateway(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    """The attack: a bottle.toml someone else wrote (context = the home dir, a Dockerfile that
    sends it out) is merely opened. Nothing is built until a person trusts it."""
    client = await make_client(pool={"keepWarm": True})
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await execute(client, "bottle.agents", {"uri": uri})  # the open has been handled
    await settle()
    assert warm(tmp_path) == []

    await trust(client, uri)
    await eventually(lambda: len(warm(tmp_path)) == 2, "the warm gateways, once trusted")
    state = json.loads((tmp_path / "fake-engine.json").read_text())
    state["warm"] = []  # launches used them up
    write_state(tmp_path / "fake-engine.json", state)

    # Widened on disk (a new host): saving it makes nothing until it is trusted again.
    widened = MANIFEST.replace('"*.npmjs.org"]', '"*.npmjs.org", "exfil.invalid"]')
    assert widened != MANIFEST
    open_document(client, project / "bottle.toml", widened, version=2)
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await execute(client, "bottle.agents", {"uri": uri})
    await settle()
    assert warm(tmp_path) == []
