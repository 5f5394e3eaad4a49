"""The real `bottle-lsp` follows a bottle's audit log and pushes `bottle/activity`; Allow edits
the bottle's manifest through `workspace/applyEdit`; a degraded bottle is not offered as
running. The engine's bottles list is the fake engine's; the audit log is written with the
proxy's own `AuditLog`, in the state dir the server reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from bottle_engine.bundle.audit import AuditLog
from tests.audit_entries import audit_entry
from tests.lsp.conftest import ClientFactory, open_document
from tests.lsp.fake_engine import write_state
from tests.lsp.test_commands import eventually, execute, lenses

pytestmark = pytest.mark.asyncio

MANIFEST = """\
[agents.dev]
bottle = "web"

[bottles.web]  # the team's bottle
backend = "docker"

[bottles.web.egress]
allow = ["upstream.test"]  # our test host
"""


def record(project: Path, slug: str, status: str) -> dict[str, str]:
    return {
        "slug": slug,
        "agent": "dev",
        "bottle": "web",
        "backend": "docker",
        "status": status,
        "started_at": "2026-11-30T04:00:00+00:00",
        "manifest": str(project / "bottle.toml"),
        "resources": {"runtime": "runsc"},  # type: ignore[dict-item]
    }


def audit(tmp_path: Path, slug: str) -> AuditLog:
    return AuditLog(tmp_path / "state" / "bottles" / slug / "egress.jsonl")


async def start(make_client: ClientFactory, tmp_path: Path, records: list[Any]) -> LanguageClient:
    write_state(tmp_path / "fake-engine.json", {"bottles": records})
    client = await make_client(activity_interval=0.1)
    client.activity = []  # type: ignore[attr-defined]
    client.edits = []  # type: ignore[attr-defined]
    client.feature("bottle/activity")(lambda params: client.activity.append(params))  # type: ignore[attr-defined]

    client.shown_before_edit = []  # type: ignore[attr-defined]

    def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        client.edits.append(params)  # type: ignore[attr-defined]
        client.shown_before_edit.append([d.uri for d in client.shown_documents])  # type: ignore[attr-defined]
        return types.ApplyWorkspaceEditResult(applied=True)

    client.feature(types.WORKSPACE_APPLY_EDIT)(apply)
    return client


def bottles(client: LanguageClient) -> dict[str, Any]:
    if not client.activity:  # type: ignore[attr-defined]
        return {}
    last = plain(client.activity[-1])  # type: ignore[attr-defined]
    return {b["slug"]: b for b in last["bottles"]}


def applied(params: types.ApplyWorkspaceEditParams, text: str) -> str:
    """`text` after the one whole-line edit `params` carries (what the editor would show)."""
    (change,) = params.edit.document_changes or []
    assert isinstance(change, types.TextDocumentEdit)
    (edit,) = change.edits
    assert isinstance(edit, types.TextEdit)
    lines = text.splitlines(keepends=True)
    lines[edit.range.start.line : edit.range.end.line] = [edit.new_text]
    return "".join(lines)


def plain(value: Any) -> Any:
    """pygls hands a custom notification's params over as named tuples."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


async def test_the_egress_picture_fills_live_and_allow_edits_the_manifest(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    log = audit(tmp_path, "dev-1")
    log.write(audit_entry("upstream.test", port=80, bytes_received=120))
    client = await start(
        make_client,
        tmp_path,
        [record(project, "dev-1", "running"), record(project, "dev-0", "stopped")],
    )
    await eventually(lambda: "dev-1" in bottles(client), "a picture of dev-1")
    assert set(bottles(client)) == {"dev-1"}  # the stopped bottle is not shown
    shown = bottles(client)["dev-1"]
    assert (shown["state"], shown["runtime"], shown["denied"]) == ("running", "runsc", 0)
    assert [(h["decision"], h["host"], h["bytes"]) for h in shown["hosts"]] == [
        ("allow", "upstream.test", 120)
    ]

    log.write(
        audit_entry(
            "stranger.test", "deny", port=80, reason="GET stranger.test:80 is not on the allowlist"
        )
    )
    await eventually(lambda: bottles(client)["dev-1"]["denied"] == 1, "the refusal pushed")
    denied = bottles(client)["dev-1"]["hosts"][0]
    assert (denied["host"], denied["allow"]) == ("stranger.test", "stranger.test")
    assert plain(await execute(client, "bottle.activity"))["bottles"][0]["denied"] == 1

    uri = open_document(client, project / "bottle.toml", MANIFEST)
    answer = await execute(
        client, "bottle.allowHost", {"slug": "dev-1", "host": "stranger.test", "port": 80}
    )
    assert answer == {"uri": uri, "entry": "stranger.test", "applied": True, "already": False}
    # Shown first: an edit to a manifest no editor shows would be saved by VS Code unseen.
    assert client.shown_before_edit == [[uri]]  # type: ignore[attr-defined]
    (params,) = client.edits  # type: ignore[attr-defined]
    (change,) = params.edit.document_changes
    assert change.text_document.version == 1  # refused if the person typed meanwhile
    assert applied(params, MANIFEST) == MANIFEST.replace(
        '["upstream.test"]', '["upstream.test", "stranger.test"]'
    )


async def test_allow_refuses_what_is_not_an_exact_host_name(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    (project / "bottle.toml").write_text(MANIFEST)
    client = await start(make_client, tmp_path, [record(project, "dev-1", "running")])
    for host in ["*.test", "10.1.2.3", 'x.test"]\nask = false #']:
        answer = await execute(
            client, "bottle.allowHost", {"slug": "dev-1", "host": host, "port": 80}
        )
        assert "only an exact host name" in answer["error"]
    assert client.edits == []  # type: ignore[attr-defined]
    assert (project / "bottle.toml").read_text() == MANIFEST


async def test_a_degraded_bottle_is_shown_as_degraded_and_gets_no_attach_lens(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    degraded = record(project, "dev-1", "exited, degraded: bundle gone")
    client = await start(make_client, tmp_path, [degraded])
    uri = open_document(client, project / "bottle.toml", MANIFEST)
    await eventually(lambda: "dev-1" in bottles(client), "a picture of dev-1")
    assert bottles(client)["dev-1"]["state"] == "degraded"
    assert [title for _, title, _, _ in await lenses(client, uri)] == ["▶ Launch"]


async def test_an_ask_shown_in_the_egress_picture_is_answered_in_place(
    make_client: ClientFactory, project: Path, tmp_path: Path
) -> None:
    """A real proxy holds a request to an unlisted host; the pushed picture shows the ask with
    its request id, and `bottle.answer` (the row's Approve) lets the held request through."""
    import asyncio

    from tests.ask_lab import SLUG, ask_lab

    with ask_lab(tmp_path / "lab") as lab:
        (tmp_path / "fake-engine.json").write_text(
            json.dumps({"bottles": [record(project, SLUG, "running")]})
        )
        client = await make_client(
            approvals={"poll": True, "interval": 0.05},
            activity_interval=0.1,
            env={"BOTTLE_STATE_DIR": str(lab.state_dir)},
        )
        client.activity = []  # type: ignore[attr-defined]
        client.feature("bottle/activity")(lambda params: client.activity.append(params))  # type: ignore[attr-defined]
        client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)(
            lambda params: None
        )  # the toast: dismissed

        held = asyncio.ensure_future(asyncio.to_thread(lab.get, "inplace.test", lab.http, "/ok"))

        def asked() -> list[str]:
            rows = bottles(client).get(SLUG, {}).get("hosts", [])
            return [i for r in rows if r["decision"] == "ask" for i in r["pending"]]

        await eventually(lambda: bool(asked()), "the ask in the picture")
        (request_id,) = asked()
        assert bottles(client)[SLUG]["pending"] == 1
        answer = {
            "slug": SLUG,
            "request_id": request_id,
            "approved": True,
            "host": "inplace.test",
            "port": lab.http,
        }
        assert await execute(client, "bottle.answer", answer) == {}
        status, _, _ = await held
        assert status == 200
        await eventually(lambda: not asked(), "the ask no longer pending")
