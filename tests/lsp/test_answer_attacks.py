"""The Egress view's Approve answers the ask its row showed, not what the id names later.

The row (host, port, and the ids of its waiting asks) is folded from the egress audit log, and
both that log and the approvals dir are the bundle's to write. A taken-over bundle logs an ask
for a host the person would allow under the id of a pending ask for another: the row's Approve
approved that other host, for the bottle's life, vouched for (a `resume` keeps it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types

from bottle_engine import config_seal, state
from bottle_engine.approvals import ApprovalStore
from tests.audit_entries import audit_entry
from tests.lsp.conftest import ClientFactory
from tests.lsp.fake_engine import write_state
from tests.lsp.test_activity import audit, bottles, record
from tests.lsp.test_commands import eventually, execute

pytestmark = pytest.mark.asyncio

SLUG = "dev-1"
SHOWN, HELD = "docs.invalid", "collector.invalid"


async def test_the_egress_view_answers_only_the_destination_its_row_showed(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    store = ApprovalStore(state.bottle_dir(SLUG), SLUG)
    held = store.open_egress_request(HELD, 443, "CONNECT", None, 3600)
    audit(tmp_path, SLUG).write(
        audit_entry(
            SHOWN, "ask", kind="ask", stage="asked", request_id=held.id, rule="ask", reason="held"
        )
    )
    write_state(tmp_path / "fake-engine.json", {"bottles": [record(project, SLUG, "running")]})
    client = await make_client(approvals={"poll": True, "interval": 0.05}, activity_interval=0.1)
    client.activity = []  # type: ignore[attr-defined]
    client.feature("bottle/activity")(lambda params: client.activity.append(params))  # type: ignore[attr-defined]
    client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(lambda params: None)  # the toast: dismissed

    def row(host: str) -> dict[str, object]:
        rows = bottles(client).get(SLUG, {}).get("hosts", [])
        return next((r for r in rows if r["host"] == host and r["decision"] == "ask"), {})

    await eventually(lambda: bottles(client).get(SLUG, {}).get("pending") == 1, "the ask")
    await eventually(lambda: row(SHOWN).get("count") == 1, "the forged row")
    assert row(SHOWN)["pending"] == [], "the row offers an answer to an ask it does not show"

    # An extension (or a picture from before the rewrite) sends the id with the row anyway.
    answer = {"slug": SLUG, "request_id": held.id, "approved": True, "host": SHOWN, "port": 443}
    said = await execute(client, "bottle.answer", answer)

    assert "error" in said and HELD in said["error"], said
    still = store.get(held.id)
    assert still is not None and still.pending, f"{HELD} was approved from the {SHOWN} row"
    assert not config_seal.answers_path(SLUG).exists()

    honest = {**answer, "host": HELD}
    assert await execute(client, "bottle.answer", honest) == {}
    approved = store.get(held.id)
    assert approved is not None and approved.approved and not approved.once
